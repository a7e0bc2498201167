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
 */
import type { Clock, Logger } from '../deps'
import { openPacketSocket, openUdpSocket, parseIpv4, type PacketSocket, type UdpSocket, type OutDatagram } from '../native'
import { Forwarder, type ForwardEffect, type Routes } from './forwarder'
import { MacTable, DEFAULT_MAC_MAX_AGE_MS, macAt, isGroupMac } from './mac-table'
import {
  decodeDatagram, encodeFrames, encodeSuper, writeHeader, packFrames, GSO_HEADER_BYTES, Kind, UNDERLAY_HEADER_BYTES, HEADER_BYTES, PER_FRAME_BYTES,
  PIECE_HEADER_BYTES, MAX_PIECED_BYTES, MAX_SHORT_ID, SLEEVE_VERSION, MIN_FRAME_BYTES, type SleeveDatagram, type DecodeResult,
} from './sleeve-frame'
import { handleTooBig } from './too-big'
import { RELAY_TAG_TPID } from './fastdp-flows'
import { segmentTcp4 } from './tcp-segment'
import { SEAL_OVERHEAD_BYTES, type SleeveCipher, type OpenResult, type PieceOpener } from './sleeve-crypto'

/** Weave sweeps its MAC cache every minute. */
const MAC_SWEEP_INTERVAL_MS = 60_000
/** Batches read per wake-up per socket before yielding to the event loop (fairness). */
const BATCHES_PER_WAKEUP = 4
/** When the kernel cannot tell (socket closed, no route yet): a standard Ethernet underlay. */
const DEFAULT_PATH_MTU = 1500
/** The smallest MTU every IPv4 path must carry (RFC 791) — and Weave's PMTU floor. */
const MIN_PATH_MTU = 552
/** Packet-socket receive slot: a 64 KiB super-frame, its Ethernet/VLAN header and virtio_net_hdr. */
const PACKET_SLOT_BYTES = 65_536 + 512

/**
 * A super-frame being put back together from its pieces (one per sending peer); with `open`
 * (an encrypting peer, natively) each piece is decrypted into place as it arrives.
 */
interface Reassembly { id: number; total: number; got: number; buf: Buffer; open: PieceOpener | undefined }
/** Reassembly buffers kept for reuse. */
const POOLED_BUFFERS = 16
/** What one batch of received datagrams produced. */
interface RxBatch { inject: Uint8Array[]; injectGso: Array<Uint8Array | undefined>; anyGso: boolean; out: OutDatagram[] }

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
  toDatapath?: (hop: number, src: number, dst: number, frames: readonly Uint8Array[]) => number
}

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

/** Data frames exchanged with one neighbour over the sleeve (control datagrams not counted). */
export interface SleeveTraffic {
  txFrames: number
  txBytes: number
  rxFrames: number
  rxBytes: number
}

export class Sleeve {
  private readonly forwarder: Forwarder
  private readonly peers = new Map<number, SleevePeer>()
  /** Path MTUs learnt from the kernel, for peers without a configured one. */
  private readonly kernelMtu = new Map<number, number>()
  /** Path MTUs found by probing (the overlay's PMTU search) where they are below the kernel's. */
  private readonly probedMtu = new Map<number, number>()
  /** "addr:port" → short ID of the neighbour sending from there. */
  private readonly byAddr = new Map<string, number>()
  /** The same keyed by IPv4 (host order) × 65536 + port, for the receive loop. */
  private readonly byNum = new Map<number, number>()
  private pkt: PacketSocket | undefined
  private udp: UdpSocket | undefined
  private cancelSweep: (() => void) | undefined
  private readonly log: Logger
  readonly stats: SleeveStats = { captured: 0, injected: 0, datagramsSent: 0, datagramsReceived: 0, framesSent: 0, relayed: 0, toDatapath: 0, fromDatapath: 0, fragmented: 0, icmpSent: 0, superFramesSent: 0, superFramesReceived: 0, superFramesGathered: 0, truncated: 0, drops: {} }
  /** GSO headers of the super-frames in the batch being handled (frame → virtio_net_hdr). */
  private readonly gso = new Map<Uint8Array, Uint8Array>()
  private readonly reassembly = new Map<number, Reassembly>()
  private nextPieceId = 1
  /**
   * Per neighbour short ID, since start; kept when a neighbour goes (a counter never runs
   * backwards while the router lives; short IDs are few).
   */
  private readonly traffic = new Map<number, SleeveTraffic>()
  /** Heartbeats and probes from neighbours go to the overlay-connection layer through this. */
  onControl: (from: number, datagram: SleeveDatagram) => void = () => {}

