/** Batched IPv4 UDP sockets, with GSO/GRO and sleeve pieces (send-pieces.c, recv-pieces.c). */
import { addon, type Addon, type AeadContext, type Handle } from './addon'
import { BatchSocket, type SendResult, type SocketOptions } from './batch-socket'
import { errnoName } from './errno'
import { formatIpv4, parseIpv4 } from './ipv4-text'

const FLAG_PMTU = 1
const FLAG_GRO = 2
const FLAG_GSO = 4
const GRO_MAX_SEGMENTS = 64

export interface UdpSocketOptions extends SocketOptions {
  /** Set DF and refuse datagrams above the path MTU (EMSGSIZE) instead of fragmenting. */
  pmtuDiscover?: boolean
  /** Use UDP GSO/GRO when available (default true). */
  offload?: boolean
}

/** A datagram received: `data` is a view valid until the next recvBatch. */
export interface Datagram { data: Buffer; addr: string; port: number }
/**
 * A datagram to send; with `segment`, `data` is a run of datagrams of `segment` bytes each
 * (the last may be shorter) to the same address, sent as few GSO messages as the kernel allows.
 */
export interface OutDatagram { addr: string; port: number; data: Uint8Array; segment?: number }

/** A non-blocking IPv4 UDP socket with batched receive and send. */
export class UdpSocket extends BatchSocket {
  private readonly raddrs: Uint32Array
  private readonly rports: Uint16Array
  private saddrs = new Uint32Array(64)
  private sports = new Uint16Array(64)
  private ssegs = new Uint16Array(64)
  // peers are few: parse and format each address once
  private readonly addrText = new Map<number, string>()
  private readonly addrNum = new Map<string, number>()

  private constructor(a: Addon, h: Handle, opts: SocketOptions) {
    const gro = (a.features(h) & FLAG_GRO) !== 0
    super(a, h, opts, gro ? GRO_MAX_SEGMENTS : 1)
    this.raddrs = new Uint32Array(this.lens.length)
    this.rports = new Uint16Array(this.lens.length)
  }

  /**
   * Binds to `bindAddr:port` (port 0 = any). With `pmtuDiscover` the kernel sets DF and refuses
   * datagrams above the path MTU (EMSGSIZE in SendResult.errors); without, it fragments.
   * `offload` (default on) uses UDP GSO/GRO where the kernel has them; nothing changes for the
   * caller but the speed. Receive slots must then hold 64 KiB (the default).
   */
  static open(bindAddr: string, port: number, opts: UdpSocketOptions = {}): UdpSocket {
    const a = addon()
    const offload = (opts.offload ?? true) && (opts.slotBytes ?? 65_536) >= 65_536
    const flags = (opts.pmtuDiscover ? FLAG_PMTU : 0) | (offload ? FLAG_GRO | FLAG_GSO : 0)
    const h = a.udpOpen(bindAddr, port, opts.netns ?? null, opts.bufferBytes ?? 8 << 20, flags)
    return new UdpSocket(a, h, opts)
  }

  /** Which offloads the kernel granted. */
  get offloads(): { gro: boolean; gso: boolean } {
    const f = this.a.features(this.h)
    return { gro: (f & FLAG_GRO) !== 0, gso: (f & FLAG_GSO) !== 0 }
  }

  /** The bound port (useful after binding port 0). */
  get localPort(): number { return this.a.localPort(this.h) }

  /** Up to `batch` datagrams with their sources; [] when none wait. */
  recvBatch(): Datagram[] {
    this.assertOpen()
    const n = this.a.recvBatch(this.h, this.rbuf, this.slot, this.max, this.offs, this.lens, this.raddrs, this.rports)
    const out: Datagram[] = []
    for (let i = 0; i < n; i++) {
      const len = this.lens[i]
      if (len < 0) { this.truncated++; continue }
      const off = this.offs[i]
      out.push({ data: this.rbuf.subarray(off, off + len), addr: this.formatAddr(this.raddrs[i]), port: this.rports[i] })
    }
    return out
  }

