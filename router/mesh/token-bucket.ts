/**
 * A token bucket with an injected clock: `capacity` tokens, one more every `refillIntervalMs`,
 * never more than `capacity`. The TCP listener takes one token per accepted connection (20 tokens,
 * one per 50 ms, as Weave), so a flood of connects is served at a bounded rate.
 *
 * Kept as "the time at which the bucket was last empty": tokens = (now - emptyAt) / interval,
 * capped. No timers; callers ask `waitMs()` how long until a token is there.
 */
export class TokenBucket {
  private emptyAt: number

  constructor(readonly capacity: number, readonly refillIntervalMs: number, private readonly now: () => number) {
    if (capacity < 1 || refillIntervalMs <= 0) throw new RangeError('token bucket needs capacity >= 1 and a positive interval')
    // Start full.
    this.emptyAt = now() - capacity * refillIntervalMs
  }

  /** Whole tokens available now. */
  available(): number {
    return Math.min(this.capacity, Math.floor((this.now() - this.emptyAt) / this.refillIntervalMs))
  }

  /** Take one token if there is one. */
  take(): boolean {
    const t = this.now()
    const fullAt = t - this.capacity * this.refillIntervalMs
    // Tokens beyond the capacity were never stored: move the origin up to "exactly full".
    if (this.emptyAt < fullAt) this.emptyAt = fullAt
    if (t - this.emptyAt < this.refillIntervalMs) return false
    this.emptyAt += this.refillIntervalMs
    return true
  }

  /** Milliseconds until `take()` can succeed (0 when it can now). */
  waitMs(): number {
    return Math.max(0, this.emptyAt + this.refillIntervalMs - this.now())
  }
}
