/**
 * The door to the native addon (router/native/weave_native.c): packet sockets that take
 * Ethernet frames off an interface and put them back, and UDP sockets, both moved in batches
 * (recvmmsg/sendmmsg), with readiness callbacks from node's own event loop.
 *
 * Received data are views into one receive buffer per socket, reused by the next read:
 * a caller that keeps bytes past the next `readBatch`/`recvBatch` copies them.
 * UDP sockets use GSO/GRO where the kernel has them (equal-sized runs to one destination leave
 * as one message; received coalesced messages are split back into datagrams), invisibly to
 * callers. `nativeAead()` offers in-place ChaCha20-Poly1305 through the system's libsodium;
 * `nativeAeadKey()` AES-256-GCM or ChaCha20-Poly1305 through OpenSSL's libcrypto (faster).
 *
 * Requirements at run time: Linux, root or CAP_NET_RAW for packet sockets, CAP_SYS_ADMIN for
 * the `netns` option; libsodium23 only for nativeAead (else callers use libsodium-wrappers).
 *
 * Loading is lazy (importing this file does no I/O); `nativeStatus()` tells a data-plane
 * factory whether it can work here and, if not, why.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { constants as osConstants } from 'node:os'
import { parseIp } from '../../ipv4'

type Handle = { readonly __brand: 'NativeSocket' }

/** The raw addon surface; see weave_native.c for each function's contract. */
interface Addon {
  MAX_BATCH: number
  packetOpen(ifname: string, netns: string | null, bufBytes: number, flags?: number, ethertype?: number): Handle
  udpOpen(addr: string, port: number, netns: string | null, bufBytes: number, flags: number): Handle
  localPort(h: Handle): number
  features(h: Handle): number
  recvBatch(h: Handle, buf: Buffer, slotSize: number, max: number, offs: Uint32Array, lens: Int32Array, addrs: Uint32Array | null, ports: Uint16Array | null): number
  sendBatch(h: Handle, bufs: readonly Uint8Array[], addrs: Uint32Array | null, ports: Uint16Array | null, status: Int32Array, vnet?: Uint8Array | null, segs?: Uint16Array | null): number
  sendPieces(h: Handle, addr: number, port: number, head: Uint8Array, id: number, parts: readonly Uint8Array[], room: number): number
  collectPieces(buf: Buffer, offs: Uint32Array, lens: Int32Array, addrs: Uint32Array, ports: Uint16Array, start: number, end: number, state: Uint32Array, dest: Buffer | null,
    aead?: AeadContext, dir?: number): number
  injectPieces?(h: Handle, buf: Buffer, offs: Uint32Array, lens: Int32Array, start: number, count: number, skip: number, vnet: Uint8Array): number
  pollStart(h: Handle, events: number, fn: (status: number, events: number) => void): void
  pollStop(h: Handle): void
  close(h: Handle): void
  fd(h: Handle): number
  pathMtu(h: Handle, addr: number, port: number): number
  aeadAvailable(): boolean
  aeadSeal(key: Uint8Array, dir: number, seq: number, buf: Uint8Array, adLen: number): void
  aeadOpen(key: Uint8Array, dir: number, seq: number, buf: Uint8Array, adLen: number): boolean
  aeadCiphers?(): number
  aeadContext?(alg: number, key: Uint8Array, sodiumOnly?: boolean): AeadContext
  aeadCtxSeal?(ctx: AeadContext, dir: number, seq: number, buf: Uint8Array, adLen: number): void
  aeadCtxOpen?(ctx: AeadContext, dir: number, seq: number, buf: Uint8Array, adLen: number): boolean
  aeadCtxSealv?(ctx: AeadContext, dir: number, seq: number, out: Uint8Array, adLen: number, parts: readonly Uint8Array[]): void
  aeadCtxPiece?(ctx: AeadContext, dir: number, dest: Uint8Array, src: Uint8Array, off: number, total: number): boolean
  aeadCtxPiecesDone?(ctx: AeadContext, buf: Uint8Array): boolean
}
/** A native AEAD key (opaque); UdpSocket.collectPieces can open pieces with it. */
export type AeadContext = { readonly __brand: 'AeadContext' }

