/** What packet and UDP sockets share: receive buffers, readiness, batched sends, closing. */
import type { Addon, Handle } from './addon'
import { errnoName } from './errno'
import { Poller } from './poller'

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

export abstract class BatchSocket {
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