  /** Builds state only; no I/O until start(). */
  constructor(private readonly config: SleeveConfig, private readonly deps: SleeveDeps) {
    this.log = deps.logger.child('sleeve')
    const macs = new MacTable<number>(deps.clock, config.self, config.macMaxAgeMs ?? DEFAULT_MAC_MAX_AGE_MS)
    this.forwarder = new Forwarder(config.self, macs, deps.routes)
  }

  get macs(): MacTable<number> { return this.forwarder.macs }
  get localPort(): number | undefined { return this.udp?.localPort }

  /** Opens the sockets and starts forwarding; throws (with an errno code) if they cannot open. */
  start(): void {
    if (this.pkt) return
    const { bridgeIf, bindAddr, port, netns } = this.config
    this.pkt = openPacketSocket(bridgeIf, { netns, slotBytes: PACKET_SLOT_BYTES, batch: 64, vnetHdr: true })
    try {
      this.udp = openUdpSocket(bindAddr, port, { netns, slotBytes: 65_536, batch: 64, pmtuDiscover: true })
    } catch (err) {
      this.pkt.close()
      this.pkt = undefined
      throw err
    }
    this.pkt.onReadable(() => this.guard(() => this.onBridgeReadable()))
    this.udp.onReadable(() => this.guard(() => this.onUdpReadable()))
    this.scheduleSweep()
    this.log.info(`forwarding between ${bridgeIf} and udp ${bindAddr}:${this.udp.localPort}`)
  }

  /** Closes both sockets and the sweep timer. */
  stop(): void {
    this.cancelSweep?.()
    this.cancelSweep = undefined
    this.pkt?.close()
    this.udp?.close()
    this.pkt = undefined
    this.udp = undefined
    this.kernelMtu.clear()
    this.probedMtu.clear()
    this.reassembly.clear()
  }

  /** Tells the sleeve where neighbour `id` is (replacing what it knew). */
  setPeer(id: number, peer: SleevePeer): void {
    this.removePeer(id)
    this.peers.set(id, peer)
    this.byAddr.set(`${peer.addr}:${peer.port}`, id)
    const a = parseIpv4(peer.addr)
    if (a !== undefined) this.byNum.set(a * 65536 + peer.port, id)
  }

  removePeer(id: number): void {
    const old = this.peers.get(id)
    if (!old) return
    this.peers.delete(id)
    this.kernelMtu.delete(id)
    this.probedMtu.delete(id)
    this.reassembly.delete(id)
    this.byAddr.delete(`${old.addr}:${old.port}`)
    const a = parseIpv4(old.addr)
    if (a !== undefined && this.byNum.get(a * 65536 + old.port) === id) this.byNum.delete(a * 65536 + old.port)
  }

  /** Frames and bytes exchanged with each neighbour (metrics, the topology page). */
  trafficByPeer(): ReadonlyMap<number, Readonly<SleeveTraffic>> {
    return this.traffic
  }

  private count(id: number): SleeveTraffic {
    let t = this.traffic.get(id)
    if (!t) this.traffic.set(id, (t = { txFrames: 0, txBytes: 0, rxFrames: 0, rxBytes: 0 }))
    return t
  }

  /** The path MTU in use towards neighbour `id` (for `weave status connections`). */
  pathMtu(id: number): number | undefined {
    const peer = this.peers.get(id)
    return peer && this.mtuOf(id, peer)
  }

  /**
   * The kernel's path MTU towards neighbour `id` (what the probing search starts from), or the
   * configured one; undefined for an unknown neighbour.
   */
  kernelPathMtu(id: number): number | undefined {
    const peer = this.peers.get(id)
    return peer && this.unprobedMtu(id, peer)
  }

