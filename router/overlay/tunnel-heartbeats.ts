/**
 * The heartbeats of one fast overlay's tunnel and the health they give (fastdp-health): a sender
 * that puts heartbeats into the tunnel (and, when it can, hears the peers' as they arrive), or
 * flow counters read each tick when it cannot. The overlay switch runs the clock; the fast
 * overlays (OVS fastdp, kernel vxlan) each make one.
 */
import type { Clock } from '../deps'
import {
  FASTDP_COUNTER_INTERVAL_MS, FASTDP_COUNTER_TIMEOUT_MS, FASTDP_FULL_HEARTBEAT_TIMEOUT_MS, FASTDP_HEARTBEAT_INTERVAL_MS, FASTDP_HEARTBEAT_TIMEOUT_MS,
  FastdpHealth, type HeartbeatSender,
} from './fastdp-health'

export class TunnelHeartbeats {
  readonly health: FastdpHealth
  /** Heartbeat period: fast with heartbeats heard as they arrive, slow when only counters tell. */
  readonly intervalMs: number

  constructor(
    readonly sender: HeartbeatSender,
    private readonly clock: Clock,
    /** Heartbeats received per sender short ID (for a sender without onReceive). */
    private readonly counters?: () => Promise<ReadonlyMap<number, number>>,
    /** How heartbeats are heard (for `weave report`). */
    private readonly heard = 'as they arrive',
  ) {
    const fast = sender.onReceive !== undefined
    this.intervalMs = fast ? FASTDP_HEARTBEAT_INTERVAL_MS : FASTDP_COUNTER_INTERVAL_MS
    this.health = fast ? new FastdpHealth(FASTDP_HEARTBEAT_TIMEOUT_MS, FASTDP_FULL_HEARTBEAT_TIMEOUT_MS) : new FastdpHealth(FASTDP_COUNTER_TIMEOUT_MS)
    sender.onReceive?.((src, full) => this.health.onHeartbeat(src, clock.now(), full))
  }

  /** How heartbeats are heard: as they arrive (fast) or from counters (slow). */
  get via(): string { return this.sender.onReceive ? this.heard : 'flow counters' }

  /** One heartbeat to each peer; then, without onReceive, the counters. Errors go to `onError`. */
  async tick(peers: Iterable<{ shortId: number; ip: string; peer: string }>, onError: (peer: string, err: Error) => void): Promise<void> {
    await Promise.all([...peers].map((p) => this.sender.send({ shortId: p.shortId, ip: p.ip }).catch((err: Error) => onError(p.peer, err))))
    if (!this.sender.onReceive && this.counters) {
      const counts = await this.counters().catch((err: Error) => { onError('(counters)', err); return new Map<number, number>() })
      this.health.onCounters(counts, this.clock.now())
    }
  }

  close(): void { this.sender.close?.() }
}
