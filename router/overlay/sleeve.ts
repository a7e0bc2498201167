/**
 * The sleeve driver: joins the bridge-side packet socket, the UDP socket and the pure core
 * (forwarder, datagram codec, ciphers). Everything per wake-up is done in batches:
 *
 *   bridge readable → readBatch → Forwarder.fromBridge → pack + encode (+ seal) → one sendBatch
 *   UDP readable    → recvBatch → open/decode → Forwarder.fromPeer → one writeBatch (inject)
 *                                                                   + one sendBatch (relay/flood)
 *
 * Received bytes are views into the sockets' receive buffers, valid until the next read, so each
 * batch is fully handled (encoded, injected) before the next read. The driver never waits on a
 * full socket buffer: what does not fit is dropped and counted, as a router would.
 *
 * GSO super-frames: the bridge-side socket reads with a virtio_net_hdr, so a container's TSO
 * segment (up to 64 KiB) arrives as one frame. It becomes one "super" datagram (sealed as a
 * whole when encrypting), cut into a run of equal-sized unsealed "piece" datagrams (one UDP GSO
 * send); the neighbour puts the datagram back together, opens it and injects the frame whole
 * with its header; the kernel there cuts it into MTU-sized frames (or hands it whole to the
 * container). Per 64 KiB of TCP that is one frame and one AEAD through each router instead of ~45.
 * Copies kept out of userspace: pieces leave straight from the captured frame (plain) or are
 * sealed from it into one reused buffer; at the receiver a plain super-frame whose pieces came
 * in one read is injected straight from them (the kernel gathers it), and a sealed one is
 * decrypted piece by piece into the reassembly buffer (no separate copy), then authenticated.
 *
 * Neighbours (which peer is at which UDP address, with which cipher and MTU) are told to it by
 * the layer that runs overlay connections (heartbeats, PMTU), via setPeer/removePeer.
 *
 * The parts, one file each, share a SleeveCore (sleeve-core.ts): the neighbour table and path
 * MTUs (sleeve-peers.ts), the sending side (sleeve-transmit.ts), the bridge side: capture and
 * inject (sleeve-bridge.ts), the receiving side (sleeve-receive.ts) and the reassembly of
 * super-frames from pieces (sleeve-reassembly.ts). This file opens and closes the sockets.
 */
import type { Clock, Logger } from '../deps'
import { openPacketSocket, openUdpSocket } from '../native'
import { Forwarder, type Routes } from './forwarder'
import { MacTable, DEFAULT_MAC_MAX_AGE_MS } from './mac-table'
import type { SleeveDatagram } from './sleeve-frame'
import { SleeveCore, type SleeveStats } from './sleeve-core'
import { SleevePeers, type SleevePeer, type SleeveTraffic } from './sleeve-peers'
import { PieceReassembly } from './sleeve-reassembly'
import { SleeveTransmit, type ToDatapath } from './sleeve-transmit'
import { SleeveBridge } from './sleeve-bridge'
import { SleeveReceive } from './sleeve-receive'

/** Weave sweeps its MAC cache every minute. */
const MAC_SWEEP_INTERVAL_MS = 60_000
/** Packet-socket receive slot: a 64 KiB super-frame, its Ethernet/VLAN header and virtio_net_hdr. */
const PACKET_SLOT_BYTES = 65_536 + 512

export interface SleeveConfig {
  /** Our data-plane short ID. */
  self: number
  /** Interface the router takes frames from and puts them back on (vethwe-pcap). */
  bridgeIf: string
  /** UDP bind address and port (6783). */
  bindAddr: string
  port: number
  /** Open the sockets in this network namespace (tests; the daemon runs in the host's). */
  netns?: string
  macMaxAgeMs?: number
}

export interface SleeveDeps {
  clock: Clock
  logger: Logger
  routes: Routes
  /**
   * A middle host's handoff to its datapath: frames from a sleeve peer whose next hop the
   * datapath (fastdp) reaches, to be tunnelled to `hop` with key src → dst. Returns how many
   * left; absent: such frames are dropped (`no-datapath`).
   */
  toDatapath?: ToDatapath
}

export class Sleeve {
  private readonly core: SleeveCore
  private readonly peers: SleevePeers
  private readonly reassembly: PieceReassembly
  private readonly tx: SleeveTransmit
  private readonly bridge: SleeveBridge
  private readonly rx: SleeveReceive
  private cancelSweep: (() => void) | undefined
  private readonly log: Logger
  private readonly loggedErrors = new Set<string>()
  readonly stats: SleeveStats
  /** Heartbeats and probes from neighbours go to the overlay-connection layer through this. */
  onControl: (from: number, datagram: SleeveDatagram) => void = () => {}

