/**
 * The sleeve's neighbours: which peer is at which UDP address, with which cipher, the path MTU
 * towards each (configured, learnt from the kernel, or found by probing) and the data frames
 * exchanged with each. Told by the layer that runs overlay connections (sleeve-overlay), via
 * Sleeve.setPeer/removePeer.
 */
import { parseIpv4 } from '../native'
import type { SleeveCore } from './sleeve-core'
import type { SleeveCipher } from './sleeve-crypto'

/** When the kernel cannot tell (socket closed, no route yet): a standard Ethernet underlay. */
const DEFAULT_PATH_MTU = 1500
/** The smallest MTU every IPv4 path must carry (RFC 791) — and Weave's PMTU floor. */
const MIN_PATH_MTU = 552

/** How to reach one neighbour over UDP. */
export interface SleevePeer {
  addr: string
  port: number
  /** Set with a mesh password: seals what we send it and opens what it sends. */
  cipher?: SleeveCipher
  /**
   * Path MTU towards it (bytes of IP packet). Default: ask the kernel (IP_MTU: the route's
   * MTU, lowered by ICMP fragmentation-needed from the path), and ask again whenever a send is
   * refused with EMSGSIZE: sleeve's datagrams carry DF, so they are never fragmented.
   */
  pathMtu?: number
}

/** Data frames exchanged with one neighbour over the sleeve (control datagrams not counted). */
export interface SleeveTraffic {
  txFrames: number
  txBytes: number
  rxFrames: number
  rxBytes: number
}

export class SleevePeers {
  /** Short ID → how to reach it. */
  readonly byId = new Map<number, SleevePeer>()
  /** The same keyed by IPv4 (host order) × 65536 + port, for the receive loop. */
  readonly byNum = new Map<number, number>()
  /** "addr:port" → short ID of the neighbour sending from there. */
  private readonly byAddr = new Map<string, number>()
  /** Path MTUs learnt from the kernel, for peers without a configured one. */
  private readonly kernelMtu = new Map<number, number>()
  /** Path MTUs found by probing (the overlay's PMTU search) where they are below the kernel's. */
  private readonly probedMtu = new Map<number, number>()
  /**
   * Per neighbour short ID, since start; kept when a neighbour goes (a counter never runs
   * backwards while the router lives; short IDs are few).
   */
  readonly traffic = new Map<number, SleeveTraffic>()

  constructor(private readonly core: SleeveCore) {}

  /** Tells where neighbour `id` is (replacing what was known). */
  set(id: number, peer: SleevePeer): void {
    this.remove(id)
    this.byId.set(id, peer)
    this.byAddr.set(`${peer.addr}:${peer.port}`, id)
    const a = parseIpv4(peer.addr)
    if (a !== undefined) this.byNum.set(a * 65536 + peer.port, id)
  }

  remove(id: number): void {
    const old = this.byId.get(id)
    if (!old) return
    this.byId.delete(id)
    this.kernelMtu.delete(id)
    this.probedMtu.delete(id)
    this.byAddr.delete(`${old.addr}:${old.port}`)
    const a = parseIpv4(old.addr)
    if (a !== undefined && this.byNum.get(a * 65536 + old.port) === id) this.byNum.delete(a * 65536 + old.port)
  }

  /** What was learnt from the sockets (they are closing). */
  forgetLearnt(): void {
    this.kernelMtu.clear()
    this.probedMtu.clear()
  }

  /** The traffic counters of neighbour `id`, created on first use. */
  count(id: number): SleeveTraffic {
    let t = this.traffic.get(id)
    if (!t) this.traffic.set(id, (t = { txFrames: 0, txBytes: 0, rxFrames: 0, rxBytes: 0 }))
    return t
  }

  /** The path MTU in use towards neighbour `id`. */
  pathMtu(id: number): number | undefined {
    const peer = this.byId.get(id)
    return peer && this.mtuOf(id, peer)
  }

  /** The kernel's path MTU towards neighbour `id`, or the configured one. */
  kernelPathMtu(id: number): number | undefined {
    const peer = this.byId.get(id)
    return peer && this.unprobedMtu(id, peer)
  }

  /** A path MTU towards neighbour `id` found by probing; undefined: trust the kernel again. */
  setProbedMtu(id: number, mtu: number | undefined): void {
    if (!this.byId.has(id)) return
    const before = this.probedMtu.get(id)
    if (mtu === undefined) this.probedMtu.delete(id)
    else this.probedMtu.set(id, Math.max(MIN_PATH_MTU, mtu))
    if (before !== mtu) this.core.log.info(`path MTU towards peer ${id} by probing: ${mtu ?? 'as the kernel says'}`)
  }

  /** The path MTU to send with towards `peer` (short ID `id`): the smaller of the kernel's and the probed. */
  mtuOf(id: number, peer: SleevePeer): number {
    const mtu = this.unprobedMtu(id, peer)
    const probed = this.probedMtu.get(id)
    return probed !== undefined && probed < mtu ? probed : mtu
  }

  private unprobedMtu(id: number, peer: SleevePeer): number {
    if (peer.pathMtu !== undefined) return peer.pathMtu
    let mtu = this.kernelMtu.get(id)
    if (mtu === undefined) {
      mtu = this.askKernelMtu(peer)
      if (this.core.udp) this.kernelMtu.set(id, mtu) // before start() it is only a guess: ask again later
    }
    return mtu
  }

  private askKernelMtu(peer: SleevePeer): number {
    const udp = this.core.udp
    try {
      return Math.max(MIN_PATH_MTU, udp ? udp.pathMtu(peer.addr) : DEFAULT_PATH_MTU)
    } catch (err) {
      this.core.log.debug(`path MTU towards ${peer.addr} unknown (${(err as Error).message}); assuming ${DEFAULT_PATH_MTU}`)
      return DEFAULT_PATH_MTU
    }
  }

  /** A datagram was refused as too big: the path shrank; take the kernel's new figure. */
  relearnMtu(addr: string, port: number): void {
    const id = this.byAddr.get(`${addr}:${port}`)
    const peer = id === undefined ? undefined : this.byId.get(id)
    if (id === undefined || !peer || peer.pathMtu !== undefined) return
    const before = this.kernelMtu.get(id)
    const now = this.askKernelMtu(peer)
    this.kernelMtu.set(id, now)
    if (now !== before) this.core.log.info(`path MTU towards peer ${id} (${addr}) is now ${now}`)
  }
}
