/**
 * One mesh connection's sleeve path as a pure state machine: `established` once a UDP heartbeat
 * from the peer arrived (their → our path works) and the peer acknowledged one of ours (our →
 * their path works), both within the timeout; `stale` when that lapsed after it once held;
 * `pending` before. Time is passed in (`now`, ms); the overlay's driver feeds it events and
 * carries out what `tick` returns.
 */
import type { PeerName } from '../mesh'

/** Weave sends sleeve heartbeats every second until the path is confirmed, then keeps them up. */
export const HEARTBEAT_INTERVAL_MS = 1_000
/** Without a heartbeat (or its ack) for this long the path is no longer established. */
export const HEARTBEAT_TIMEOUT_MS = 10_000

export type LinkState = 'pending' | 'established' | 'stale'

/** What one tick asks the driver to do for one link. */
export interface LinkTick {
  sendHello: boolean
  sendHeartbeat: boolean
}

/**
 * One mesh connection's sleeve path, as a state machine over an injected time (`now` in ms);
 * no I/O. The driver feeds it events and carries out what `tick` returns.
 */
export class SleeveLink {
  /** The remote's hello, once it arrived. */
  remote: { port: number; pub?: Uint8Array } | undefined
  private lastHeartbeatRx: number | undefined
  private lastAckRx: number | undefined
  private everEstablished = false

  constructor(
    readonly peer: PeerName,
    readonly connUid: bigint,
    private readonly timeoutMs = HEARTBEAT_TIMEOUT_MS,
  ) {}

  /** A hello arrived; returns whether it was the first (the peer's address/key are now known) and whether to answer. */
  onHello(h: { port: number; pub?: Uint8Array; got: boolean }): { first: boolean; reply: boolean } {
    const first = this.remote === undefined
    if (first) this.remote = { port: h.port, pub: h.pub }
    return { first, reply: !h.got }
  }

  /** A UDP heartbeat for this connection arrived: the peer → us path works. Answer with an ack. */
  onHeartbeat(now: number): void {
    this.lastHeartbeatRx = now
  }

  /** The peer acknowledged one of our heartbeats: the us → peer path works. */
  onAck(now: number): void {
    this.lastAckRx = now
  }

  /** Why the path is not established (undefined when it is), for status. */
  why(now: number): string | undefined {
    const fresh = (t: number | undefined) => t !== undefined && now - t <= this.timeoutMs
    const rx = fresh(this.lastHeartbeatRx), ack = fresh(this.lastAckRx)
    if (rx && ack) return undefined
    if (this.remote === undefined) return 'no overlay hello from the peer yet'
    if (!rx && !ack) return 'no UDP heartbeat gets through either way'
    if (!rx) return 'no UDP heartbeat arrives from the peer'
    return 'the peer gets no UDP heartbeat from us'
  }

  state(now: number): LinkState {
    const fresh = (t: number | undefined) => t !== undefined && now - t <= this.timeoutMs
    if (fresh(this.lastHeartbeatRx) && fresh(this.lastAckRx)) {
      this.everEstablished = true
      return 'established'
    }
    return this.everEstablished ? 'stale' : 'pending'
  }

  /** Once per heartbeat interval: hello until theirs arrived; heartbeats once we know where to send them. */
  tick(): LinkTick {
    return { sendHello: this.remote === undefined, sendHeartbeat: this.remote !== undefined }
  }
}