  /**
   * A path MTU towards neighbour `id` found by probing: a path that silently drops big datagrams
   * (no ICMP, so the kernel never learns) carries only this much. Undefined: trust the kernel again.
   */
  setProbedMtu(id: number, mtu: number | undefined): void {
    if (!this.peers.has(id)) return
    const before = this.probedMtu.get(id)
    if (mtu === undefined) this.probedMtu.delete(id)
    else this.probedMtu.set(id, Math.max(MIN_PATH_MTU, mtu))
    if (before !== mtu) this.log.info(`path MTU towards peer ${id} by probing: ${mtu ?? 'as the kernel says'}`)
  }

  private mtuOf(id: number, peer: SleevePeer): number {
    const mtu = this.unprobedMtu(id, peer)
    const probed = this.probedMtu.get(id)
    return probed !== undefined && probed < mtu ? probed : mtu
  }

  private unprobedMtu(id: number, peer: SleevePeer): number {
    if (peer.pathMtu !== undefined) return peer.pathMtu
    let mtu = this.kernelMtu.get(id)
    if (mtu === undefined) {
      mtu = this.askKernelMtu(peer)
      if (this.udp) this.kernelMtu.set(id, mtu) // before start() it is only a guess: ask again later
    }
    return mtu
  }

  private askKernelMtu(peer: SleevePeer): number {
    try {
      return Math.max(MIN_PATH_MTU, this.udp ? this.udp.pathMtu(peer.addr) : DEFAULT_PATH_MTU)
    } catch (err) {
      this.log.debug(`path MTU towards ${peer.addr} unknown (${(err as Error).message}); assuming ${DEFAULT_PATH_MTU}`)
      return DEFAULT_PATH_MTU
    }
  }

  /** Sends a control datagram (heartbeat, probe; plaintext form) to neighbour `id`. */
  sendControl(id: number, plain: Uint8Array): boolean {
    const peer = this.peers.get(id)
    if (!peer || !this.udp) return false
    const data = peer.cipher ? peer.cipher.seal(plain) : plain
    const r = this.udp.sendBatch([{ addr: peer.addr, port: peer.port, data }])
    return r.sent === 1
  }

  /**
   * A bug met by one odd frame must not take the whole router down from inside a socket
   * callback: count it, log each distinct message once, and go on with the next batch.
   */
  private guard(fn: () => void): void {
    try {
      fn()
    } catch (err) {
      this.drop('internal-error')
      const msg = (err as Error).stack ?? String(err)
      if (!this.loggedErrors.has(msg) && this.loggedErrors.size < 100) {
        this.loggedErrors.add(msg)
        this.log.error(`batch dropped after an internal error: ${msg}`)
      }
    }
  }
  private readonly loggedErrors = new Set<string>()

  private drop(reason: string, n = 1): void {
    this.stats.drops[reason] = (this.stats.drops[reason] ?? 0) + n
  }

  private onBridgeReadable(): void {
    for (let i = 0; i < BATCHES_PER_WAKEUP && this.pkt; i++) {
      const pkt = this.pkt
      const truncatedBefore = pkt.truncated
      const frames = pkt.readBatch()
      this.stats.truncated += pkt.truncated - truncatedBefore
      if (!frames.length) return
      this.stats.captured += frames.length
      this.gso.clear()
      if (pkt.vnet) for (const f of frames) { const g = pkt.gsoHeader(f); if (g) this.gso.set(f, g) }
      const { local, relayed } = splitRelayTagged(frames)
      const results = [this.forwarder.fromBridge(local)]
      for (const [src, fs] of relayed) { this.stats.fromDatapath += fs.length; results.push(this.forwarder.fromDatapath(src, fs)) }
      const out: OutDatagram[] = []
      const replies: Uint8Array[] = []
      for (const r of results) {
        for (const [k, n] of Object.entries(r.drops)) this.drop(k, n)
        for (const e of r.effects) {
          if (e.kind === 'send') this.encode(e, out, replies)
          else if (e.kind === 'datapath') this.handToDatapath(e)
        }
      }
      this.gso.clear()
      this.send(out)
      this.inject(replies)
    }
  }