/** Thrown when the addon was not built or cannot load; `code` is stable for callers. */
export class NativeUnavailableError extends Error {
  readonly code = 'ERR_NATIVE_UNAVAILABLE'
  constructor(message: string, options?: { cause?: unknown }) { super(message, options) }
}

const candidates = [
  // from dist/router/native/index.js (the compiled tree) back to the source tree's build output
  path.join(__dirname, '..', '..', '..', 'router', 'native', 'build', 'weave_native.node'),
  path.join(__dirname, 'build', 'weave_native.node'),
]

let loaded: Addon | undefined
let loadError: NativeUnavailableError | undefined

function addon(): Addon {
  if (loaded) return loaded
  if (loadError) throw loadError
  const file = candidates.find((f) => fs.existsSync(f))
  if (!file) {
    loadError = new NativeUnavailableError(`native module not built (looked for ${candidates.join(', ')}); run: node scripts/build-native.js`)
    throw loadError
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- a native addon is loaded by path, at run time
    loaded = require(file) as Addon
    return loaded
  } catch (err) {
    loadError = new NativeUnavailableError(`native module ${file} failed to load: ${(err as Error).message}`, { cause: err })
    throw loadError
  }
}

/** Whether the addon loads here; a data plane that needs it refuses with `reason` otherwise. */
export function nativeStatus(): { ok: true } | { ok: false; reason: string } {
  try { addon(); return { ok: true } } catch (err) { return { ok: false, reason: (err as Error).message } }
}

/**
 * In-place ChaCha20-Poly1305 (IETF) through the system's libsodium, when the addon and
 * libsodium23 are both there; undefined otherwise (callers fall back to libsodium-wrappers).
 * `buf` = associated data (adLen bytes) ‖ message ‖ 16-byte tag. Nonce: byte 0 = 0x80 when
 * `dir` is 1, bytes 4..11 = `seq` big-endian.
 */
export interface NativeAead {
  /** Encrypts the message in place and writes the tag. */
  seal(key: Uint8Array, dir: number, seq: number, buf: Uint8Array, adLen: number): void
  /** Authenticates, then decrypts in place; false when it does not authenticate (libsodium then zeroes the message). */
  open(key: Uint8Array, dir: number, seq: number, buf: Uint8Array, adLen: number): boolean
}

export function nativeAead(): NativeAead | undefined {
  let a: Addon
  try { a = addon() } catch { return undefined }
  if (!a.aeadAvailable()) return undefined
  return { seal: a.aeadSeal, open: a.aeadOpen }
}

/**
 * rtnetlink from netlink.c, for attaching containers without spawning `ip` (see its header for
 * each call). `fd` is a NETLINK_ROUTE socket made by nlOpen in a namespace (a path, or null for
 * ours); every call on it acts there. Failures throw with `code` = the errno name.
 */
export interface NativeNetlink {
  nlOpen(netns: string | null): number
  nlClose(fd: number): void
  /** `running`: operstate up (IFF_RUNNING), which the kernel's link watcher sets after carrier on. */
  nlLink(fd: number, name: string): { index: number; mtu: number; mac: string; up: boolean; running?: boolean; master: number } | null
  nlVethAdd(fd: number, name: string, peer: string, mtu: number, peerNetns: string | null): void
  /** up: -1 keep, 0 down, 1 up; master: -1 keep, 0 none, else an ifindex; mtu 0 keeps it. */
  nlLinkSet(fd: number, index: number, up: number, master: number, mtu: number): void
  nlHairpin(fd: number, index: number, on: boolean): void
  nlLinkDel(fd: number, index: number): void
  nlAddr(fd: number, add: boolean, index: number, ip: string, prefix: number): void
  /** Replace `dst/prefix dev index scope link` (or `via gw`) in the main table. */
  nlRoute(fd: number, index: number, dst: string, prefix: number, gw?: string | null): void
  /** Write /proc/sys/<key> (dots or slashes) as seen from `netns`. */
  nlSysctl(netns: string | null, key: string, value: string): void
  /** Sends one gratuitous ARP; returns the packet socket's fd, for the caller to close with fs.close (its close is slow). */
  nlGarp(netns: string | null, ifname: string, ip: string): number
  /**
   * Run argv (argv[0] on PATH) inside `netns` with `input` (< 64 KiB) on stdin, without forking
   * node (vfork + setns); `fn` gets the exit code and the output (stdout and stderr, read while it
   * runs, the first 16 KiB kept). Past `timeoutMs` (default 30 s) the child is SIGKILLed and the
   * code is 124 (NS_EXEC_TIMED_OUT).
   */
  nsExec?(netns: string | null, argv: readonly string[], input: string, fn: (code: number, output: string) => void, timeoutMs?: number): void
}

