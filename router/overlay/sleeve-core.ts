/**
 * What the parts of the sleeve driver share: our short ID, the forwarder, the counters, the
 * sockets while started, and the GSO headers of the batch being handled. The Sleeve (sleeve.ts)
 * builds one and hands it to the peer table, the reassembly, the transmit side, the bridge side
 * and the receive side, each in its own file.
 *
 * The parts keep their own references to what never changes (stats, gso, forwarder), so the
 * per-datagram code reads them as directly as one class did; the sockets, which start() and
 * stop() replace, are read from here once per batch.
 */
import type { Logger } from '../deps'
import type { PacketSocket, UdpSocket } from '../native'
import type { Forwarder } from './forwarder'

/** Batches read per wake-up per socket before yielding to the event loop (fairness). */
export const BATCHES_PER_WAKEUP = 4

/** Counters for `weave status` / `weave report`; every dropped thing is counted by reason. */
export interface SleeveStats {
  captured: number
  injected: number
  datagramsSent: number
  datagramsReceived: number
  framesSent: number
  /** Frames that arrived for another peer and were passed on towards it. */
  relayed: number
  /** Frames from sleeve peers handed to the datapath (a middle host between sleeve and fastdp). */
  toDatapath: number
  /** Frames the datapath relayed to us for a sleeve-reached hop (tagged with their sender). */
  fromDatapath: number
  /** Frames too big for the path that were cut into IP fragments. */
  fragmented: number
  /** ICMP fragmentation-needed answers injected to local senders. */
  icmpSent: number
  /** GSO super-frames captured and sent as pieces. */
  superFramesSent: number
  /** Super-frames put back together from pieces and injected (or relayed). */
  superFramesReceived: number
  /** Of those, injected straight from their pieces (never put together here). */
  superFramesGathered: number
  /** Captured frames or received datagrams larger than a receive slot (dropped). */
  truncated: number
  drops: Record<string, number>
}

export class SleeveCore {
  readonly stats: SleeveStats = {
    captured: 0, injected: 0, datagramsSent: 0, datagramsReceived: 0, framesSent: 0, relayed: 0, toDatapath: 0, fromDatapath: 0,
    fragmented: 0, icmpSent: 0, superFramesSent: 0, superFramesReceived: 0, superFramesGathered: 0, truncated: 0, drops: {},
  }
  /** GSO headers of the super-frames in the batch being handled (frame → virtio_net_hdr). */
  readonly gso = new Map<Uint8Array, Uint8Array>()
  /** The bridge-side packet socket and the UDP socket: open between start() and stop(). */
  pkt: PacketSocket | undefined
  udp: UdpSocket | undefined

  constructor(
    /** Our data-plane short ID. */
    readonly self: number,
    readonly forwarder: Forwarder,
    readonly log: Logger,
  ) {}

  drop(reason: string, n = 1): void {
    this.stats.drops[reason] = (this.stats.drops[reason] ?? 0) + n
  }
}