  private onUdpReadable(): void {
    for (let i = 0; i < BATCHES_PER_WAKEUP && this.udp; i++) {
      const udp = this.udp
      const truncatedBefore = udp.truncated
      const n = udp.recvRaw()
      this.stats.truncated += udp.truncated - truncatedBefore
      if (!n) return
      const buf = udp.buffer
      const offs = udp.offsets
      const lens = udp.lengths
      const addrs = udp.sourceAddrs
      const ports = udp.sourcePorts
      const b: RxBatch = { inject: [], injectGso: [], anyGso: false, out: [] }
      this.gso.clear()
      for (let k = 0; k < n; k++) {
        const len = lens[k]
        if (len <= 0) continue
        this.stats.datagramsReceived++
        const off = offs[k]
        const from = this.byNum.get(addrs[k] * 65536 + ports[k])
        if (from === undefined) { this.drop('unknown-sender'); continue }
        if (len > HEADER_BYTES + PIECE_HEADER_BYTES && buf[off + 1] === Kind.Piece) {
          // a whole plain super-frame for our bridge in this read: injected from its pieces
          const gathered = this.injectFromPieces(from, udp, k, n, b)
          if (gathered) { k += gathered - 1; continue }
          // the bulk of a super-frame: read the piece in place, no objects per datagram
          let whole = this.piece(from, buf, off, len)
          const r = whole ? undefined : this.reassembly.get(from)
          if (r && k + 1 < n) {
            // and the pieces right behind it, in one native call
            const st = this.collectState
            st[0] = addrs[k]; st[1] = ports[k]; st[2] = r.id; st[3] = r.total; st[4] = r.got
            const took = udp.collectPieces(k + 1, n, st, r.buf, r.open)
            if (took) {
              k += took
              this.stats.datagramsReceived += took
              r.got = st[4]
              if (r.got === r.total) {
                this.reassembly.delete(from)
                this.doneBufs.push(r.buf)
                whole = r.buf.subarray(0, r.total)
                this.wholeOpened = r.open
              }
            }
          }
          if (whole) this.onDatagram(from, whole, true, b, this.wholeOpened)
        } else this.onDatagram(from, buf.subarray(off, off + len), false, b)
      }
      this.gso.clear()
      this.inject(b.inject, b.anyGso ? b.injectGso : undefined)
      this.send(b.out)
      // the kernel has copied what it took: rebuilt datagrams' buffers can be reused
      for (const x of this.doneBufs) if (this.freeBufs.length < POOLED_BUFFERS) this.freeBufs.push(x)
      this.doneBufs.length = 0
    }
  }

  /**
   * One received datagram (or one put back together from pieces) from neighbour `from`;
   * `opened`: the pieces were decrypted on the way in, and this finishes opening it.
   */
  private onDatagram(from: number, data: Uint8Array, pieced: boolean, b: RxBatch, opened?: PieceOpener): void {
    const cipher = this.peers.get(from)!.cipher
    const r: DecodeResult | OpenResult = opened ? opened.done(data) : cipher ? cipher.open(data) : decodeDatagram(data)
    if (!r.ok) { this.drop(`bad-datagram:${r.reason}`); return }
    const dg = r.datagram
    if (pieced && dg.kind !== 'super') { this.drop('bad-datagram:pieced-not-super'); return }
    if (dg.kind === 'sealed') { this.drop('unexpected-sealed'); return }
    if (dg.kind === 'piece') { this.drop('unexpected-piece'); return }
    let frames: Uint8Array[]
    if (dg.kind === 'super') {
      this.stats.superFramesReceived++
      this.gso.set(dg.frame, dg.gso)
      frames = [dg.frame]
    } else if (dg.kind !== 'frames') { this.onControl(from, dg); return }
    else frames = dg.frames
    if (dg.dst !== this.config.self) this.stats.relayed += frames.length
    const t = this.count(from)
    t.rxFrames += frames.length
    for (const f of frames) t.rxBytes += f.length
    const fr = this.forwarder.fromPeer(dg.src, dg.dst, frames)
    for (const k in fr.drops) this.drop(k, fr.drops[k as keyof typeof fr.drops])
    for (const e of fr.effects) {
      if (e.kind === 'inject') {
        for (const f of e.frames) {
          const g = this.gso.get(f)
          if (g) b.anyGso = true
          b.inject.push(f)
          b.injectGso.push(g)
        }
      } else if (e.kind === 'datapath') this.handToDatapath(e)
      else this.encode(e, b.out, undefined)
    }
  }

