/**
 * The local peer's address space: the ranges the ring says it owns, the addresses leased in them,
 * and the free intervals between (kept sorted, so "lowest free in a subnet" is a binary search).
 */
import { type Range, intersect, largestAlignedBlock } from './address'

export class Space {
  private owned: Range[] = []
  /** Sorted, disjoint, coalesced free intervals inside `owned`. */
  private free: Range[] = []
  /** address -> lease holder (container ID) for addresses inside the universe. */
  private readonly leased = new Map<number, string>()

  /** Replace the owned ranges (after a ring change); leases are kept, free space recomputed. */
  setOwned(ranges: Range[]): void {
    this.owned = ranges.map((r) => ({ ...r }))
    const leasedSorted = [...this.leased.keys()].sort((a, b) => a - b)
    const free: Range[] = []
    let j = 0
    for (const r of this.owned) {
      let cur = r.start
      while (j < leasedSorted.length && leasedSorted[j] < r.start) j++
      while (j < leasedSorted.length && leasedSorted[j] < r.end) {
        if (leasedSorted[j] > cur) free.push({ start: cur, end: leasedSorted[j] })
        cur = leasedSorted[j] + 1
        j++
      }
      if (cur < r.end) free.push({ start: cur, end: r.end })
    }
    this.free = free
  }

  ownedRanges(): Range[] {
    return this.owned.map((r) => ({ ...r }))
  }

  owns(addr: number): boolean {
    return this.owned.some((r) => addr >= r.start && addr < r.end)
  }

  holder(addr: number): string | undefined {
    return this.leased.get(addr)
  }

  leaseCount(): number {
    return this.leased.size
  }

  leases(): IterableIterator<[number, string]> {
    return this.leased.entries()
  }

  /** Index of the first free interval ending after `addr`. */
  private firstEndingAfter(addr: number): number {
    let lo = 0
    let hi = this.free.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (this.free[mid].end <= addr) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /** Lowest free owned address in `within`, leased to `holder`; undefined when there is none. */
  allocateLowest(within: Range, holder: string): number | undefined {
    const i = this.firstEndingAfter(within.start)
    if (i >= this.free.length) return undefined
    const addr = Math.max(this.free[i].start, within.start)
    if (addr >= within.end) return undefined
    this.take(addr, holder)
    return addr
  }

  isFree(addr: number): boolean {
    const i = this.firstEndingAfter(addr)
    return i < this.free.length && this.free[i].start <= addr
  }

  /** Record a lease from saved state, before `setOwned` (which carves leased addresses out). */
  restoreLease(addr: number, holder: string): void {
    this.leased.set(addr, holder)
  }

  /** Lease `addr` (which must be owned and free) to `holder`. */
  take(addr: number, holder: string): void {
    const i = this.firstEndingAfter(addr)
    const f = this.free[i]
    if (!f || f.start > addr) throw new Error(`address ${addr} is not free`)
    const parts: Range[] = []
    if (f.start < addr) parts.push({ start: f.start, end: addr })
    if (addr + 1 < f.end) parts.push({ start: addr + 1, end: f.end })
    this.free.splice(i, 1, ...parts)
    this.leased.set(addr, holder)
  }

  /** Drop the lease on `addr`; owned addresses become free again. */
  release(addr: number): void {
    if (!this.leased.delete(addr)) return
    if (!this.owns(addr)) return
    const i = this.firstEndingAfter(addr)
    const prev = this.free[i - 1]
    const next = this.free[i]
    const joinPrev = prev !== undefined && prev.end === addr
    const joinNext = next !== undefined && next.start === addr + 1
    if (joinPrev && joinNext) {
      prev.end = next.end
      this.free.splice(i, 1)
    } else if (joinPrev) prev.end = addr + 1
    else if (joinNext) next.start = addr
    else this.free.splice(i, 0, { start: addr, end: addr + 1 })
  }

  /** Free addresses within `r`. */
  freeIn(r: Range): number {
    let n = 0
    for (let i = this.firstEndingAfter(r.start); i < this.free.length && this.free[i].start < r.end; i++) {
      const o = intersect(this.free[i], r)
      if (o) n += o.end - o.start
    }
    return n
  }

  hasLeasesIn(r: Range): boolean {
    // Leases are few relative to ranges in practice, but ranges can be huge: test whichever is cheaper.
    if (r.end - r.start < this.leased.size) {
      for (let a = r.start; a < r.end; a++) if (this.leased.has(a)) return true
      return false
    }
    for (const a of this.leased.keys()) if (a >= r.start && a < r.end) return true
    return false
  }

  /**
   * What to donate for a request in `within`: the largest CIDR-aligned wholly free block there,
   * at most half our free space in `within` (at least one address, so a single-address claim
   * of a free address can always be granted).
   */
  donation(within: Range): Range | undefined {
    const cap = Math.max(1, Math.floor(this.freeIn(within) / 2))
    let best: Range | undefined
    for (let i = this.firstEndingAfter(within.start); i < this.free.length && this.free[i].start < within.end; i++) {
      const o = intersect(this.free[i], within)
      const b = o && largestAlignedBlock(o, cap)
      if (b && (!best || b.end - b.start >= best.end - best.start)) best = b
    }
    return best
  }

  /** Internal consistency, for tests: free ∪ leased-in-owned = owned, all disjoint. */
  check(): string | undefined {
    let total = 0
    for (let i = 0; i < this.free.length; i++) {
      const f = this.free[i]
      if (f.start >= f.end) return `empty free interval at ${f.start}`
      if (i > 0 && this.free[i - 1].end >= f.start) return `free intervals overlap or touch at ${f.start}`
      if (!this.owned.some((r) => f.start >= r.start && f.end <= r.end)) return `free interval ${f.start} outside owned space`
      total += f.end - f.start
    }
    let leasedOwned = 0
    for (const a of this.leased.keys()) {
      if (this.owns(a)) {
        leasedOwned++
        if (this.isFree(a)) return `address ${a} both leased and free`
      }
    }
    const owned = this.owned.reduce((n, r) => n + r.end - r.start, 0)
    if (total + leasedOwned !== owned) return `free ${total} + leased ${leasedOwned} != owned ${owned}`
    return undefined
  }
}