/** nsExec's exit code for a child killed at its deadline (as timeout(1) reports it). */
export const NS_EXEC_TIMED_OUT = 124

/** The netlink calls, or undefined when the addon is not built (callers then spawn `ip`). */
export function nativeNetlink(): NativeNetlink | undefined {
  let a: unknown
  try { a = addon() } catch { return undefined }
  return typeof (a as Partial<NativeNetlink>).nlOpen === 'function' ? a as NativeNetlink : undefined
}

/** AEADs the addon can run with a key set up once (see nativeAeadKey). */
export type NativeCipherName = 'chacha20-poly1305' | 'aes-256-gcm'

/** One key of one cipher, set up once (AES key schedule, OpenSSL context); same buffer layout and nonce as NativeAead. */
export interface NativeAeadKey {
  seal(dir: number, seq: number, buf: Uint8Array, adLen: number): void
  /** false when it does not authenticate: the buffer as it was with libcrypto (libsodium zeroes the message). */
  open(dir: number, seq: number, buf: Uint8Array, adLen: number): boolean
  /**
   * Like seal, with the message gathered from `parts` (≤ 8, not overlapping `out`, lengths
   * summing to out.length - adLen - 16) and encrypted straight into `out` after its adLen
   * bytes of associated data: one pass instead of copy-then-seal.
   */
  sealv(dir: number, seq: number, out: Uint8Array, adLen: number, parts: readonly Uint8Array[]): void
  /**
   * (With libcrypto only.) Opening a datagram (16 bytes of associated data ‖ ciphertext ‖ tag, `total` bytes) as its
   * pieces arrive, in order from offset 0: `src` holds bytes [off, off + src.length), decrypted
   * (or, for associated data and tag, copied) into the same place in `dest`. False when the
   * piece does not follow the previous one. UdpSocket.collectPieces does the same given `context`.
   * Nothing in `dest` is authentic until piecesDone(dest.subarray(0, total)) says so.
   */
  piece?(dir: number, dest: Uint8Array, src: Uint8Array, off: number, total: number): boolean
  /** The datagram streamed through `piece` arrived whole and its tag is right (one verdict per datagram). */
  piecesDone?(buf: Uint8Array): boolean
  readonly context: AeadContext
}

const CIPHER_ALG: Record<NativeCipherName, number> = { 'chacha20-poly1305': 0, 'aes-256-gcm': 1 }

/**
 * Which ciphers nativeAeadKey can do here: ChaCha20-Poly1305 with libcrypto (OpenSSL) or
 * libsodium; AES-256-GCM only with libcrypto on a CPU with AES-NI and PCLMUL (else it would be
 * slow and not constant-time). [] without the addon.
 */
export function nativeCiphers(): NativeCipherName[] {
  let a: Addon
  try { a = addon() } catch { return [] }
  const bits = a.aeadCiphers?.() ?? 0
  const out: NativeCipherName[] = []
  if (bits & 2) out.push('aes-256-gcm')
  if (bits & 1) out.push('chacha20-poly1305')
  return out
}

/**
 * A key for `cipher` (32 bytes, copied); undefined when nativeCiphers() lacks it.
 * `via: 'libsodium'` (tests): ChaCha20-Poly1305 as it runs where there is no libcrypto.
 */