  /**
   * Frames for a neighbour the datapath reaches: tunnelled by it, frame by frame, so a TCP
   * super-frame (GSO) is cut into segments here first, as a NIC would; other super-frames drop.
   */
  private handToDatapath(e: Extract<ForwardEffect, { kind: 'datapath' }>): void {
    const frames: Uint8Array[] = []
    for (const f of e.frames) {
      const g = this.gso.get(f)
      if (!g) { frames.push(f); continue }
      const r = segmentTcp4(f, g)
      if (r.ok) frames.push(...r.frames)
      else this.drop(`super-frame-to-datapath:${r.reason}`)
    }
    if (!frames.length) return
    const sent = this.deps.toDatapath ? this.deps.toDatapath(e.hop, e.src, e.dst, frames) : 0
    this.stats.toDatapath += sent
    if (sent < frames.length) this.drop(this.deps.toDatapath ? 'datapath-handoff-failed' : 'no-datapath', frames.length - sent)
  }

  /**
   * The commonest case without a copy: entry k of the last read is the first piece of an
   * unsealed super-frame for a container on our bridge (a known unicast MAC here), and all its
   * pieces are in this read. Then the kernel gathers the frame from the pieces as it injects it
   * (PacketSocket.injectPieces), instead of our putting it together first. Returns how many
   * entries it took, or 0 to leave the pieces to the general path (relay, flood, sealed, a
   * super-frame spread over two reads, anything odd), which checks them fully.
   */
  private injectFromPieces(from: number, udp: UdpSocket, k: number, n: number, b: RxBatch): number {
    const pkt = this.pkt
    if (!pkt || !pkt.vnet || this.peers.get(from)?.cipher || this.reassembly.has(from)) return 0
    const buf = udp.buffer
    const off = udp.offsets[k]
    const len = udp.lengths[k]
    if (buf[off] !== SLEEVE_VERSION || buf[off + 6] !== 0 || buf[off + 7] !== 0) return 0
    const p = off + HEADER_BYTES
    const id = buf.readUInt32BE(p)
    const total = buf.readUInt32BE(p + 4)
    const first = len - HEADER_BYTES - PIECE_HEADER_BYTES
    const skip = HEADER_BYTES + GSO_HEADER_BYTES
    if (buf.readUInt32BE(p + 8) !== 0 || total > MAX_PIECED_BYTES || first >= total || first < skip + MIN_FRAME_BYTES) return 0
    // the super datagram's own header, at the start of the first piece's data
    const q = p + PIECE_HEADER_BYTES
    if (buf[q] !== SLEEVE_VERSION || buf[q + 1] !== Kind.Super || buf[q + 6] !== 0 || buf[q + 7] !== 0) return 0
    const src = (buf[q + 2] << 8) | buf[q + 3]
    const dst = (buf[q + 4] << 8) | buf[q + 5]
    const self = this.config.self
    if (dst !== self || src === self || src > MAX_SHORT_ID) return 0
    const head = buf.subarray(q + skip, off + len) // the frame's start: its Ethernet header
    const dstMac = macAt(head, 0)
    if (isGroupMac(dstMac) || this.forwarder.macs.lookup(dstMac) !== self) return 0
    const st = this.collectState
    st[0] = udp.sourceAddrs[k]; st[1] = udp.sourcePorts[k]; st[2] = id; st[3] = total; st[4] = first
    const more = udp.countPieces(k + 1, n, st)
    if (st[4] !== total) return 0
    // learns the source MAC; for a local unicast destination the only effect is the inject
    const fr = this.forwarder.fromPeer(src, dst, [head])
    if (fr.effects.length !== 1 || fr.effects[0].kind !== 'inject' || fr.effects[0].frames.length !== 1) return 0
    // after the frames this read gave so far, to keep their order
    if (b.inject.length) {
      this.inject(b.inject, b.anyGso ? b.injectGso : undefined)
      b.inject = []; b.injectGso = []; b.anyGso = false
    }
    this.stats.datagramsReceived += more
    this.stats.superFramesReceived++
    this.stats.superFramesGathered++
    const t = this.count(from)
    t.rxFrames++
    t.rxBytes += total - skip
    const r = pkt.injectPieces(udp, k, 1 + more, skip, buf.subarray(q + HEADER_BYTES, q + skip))
    if (r === 0) this.stats.injected++
    else this.drop('inject-failed')
    return 1 + more
  }

