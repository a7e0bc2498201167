/**
 * The TCP listener's admission: accepts go through a token bucket (20 at once, then one per
 * 50 ms, as Weave), so a flood of connects is served at a bounded rate; sockets over the rate
 * wait in a short queue, and beyond it are closed and refused.
 */
import type * as net from 'node:net'
import type { Clock } from '../deps'
import type { HandshakeFailure } from './connection-contract'
import { TokenBucket } from './token-bucket'
import { addrOf } from './tcp-socket'

/** Sockets waiting for an accept token beyond this are refused. */
const MAX_ACCEPT_QUEUE = 64

export class AcceptQueue {
  private readonly bucket: TokenBucket
  private readonly waiting: { socket: net.Socket; addr: string }[] = []
  private cancelDrain: (() => void) | undefined

  /**
   * `admit`: a socket's turn came (its handshake starts); `refuse`: one given up (the queue was
   * full, or it closed while waiting).
   */
  constructor(
    burst: number,
    refillMs: number,
    private readonly clock: Clock,
    private readonly admit: (socket: net.Socket) => void,
    private readonly refuse: (addr: string, f: HandshakeFailure) => void,
  ) {
    this.bucket = new TokenBucket(burst, refillMs, () => clock.now())
  }

  /** A new inbound socket: admitted now if there is a token and nobody waits, else queued. */
  offer(socket: net.Socket): void {
    if (!this.waiting.length && this.bucket.take()) return this.admit(socket)
    const addr = addrOf(socket.remoteAddress, socket.remotePort)
    if (this.waiting.length >= MAX_ACCEPT_QUEUE) {
      this.refuse(addr, { code: 'io-error', message: 'too many connection attempts; try later', permanent: false })
      socket.destroy()
      return
    }
    this.waiting.push({ socket, addr })
    if (!this.cancelDrain) this.cancelDrain = this.clock.setTimer(this.bucket.waitMs(), () => this.drain())
  }

  /** Stops admitting: the waiting sockets are destroyed. */
  close(): void {
    this.cancelDrain?.()
    for (const q of this.waiting.splice(0)) q.socket.destroy()
  }

  private drain(): void {
    this.cancelDrain = undefined
    while (this.waiting.length && this.bucket.take()) {
      const { socket, addr } = this.waiting.shift()!
      if (!socket.destroyed) this.admit(socket)
      else this.refuse(addr, { code: 'io-error', message: 'connection closed while waiting to be accepted', permanent: false })
    }
    if (this.waiting.length) this.cancelDrain = this.clock.setTimer(this.bucket.waitMs(), () => this.drain())
  }
}
