/**
 * Containers that died but may come back: their leases are kept for a grace period (Weave: 30 s)
 * and released after it, unless there was a sign of life first -- a start, or an allocation or
 * claim for the same ID (a re-attach after `docker restart`). Weave keys this on the lease
 * holder inside the allocator, so every path that proves the container alive clears it.
 *
 * Issue 13's duplicate address came from keeping this timer outside IPAM, in the proxy, where only
 * the proxy's own attach cancelled it: `docker restart` + `weave attach` of a container the proxy
 * does not attach left the timer running, and 30 s later the leases of a running container were
 * released and its address given to the next container.
 */

interface Dying {
  deadline: number
  /** The liveness check at the deadline is running; a sign of life meanwhile drops the entry. */
  checking: boolean
}

export class DeathGrace {
  private readonly dying = new Map<string, Dying>()

  constructor(readonly graceMs: number) {}

  /** `id` died at `now`; a second death notice before the deadline keeps the first deadline. */
  died(id: string, now: number): void {
    if (!this.dying.has(id)) this.dying.set(id, { deadline: now + this.graceMs, checking: false })
  }

  /** A sign of life (start, allocation, claim) or a release: nothing to do at the deadline. */
  alive(id: string): void {
    this.dying.delete(id)
  }

  isDying(id: string): boolean {
    return this.dying.has(id)
  }

  get size(): number {
    return this.dying.size
  }

  /**
   * The IDs whose deadline passed, each marked as being checked; call `confirm(id, token)` once
   * the check says it is dead: true when nothing revived it meanwhile (release now).
   */
  due(now: number): Array<{ id: string; token: object }> {
    const out: Array<{ id: string; token: object }> = []
    for (const [id, d] of this.dying) {
      if (d.checking || now < d.deadline) continue
      d.checking = true
      out.push({ id, token: d })
    }
    return out
  }

  /** Still dead after the check (no sign of life since `due`): drop the entry, true = release. */
  confirm(id: string, token: object): boolean {
    if (this.dying.get(id) !== token) return false
    this.dying.delete(id)
    return true
  }
}