  /**
   * A piece datagram at buf[off, off + len) from neighbour `from` (unsealed: the datagram it
   * rebuilds is sealed when encrypting): checked and added; the whole datagram once complete.
   */
  private piece(from: number, buf: Buffer, off: number, len: number): Uint8Array | undefined {
    if (buf[off] !== SLEEVE_VERSION || buf[off + 6] !== 0 || buf[off + 7] !== 0) { this.drop('bad-datagram:bad-piece'); return undefined }
    const src = (buf[off + 2] << 8) | buf[off + 3]
    const dst = (buf[off + 4] << 8) | buf[off + 5]
    if (src > MAX_SHORT_ID || dst > MAX_SHORT_ID) { this.drop('bad-datagram:bad-short-id'); return undefined }
    const p = off + HEADER_BYTES
    const id = buf.readUInt32BE(p)
    const total = buf.readUInt32BE(p + 4)
    const at = buf.readUInt32BE(p + 8)
    const dataLen = len - HEADER_BYTES - PIECE_HEADER_BYTES
    if (total < HEADER_BYTES || total > MAX_PIECED_BYTES || at + dataLen > total) { this.drop('bad-datagram:bad-piece'); return undefined }
    return this.reassemble(from, id, total, at, buf, p + PIECE_HEADER_BYTES, off + len)
  }

  /**
   * Adds a piece from neighbour `from` to the datagram it is part of; returns the whole datagram
   * once its last piece is in. Pieces come in order (one GSO run from one sender): a gap or a new
   * id abandons the datagram being built (lost on the way; TCP resends what it carried).
   */
  private reassemble(from: number, id: number, total: number, offset: number, src: Buffer, start: number, end: number): Uint8Array | undefined {
    let r = this.reassembly.get(from)
    if (r && (r.id !== id || r.got !== offset || r.total !== total)) {
      this.drop('pieces-incomplete')
      this.reassembly.delete(from)
      if (this.freeBufs.length < POOLED_BUFFERS) this.freeBufs.push(r.buf)
      r = undefined
    }
    if (!r) {
      if (offset !== 0) { this.drop('piece-out-of-order'); return undefined }
      r = { id, total, got: 0, buf: this.freeBufs.pop() ?? Buffer.allocUnsafe(MAX_PIECED_BYTES), open: this.peers.get(from)?.cipher?.pieces }
      this.reassembly.set(from, r)
    }
    if (!r.open) src.copy(r.buf, r.got, start, end)
    else if (!r.open.piece(r.buf, src.subarray(start, end), r.got, r.total)) {
      this.drop('pieces-incomplete')
      this.reassembly.delete(from)
      if (this.freeBufs.length < POOLED_BUFFERS) this.freeBufs.push(r.buf)
      return undefined
    }
    r.got += end - start
    this.wholeOpened = r.open
    if (r.got < r.total) return undefined
    this.reassembly.delete(from)
    this.doneBufs.push(r.buf)
    return r.buf.subarray(0, r.total)
  }
  /** Reassembly buffers (MAX_PIECED_BYTES each): free, and handed out in the current batch. */
  private readonly freeBufs: Buffer[] = []
  private readonly collectState = new Uint32Array(5)
  /** How the datagram `piece`/collectPieces just completed was opened on the way in, if it was. */
  private wholeOpened: PieceOpener | undefined
  private readonly doneBufs: Buffer[] = []