export function nativeAeadKey(cipher: NativeCipherName, key: Uint8Array, opts: { via?: 'libsodium' } = {}): NativeAeadKey | undefined {
  if (!nativeCiphers().includes(cipher)) return undefined
  const a = addon()
  const sodiumOnly = opts.via === 'libsodium'
  if (sodiumOnly && (cipher !== 'chacha20-poly1305' || !a.aeadAvailable())) return undefined
  const ctx = a.aeadContext!(CIPHER_ALG[cipher], key, sodiumOnly)
  const streams = !sodiumOnly && ((a.aeadCiphers?.() ?? 0) & 4) !== 0 // with libcrypto; libsodium alone cannot
  const seal = a.aeadCtxSeal!
  const open = a.aeadCtxOpen!
  const sealv = a.aeadCtxSealv!
  const piece = a.aeadCtxPiece!
  const done = a.aeadCtxPiecesDone!
  return {
    context: ctx,
    ...(streams ? {
      piece: (dir: number, dest: Uint8Array, src: Uint8Array, off: number, total: number) => piece(ctx, dir, dest, src, off, total),
      piecesDone: (buf: Uint8Array) => done(ctx, buf),
    } : {}),
    seal: (dir, seq, buf, adLen) => seal(ctx, dir, seq, buf, adLen),
    open: (dir, seq, buf, adLen) => open(ctx, dir, seq, buf, adLen),
    sealv: (dir, seq, out, adLen, parts) => sealv(ctx, dir, seq, out, adLen, parts),
  }
}

/** Most messages one system call moves. */
export const MAX_BATCH = 256

// ---- IPv4 helpers ----------------------------------------------------------------------

/** "10.0.0.1" → 0x0a000001; undefined when it is not a dotted quad (the shared ipv4/ parser). */
export const parseIpv4 = parseIp