  /** Builds state only; no I/O until start(). */
  constructor(private readonly config: SleeveConfig, private readonly deps: SleeveDeps) {
    this.log = deps.logger.child('sleeve')
    const macs = new MacTable<number>(deps.clock, config.self, config.macMaxAgeMs ?? DEFAULT_MAC_MAX_AGE_MS)
    this.core = new SleeveCore(config.self, new Forwarder(config.self, macs, deps.routes), this.log)
    this.stats = this.core.stats
    this.peers = new SleevePeers(this.core)
    this.reassembly = new PieceReassembly(this.core, this.peers)
    this.tx = new SleeveTransmit(this.core, this.peers, deps.toDatapath)
    this.bridge = new SleeveBridge(this.core, this.tx)
    this.rx = new SleeveReceive(this.core, this.peers, this.reassembly, this.tx, this.bridge, (from, dg) => this.onControl(from, dg))
  }

  get macs(): MacTable<number> { return this.core.forwarder.macs }
  get localPort(): number | undefined { return this.core.udp?.localPort }

  /** Opens the sockets and starts forwarding; throws (with an errno code) if they cannot open. */
  start(): void {
    const core = this.core
    if (core.pkt) return
    const { bridgeIf, bindAddr, port, netns } = this.config
    const pkt = openPacketSocket(bridgeIf, { netns, slotBytes: PACKET_SLOT_BYTES, batch: 64, vnetHdr: true })
    try {
      core.udp = openUdpSocket(bindAddr, port, { netns, slotBytes: 65_536, batch: 64, pmtuDiscover: true })
    } catch (err) {
      pkt.close()
      throw err
    }
    core.pkt = pkt
    core.pkt.onReadable(() => this.guard(() => this.bridge.onReadable()))
    core.udp.onReadable(() => this.guard(() => this.rx.onReadable()))
    this.scheduleSweep()
    this.log.info(`forwarding between ${bridgeIf} and udp ${bindAddr}:${core.udp.localPort}`)
  }

  /** Closes both sockets and the sweep timer. */
  stop(): void {
    this.cancelSweep?.()
    this.cancelSweep = undefined
    this.core.pkt?.close()
    this.core.udp?.close()
    this.core.pkt = undefined
    this.core.udp = undefined
    this.peers.forgetLearnt()
    this.reassembly.clear()
  }

  /** Tells the sleeve where neighbour `id` is (replacing what it knew). */
  setPeer(id: number, peer: SleevePeer): void {
    this.removePeer(id)
    this.peers.set(id, peer)
  }

  removePeer(id: number): void {
    this.peers.remove(id)
    this.reassembly.forget(id)
  }

  /** Frames and bytes exchanged with each neighbour (metrics, the topology page). */
  trafficByPeer(): ReadonlyMap<number, Readonly<SleeveTraffic>> {
    return this.peers.traffic
  }

  /** The path MTU in use towards neighbour `id` (for `weave status connections`). */
  pathMtu(id: number): number | undefined {
    return this.peers.pathMtu(id)
  }

  /**
   * The kernel's path MTU towards neighbour `id` (what the probing search starts from), or the
   * configured one; undefined for an unknown neighbour.
   */
  kernelPathMtu(id: number): number | undefined {
    return this.peers.kernelPathMtu(id)
  }

  /**
   * A path MTU towards neighbour `id` found by probing: a path that silently drops big datagrams
   * (no ICMP, so the kernel never learns) carries only this much. Undefined: trust the kernel again.
   */
  setProbedMtu(id: number, mtu: number | undefined): void {
    this.peers.setProbedMtu(id, mtu)
  }

  /** Sends a control datagram (heartbeat, probe; plaintext form) to neighbour `id`. */
  sendControl(id: number, plain: Uint8Array): boolean {
    return this.tx.sendControl(id, plain)
  }

  /**
   * A bug met by one odd frame must not take the whole router down from inside a socket
   * callback: count it, log each distinct message once, and go on with the next batch.
   */
  private guard(fn: () => void): void {
    try {
      fn()
    } catch (err) {
      this.core.drop('internal-error')
      const msg = (err as Error).stack ?? String(err)
      if (!this.loggedErrors.has(msg) && this.loggedErrors.size < 100) {
        this.loggedErrors.add(msg)
        this.log.error(`batch dropped after an internal error: ${msg}`)
      }
    }
  }

  private scheduleSweep(): void {
    this.cancelSweep = this.deps.clock.setTimer(MAC_SWEEP_INTERVAL_MS, () => {
      const n = this.core.forwarder.macs.sweep()
      if (n) this.log.debug(`expired ${n} MAC entries`)
      this.scheduleSweep()
    })
  }
}
