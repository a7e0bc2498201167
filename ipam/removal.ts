/**
 * Who may take over a dead peer's ranges: each peer grants that right for a given dead peer to one
 * taker at a time (itself included), for `holdMs`; rmpeer needs the grants of a majority of the
 * peers owning space, so two concurrent rmpeers of the same peer cannot both succeed.
 */
import type { Clock } from '../router/deps'
import type { PeerName } from '../router/mesh'

export class RemovalLocks {
  private readonly grants = new Map<PeerName, { by: PeerName; at: number }>()

  constructor(private readonly clock: Clock, private readonly holdMs = 30_000) {}

  /** Grant `by` the removal of `peer` unless someone else holds it; true when granted. */
  tryGrant(peer: PeerName, by: PeerName): boolean {
    const g = this.grants.get(peer)
    const now = this.clock.now()
    if (g && g.by !== by && now - g.at < this.holdMs) return false
    this.grants.set(peer, { by, at: now })
    return true
  }

  holder(peer: PeerName): PeerName | undefined {
    return this.grants.get(peer)?.by
  }

  release(peer: PeerName, by: PeerName): void {
    if (this.grants.get(peer)?.by === by) this.grants.delete(peer)
  }
}