export function formatIpv4(v: number): string {
  return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`
}

const errnoNames = new Map<number, string>(Object.entries(osConstants.errno).map(([k, v]) => [v, k]))
const errnoName = (n: number): string => errnoNames.get(n) ?? `E${n}`

// ---- readiness -------------------------------------------------------------------------

const READABLE = 1
const WRITABLE = 2

/** One uv_poll per socket; readable interest is persistent, writable interest one-shot. */
class Poller {
  private onReadable: (() => void) | undefined
  private writeWaiters: Array<() => void> = []
  private mask = 0
  constructor(private readonly a: Addon, private readonly h: Handle) {}

  setReadable(fn: (() => void) | undefined): void { this.onReadable = fn; this.update() }
  waitWritable(): Promise<void> {
    return new Promise((resolve) => { this.writeWaiters.push(resolve); this.update() })
  }
  stop(): void {
    this.onReadable = undefined
    const w = this.writeWaiters
    this.writeWaiters = []
    this.update()
    for (const r of w) r() // a closed socket is "writable": the next send fails loudly instead of hanging
  }

  private update(): void {
    const want = (this.onReadable ? READABLE : 0) | (this.writeWaiters.length ? WRITABLE : 0)
    if (want === this.mask) return
    this.mask = want
    if (want === 0) this.a.pollStop(this.h)
    else this.a.pollStart(this.h, want, (status, events) => this.fire(status, events))
  }

  private fire(status: number, events: number): void {
    // A poll error (status < 0) is reported as readiness: the next read or send surfaces the errno.
    if (status < 0 || events & WRITABLE) {
      const w = this.writeWaiters
      this.writeWaiters = []
      this.update()
      for (const r of w) r()
    }
    if ((status < 0 || events & READABLE) && this.onReadable) this.onReadable()
  }
}

// ---- sockets ---------------------------------------------------------------------------

export interface SocketOptions {
  /** Open the socket inside this network namespace (a path such as /var/run/netns/NAME). */
  netns?: string
  /** Kernel socket buffer size in bytes (both directions); default 8 MiB. */
  bufferBytes?: number
  /** Largest message one read takes; longer ones are reported truncated. Default 65,536. */
  slotBytes?: number
  /** Most messages one read returns (≤ MAX_BATCH). Default 64. */
  batch?: number
}

/** What a batched send did. */
export interface SendResult {
  /** Messages the kernel accepted. */
  sent: number
  /** Messages the kernel refused one by one (e.g. EMSGSIZE above the path MTU). */
  errors: Array<{ index: number; code: string }>
  /** Messages from `sent + errors.length` on were not tried: the socket buffer was full. */
  notSent: number
}

/** A frame or datagram that did not fit its receive slot, by its true length. */
export interface Truncated { length: number }

abstract class BatchSocket {
  protected readonly a: Addon
  protected readonly h: Handle
  protected readonly slot: number
  protected readonly max: number
  protected readonly rbuf: Buffer
  protected readonly offs: Uint32Array
  protected readonly lens: Int32Array
  private readonly poller: Poller
  private status = new Int32Array(64)
  private isClosed = false
  /** Messages dropped on receipt because they were larger than a slot. */
  truncated = 0

  /** `entriesPerMessage`: datagrams one received message may hold (64 with UDP GRO). */
  protected constructor(a: Addon, h: Handle, opts: SocketOptions, entriesPerMessage: number) {
    this.a = a
    this.h = h
    this.slot = opts.slotBytes ?? 65_536
    this.max = Math.min(opts.batch ?? 64, a.MAX_BATCH)
    this.rbuf = Buffer.allocUnsafe(this.slot * this.max)
    this.offs = new Uint32Array(this.max * entriesPerMessage)
    this.lens = new Int32Array(this.max * entriesPerMessage)
    this.poller = new Poller(a, h)
  }

  get closed(): boolean { return this.isClosed }
  get fd(): number { return this.a.fd(this.h) }

  /** Call `fn` whenever data are waiting (level-triggered: again next turn if not drained). */
  onReadable(fn: () => void): void { this.assertOpen(); this.poller.setReadable(fn) }
  /** Stop the readable callbacks (the socket stays open). */
  offReadable(): void { if (!this.isClosed) this.poller.setReadable(undefined) }
  /** Resolves when the socket can take more to send (after a send with `notSent > 0`). */
  whenWritable(): Promise<void> { this.assertOpen(); return this.poller.waitWritable() }

  /** Stop polling and close the fd. Idempotent. */
  close(): void {
    if (this.isClosed) return
    this.isClosed = true
    this.poller.stop()
    this.a.close(this.h)
  }

  protected assertOpen(): void {
    if (this.isClosed) throw new Error('socket is closed')
  }

  protected sendRaw(bufs: readonly Uint8Array[], addrs: Uint32Array | null, ports: Uint16Array | null, vnet: Uint8Array | null = null,
    segs: Uint16Array | null = null): SendResult {
    this.assertOpen()
    if (this.status.length < bufs.length) this.status = new Int32Array(bufs.length)
    const done = this.a.sendBatch(this.h, bufs, addrs, ports, this.status, vnet, segs)
    const errors: SendResult['errors'] = []
    for (let i = 0; i < done; i++) if (this.status[i] > 0) errors.push({ index: i, code: errnoName(this.status[i]) })
    return { sent: done - errors.length, errors, notSent: bufs.length - done }
  }
}

/** Bytes of the virtio_net_hdr in front of each frame on a `vnetHdr` packet socket. */
export const VNET_HDR_BYTES = 10
const FLAG_VNET = 8

export interface PacketSocketOptions extends SocketOptions {
  /**
   * Read and write frames with a virtio_net_hdr (PACKET_VNET_HDR) when the kernel allows: GSO
   * super-frames (TSO from a container, up to 64 KiB) then arrive whole, with `gsoHeader(frame)`
   * telling how the kernel would cut them, and writeBatch can put such super-frames back for the
   * kernel to segment. Frames whose checksum was left to offload are completed on receipt.
   * Give slots of 64 KiB + a little (a super-frame plus its header). Default off.
   */
  vnetHdr?: boolean
  /** Only frames of this ethertype (e.g. heartbeats on a tunnel device); default every frame. */
  ethertype?: number
}

/** An AF_PACKET socket bound to one interface: whole Ethernet frames in and out. */
export class PacketSocket extends BatchSocket {
  /** Whether frames carry a virtio_net_hdr (PacketSocketOptions.vnetHdr, granted by the kernel). */
  readonly vnet: boolean
  private vnetOut = new Uint8Array(64 * VNET_HDR_BYTES)

  private constructor(a: Addon, h: Handle, readonly ifname: string, opts: SocketOptions) {
    super(a, h, opts, 1)
    this.vnet = (a.features(h) & FLAG_VNET) !== 0
  }

  /** Opens and binds; throws an Error with an errno `code` (ENODEV, EPERM...) on failure. */
  static open(ifname: string, opts: PacketSocketOptions = {}): PacketSocket {
    const a = addon()
    const h = a.packetOpen(ifname, opts.netns ?? null, opts.bufferBytes ?? 8 << 20, opts.vnetHdr ? FLAG_VNET : 0, opts.ethertype ?? 0)
    return new PacketSocket(a, h, ifname, opts)
  }

  /**
   * For a frame of the last readBatch on a `vnet` socket: its 10-byte virtio_net_hdr (a view)
   * when it is a GSO super-frame (gso_type ≠ 0), else undefined. Layout (host byte order):
   * u8 flags (1 = needs checksum), u8 gso_type (1 TCPv4, 3 UDP, 4 TCPv6, 5 UDP L4, | 0x80 ECN),
   * u16 hdr_len, u16 gso_size, u16 csum_start, u16 csum_offset.
   */
  gsoHeader(frame: Uint8Array): Uint8Array | undefined {
    if (!this.vnet || frame.buffer !== this.rbuf.buffer) return undefined
    const at = frame.byteOffset - VNET_HDR_BYTES
    if (at < this.rbuf.byteOffset) return undefined
    const hdr = new Uint8Array(frame.buffer, at, VNET_HDR_BYTES)
    return hdr[1] !== 0 ? hdr : undefined
  }

  /**
   * Up to `batch` frames received on the interface (never ones we sent); [] when none wait.
   * The frames are views valid until the next readBatch.
   */
  readBatch(): Buffer[] {
    this.assertOpen()
    const n = this.a.recvBatch(this.h, this.rbuf, this.slot, this.max, this.offs, this.lens, null, null)
    const out: Buffer[] = []
    for (let i = 0; i < n; i++) {
      const len = this.lens[i]
      if (len > 0) out.push(this.rbuf.subarray(this.offs[i], this.offs[i] + len))
      else if (len < 0) this.truncated++
    }
    return out
  }

  /**
   * Transmits the frames on the interface, in order, without copying them. On a `vnet` socket,
   * `gso[i]` (a 10-byte virtio_net_hdr, see gsoHeader) makes frame i a super-frame the kernel
   * segments (or passes on whole where the next device takes GSO); other frames go as they are.
   */
  /**
   * Sends one frame gathered from received UDP entries `start`..`start + count - 1` of `from`'s
   * last read: each entry's bytes past its 20-byte piece header (the first also past `skip`
   * more), behind the virtio_net_hdr `vnet` — a super-frame injected straight from its pieces,
   * never put together in userspace. `vnet` sockets only. 0 when sent, else an errno code
   * ('EAGAIN': buffer full).
   */
  injectPieces(from: UdpSocket, start: number, count: number, skip: number, vnet: Uint8Array): 0 | string {
    this.assertOpen()
    if (!this.vnet || !this.a.injectPieces) return 'ENOTSUP'
    const r = this.a.injectPieces(this.h, from.buffer, from.offsets, from.lengths, start, count, skip, vnet)
    return r === 0 ? 0 : errnoName(r)
  }

  writeBatch(frames: readonly Uint8Array[], gso?: ReadonlyArray<Uint8Array | undefined>): SendResult {
    if (!gso || !this.vnet) return this.sendRaw(frames, null, null)
    const need = frames.length * VNET_HDR_BYTES
    if (this.vnetOut.length < need) this.vnetOut = new Uint8Array(need)
    const v = this.vnetOut
    v.fill(0, 0, need)
    for (let i = 0; i < frames.length; i++) { const g = gso[i]; if (g) v.set(g.subarray(0, VNET_HDR_BYTES), i * VNET_HDR_BYTES) }
    return this.sendRaw(frames, null, null, v)
  }
}

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

/** Opens a packet socket on `ifname` (see PacketSocket.open). */
export function openPacketSocket(ifname: string, opts: PacketSocketOptions = {}): PacketSocket {
  return PacketSocket.open(ifname, opts)
}

/** Opens a batched UDP socket on `bindAddr:port` (see UdpSocket.open). */
export function openUdpSocket(bindAddr: string, port: number, opts: UdpSocketOptions = {}): UdpSocket {
  return UdpSocket.open(bindAddr, port, opts)
}