  /**
   * Receives like recvBatch but builds no objects: returns how many entries the last read
   * filled; entry i is `lengths[i]` bytes at `buffer[offsets[i]]` (0: skip; < 0: did not fit
   * its slot, already counted in `truncated`) from `sourceAddrs[i]` (host-order IPv4):
   * `sourcePorts[i]`. Valid until the next read. For hot loops that look at bytes in place.
   */
  recvRaw(): number {
    this.assertOpen()
    const n = this.a.recvBatch(this.h, this.rbuf, this.slot, this.max, this.offs, this.lens, this.raddrs, this.rports)
    for (let i = 0; i < n; i++) if (this.lens[i] < 0) this.truncated++
    return n
  }
  /**
   * After recvRaw: copies the pieces (see sendPieces) of entries `start`.. into `dest` while
   * they continue the datagram described by `state` = [source addr, port, id, total, got];
   * advances state[4] and returns how many entries it took (0: entry `start` is not the next
   * piece). Checks each piece's header; stops at the first that does not follow.
   * With `open` the pieces are decrypted into place instead of copied (NativeAeadKey.piece).
   */
  collectPieces(start: number, end: number, state: Uint32Array, dest: Buffer, open?: { context: AeadContext; dir: number }): number {
    if (open) return this.a.collectPieces(this.rbuf, this.offs, this.lens, this.raddrs, this.rports, start, end, state, dest, open.context, open.dir)
    return this.a.collectPieces(this.rbuf, this.offs, this.lens, this.raddrs, this.rports, start, end, state, dest)
  }
  /**
   * Like collectPieces, copying nothing: how many entries from `start` continue the datagram
   * described by `state` (advancing state[4]), so a caller can tell whether all its pieces are
   * in this read (then PacketSocket.injectPieces can send the frame straight from them).
   */
  countPieces(start: number, end: number, state: Uint32Array): number {
    return this.a.collectPieces(this.rbuf, this.offs, this.lens, this.raddrs, this.rports, start, end, state, null)
  }
  get buffer(): Buffer { return this.rbuf }
  get offsets(): Uint32Array { return this.offs }
  get lengths(): Int32Array { return this.lens }
  get sourceAddrs(): Uint32Array { return this.raddrs }
  get sourcePorts(): Uint16Array { return this.rports }

  /** Sends each datagram to its address, in order, without copying the data. */
  sendBatch(dgrams: readonly OutDatagram[]): SendResult {
    const n = dgrams.length
    if (this.saddrs.length < n) { this.saddrs = new Uint32Array(n); this.sports = new Uint16Array(n); this.ssegs = new Uint16Array(n) }
    const bufs = new Array<Uint8Array>(n)
    let segmented = false
    for (let i = 0; i < n; i++) {
      const d = dgrams[i]
      this.saddrs[i] = this.parseAddr(d.addr)
      this.sports[i] = d.port
      const seg = d.segment !== undefined && d.segment > 0 && d.segment < d.data.length ? Math.min(d.segment, 0xffff) : 0
      this.ssegs[i] = seg
      if (seg) segmented = true
      bufs[i] = d.data
    }
    return this.sendRaw(bufs, this.saddrs, this.sports, null, segmented ? this.ssegs : null)
  }

  /**
   * Sends parts[0] ‖ parts[1] ‖ ... (≤ 4 parts, ≤ 128 KiB: one oversized sleeve datagram) to
   * `addr:port` as sleeve piece datagrams: each is `head` (8-byte sleeve header of kind piece),
   * u32 id, u32 total, u32 offset, then up to `room` bytes — see sleeve-frame.ts. The kernel
   * reads the bytes straight from the parts (no copy in userspace), up to 64 pieces per GSO
   * message. Returns 0 when all left, 'full' when the socket buffer filled, else an errno code.
   */
  sendPieces(addr: string, port: number, head: Uint8Array, id: number, parts: readonly Uint8Array[], room: number): 0 | string /* 'full', or why not */ {
    this.assertOpen()
    const r = this.a.sendPieces(this.h, this.parseAddr(addr), port, head, id >>> 0, parts, room)
    return r === 0 ? 0 : r < 0 ? 'full' : errnoName(r)
  }

  /** The kernel's path MTU towards `addr` (IP_MTU): the interface MTU until a smaller one is learnt. */
  pathMtu(addr: string): number {
    this.assertOpen()
    return this.a.pathMtu(this.h, this.parseAddr(addr), 9)
  }

  private parseAddr(text: string): number {
    let v = this.addrNum.get(text)
    if (v === undefined) {
      v = parseIpv4(text)
      if (v === undefined) throw new TypeError(`not an IPv4 address: ${text}`)
      if (this.addrNum.size > 4096) this.addrNum.clear()
      this.addrNum.set(text, v)
    }
    return v
  }

  private formatAddr(v: number): string {
    let t = this.addrText.get(v)
    if (t === undefined) {
      t = formatIpv4(v)
      if (this.addrText.size > 4096) this.addrText.clear()
      this.addrText.set(v, t)
    }
    return t
  }
}

/** Opens a batched UDP socket on `bindAddr:port` (see UdpSocket.open). */
export function openUdpSocket(bindAddr: string, port: number, opts: UdpSocketOptions = {}): UdpSocket {
  return UdpSocket.open(bindAddr, port, opts)
}