  private inject(frames: Uint8Array[], gso?: Array<Uint8Array | undefined>): void {
    if (!frames.length || !this.pkt) return
    const marks = gso
    if (marks && !this.pkt.vnet) {
      // cannot hand super-frames to this kernel socket: drop them, keep the rest
      const keep = frames.filter((_, i) => !marks[i])
      this.drop('super-frame-unsupported', frames.length - keep.length)
      frames = keep
      gso = undefined
    }
    const w = this.pkt.writeBatch(frames, gso)
    this.stats.injected += w.sent
    if (w.sent < frames.length) this.drop('inject-failed', frames.length - w.sent)
  }

  /**
   * Packs one send effect into datagrams for its hop (copying the frames out of the receive
   * buffers). Frames too big for the path: IPv4 without DF is fragmented; with DF, a frame
   * captured here (`replies` given) is answered with ICMP fragmentation-needed, to be injected;
   * a relayed one is dropped (its sender is not on our bridge).
   */
  private encode(e: Extract<ForwardEffect, { kind: 'send' }>, out: OutDatagram[], replies: Uint8Array[] | undefined): void {
    const peer = this.peers.get(e.hop)
    if (!peer) { this.drop('no-peer-address', e.frames.length); return }
    const t = this.count(e.hop)
    t.txFrames += e.frames.length
    for (const f of e.frames) t.txBytes += f.length
    const maxBytes = this.mtuOf(e.hop, peer) - UNDERLAY_HEADER_BYTES - (peer.cipher ? SEAL_OVERHEAD_BYTES : 0)
    let frames = e.frames
    if (this.gso.size) {
      frames = []
      for (const f of e.frames) {
        const g = this.gso.get(f)
        if (!g) { frames.push(f); continue }
        // a super-frame: as pieces, after the plain frames gathered so far (order kept)
        if (frames.length) { this.encodePlain(e, peer, frames, maxBytes, out, replies); frames = [] }
        if (!this.sendSuper(e, peer, f, g, out)) continue
        this.stats.superFramesSent++
        this.stats.framesSent++
      }
    }
    if (frames.length) this.encodePlain(e, peer, frames, maxBytes, out, replies)
  }

  /**
   * Sends super-frame `f` (GSO header `g`) to `peer` as pieces, right away (after what `out`
   * holds, to keep order): the kernel gathers them from the frame itself, no copy here unless
   * sealing. False (counted) when it could not leave whole.
   */
  private sendSuper(e: Extract<ForwardEffect, { kind: 'send' }>, peer: SleevePeer, f: Uint8Array, g: Uint8Array, out: OutDatagram[]): boolean {
    const udp = this.udp
    if (!udp) return false
    if (out.length) { this.send(out); out.length = 0 }
    const h = { src: e.src, dst: e.dst }
    const id = this.nextPieceId++ >>> 0
    const room = this.mtuOf(e.hop, peer) - UNDERLAY_HEADER_BYTES - HEADER_BYTES - PIECE_HEADER_BYTES
    let r: 0 | string // 'full', or why not
    try {
      writeHeader(this.pieceHead, Kind.Piece, h, 0)
      writeHeader(this.superHead, Kind.Super, h, 0)
      this.superHead.set(g.subarray(0, GSO_HEADER_BYTES), HEADER_BYTES)
      const c = peer.cipher
      if (c) {
        const sealed = c.sealParts
          ? c.sealParts(this.superHead, [this.superHead.subarray(HEADER_BYTES), f], this.sealScratch())
          : c.seal(encodeSuper(h, f, g))
        r = udp.sendPieces(peer.addr, peer.port, this.pieceHead, id, [sealed], room)
      } else {
        r = udp.sendPieces(peer.addr, peer.port, this.pieceHead, id, [this.superHead, f], room)
      }
    } catch {
      this.drop('super-frame-unsendable')
      return false
    }
    if (r === 0) { this.stats.datagramsSent++; return true }
    if (r === 'full') this.drop('send-buffer-full')
    else {
      this.drop(`send-error:${r}`)
      if (r === 'EMSGSIZE') this.relearnMtu(peer.addr, peer.port)
    }
    return false
  }
  /** Where super-frames are sealed: sendPieces hands them to the kernel (which copies) at once. */
  private sealScratch(): Buffer {
    return (this.sealBuf ??= Buffer.allocUnsafe(MAX_PIECED_BYTES))
  }
  private sealBuf: Buffer | undefined
  private readonly pieceHead = new Uint8Array(HEADER_BYTES)
  private readonly superHead = new Uint8Array(HEADER_BYTES + GSO_HEADER_BYTES)

