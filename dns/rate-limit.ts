/**
 * Per-source query limit (pure; time passed in): each client address may send `qps` queries a
 * second with bursts of `burst`; beyond that its queries are dropped (and counted), so one
 * container flooding weaveDNS cannot starve the others. The table of sources is bounded: when
 * full, the entries idle longest are forgotten (a forgotten source starts again with a full bucket).
 */
export class SourceLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>()
  constructor(private readonly qps: number, private readonly burst: number, private readonly maxSources = 4096) {}

  /** Whether a query from `source` at `now` (ms) may be served. */
  allow(source: string, now: number): boolean {
    if (this.qps <= 0) return true // 0 = unlimited
    let b = this.buckets.get(source)
    if (!b) {
      if (this.buckets.size >= this.maxSources) this.evict(now)
      b = { tokens: this.burst, at: now }
    } else {
      this.buckets.delete(source) // re-insert: the map's order is least recently used first
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) * this.qps) / 1000)
      b.at = now
    }
    this.buckets.set(source, b)
    if (b.tokens < 1) return false
    b.tokens -= 1
    return true
  }

  get sources(): number { return this.buckets.size }

  private evict(now: number): void {
    // Drop full buckets first (idle long enough to have refilled), else the least recently used.
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((now - b.at) * this.qps) / 1000 >= this.burst) this.buckets.delete(k)
      if (this.buckets.size < this.maxSources * 0.9) return
    }
    const first = this.buckets.keys().next()
    if (!first.done) this.buckets.delete(first.value)
  }
}