  private encodePlain(e: Extract<ForwardEffect, { kind: 'send' }>, peer: SleevePeer, frames: Uint8Array[], maxBytes: number,
    out: OutDatagram[], replies: Uint8Array[] | undefined): void {
    const packed = packFrames(frames, maxBytes)
    let groups = packed.groups
    const tooBig = packed.tooBig
    if (tooBig.length) {
      const pieces: Uint8Array[] = []
      for (const f of tooBig) {
        const a = handleTooBig(f, maxBytes - HEADER_BYTES - PER_FRAME_BYTES)
        if (a.kind === 'fragments') { pieces.push(...a.frames); this.stats.fragmented++ }
        else if (a.kind === 'icmp' && replies) { replies.push(a.reply); this.stats.icmpSent++ }
        else this.drop(`too-big:${a.kind === 'drop' ? a.reason : 'relayed-df'}`)
      }
      if (pieces.length) groups = groups.concat(packFrames(pieces, maxBytes).groups)
    }
    for (const g of groups) {
      const plain = encodeFrames({ src: e.src, dst: e.dst }, g)
      out.push({ addr: peer.addr, port: peer.port, data: peer.cipher ? peer.cipher.seal(plain) : plain })
      this.stats.framesSent += g.length
    }
  }

  private send(out: OutDatagram[]): void {
    if (!out.length || !this.udp) return
    const r = this.udp.sendBatch(out)
    this.stats.datagramsSent += r.sent
    for (const e of r.errors) {
      this.drop(`send-error:${e.code}`)
      if (e.code === 'EMSGSIZE') this.relearnMtu(out[e.index].addr, out[e.index].port)
    }
    if (r.notSent) this.drop('send-buffer-full', r.notSent)
  }

  /** A datagram was refused as too big: the path shrank; take the kernel's new figure. */
  private relearnMtu(addr: string, port: number): void {
    const id = this.byAddr.get(`${addr}:${port}`)
    const peer = id === undefined ? undefined : this.peers.get(id)
    if (id === undefined || !peer || peer.pathMtu !== undefined) return
    const before = this.kernelMtu.get(id)
    const now = this.askKernelMtu(peer)
    this.kernelMtu.set(id, now)
    if (now !== before) this.log.info(`path MTU towards peer ${id} (${addr}) is now ${now}`)
  }

  private scheduleSweep(): void {
    this.cancelSweep = this.deps.clock.setTimer(MAC_SWEEP_INTERVAL_MS, () => {
      const n = this.forwarder.macs.sweep()
      if (n) this.log.debug(`expired ${n} MAC entries`)
      this.scheduleSweep()
    })
  }
}

/**
 * Frames on the router port carrying the datapath's relay tag (an 802.1ad tag whose VLAN ID is
 * the original sender's short ID; see fastdp-flows) are relayed frames, not captured ones: they
 * are taken apart from the rest, untagged, by sender.
 */
export function splitRelayTagged(frames: readonly Uint8Array[]): { local: Uint8Array[]; relayed: Map<number, Uint8Array[]> } {
  const relayed = new Map<number, Uint8Array[]>()
  let local: Uint8Array[] | undefined
  for (let i = 0; i < frames.length; i++) {
    const f = frames[i]
    if (f.length < 18 || ((f[12] << 8) | f[13]) !== RELAY_TAG_TPID) { local?.push(f); continue }
    local ??= frames.slice(0, i)
    const src = ((f[14] << 8) | f[15]) & 0xfff
    const untagged = new Uint8Array(f.length - 4)
    untagged.set(f.subarray(0, 12))
    untagged.set(f.subarray(16), 12)
    const xs = relayed.get(src) ?? []
    xs.push(untagged)
    relayed.set(src, xs)
  }
  return { local: local ?? (frames as Uint8Array[]), relayed }
}
