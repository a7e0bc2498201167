/**
 * The ring: a CRDT recording which peer owns which part of the allocation range.
 *
 * The universe `[start, end)` is split by tokens; the entry at a token owns the addresses up to
 * the next token (the last one up to `end`). A non-empty ring always has a token at `start`, so
 * ranges never wrap. Only an entry's owner changes it, bumping its version; `transfer` (rmpeer)
 * is the one administrative exception and jumps the version by 100 and tombstones the old owner,
 * whose entries can then never win a merge again (Weave's rmpeer could be undone by a peer that
 * came back; see reference/weave-ipam-proxy-cli.md (b) 1).
 */
import type { PeerName } from '../router/mesh'
import { type Range, formatRange, intersect, rangeSize } from './address'

export interface Entry {
  token: number
  peer: PeerName
  version: number
  /** Advisory count of free addresses in this entry's range, reported by its owner. */
  free: number
}

export interface RingWire {
  start: number
  end: number
  entries: Entry[]
  seeds: string[]
  removed: string[]
}

/** Why a merge was refused as a whole. */
export type MergeResult =
  | { ok: true; changed: boolean; reasserted: boolean; selfRemoved: boolean }
  | { ok: false; code: 'range-mismatch' | 'seed-mismatch' | 'lease-conflict' | 'invalid'; reason: string }

/** Transfer version jump, as Weave's: well above what an owner's own updates reach in practice. */
export const TRANSFER_VERSION_JUMP = 100

/**
 * What code outside IPAM's state machine may do with a ring: read it. The Allocator hands out its
 * ring as this, so only its own parts change it (and persist the change before it leaves).
 */
export interface RingView {
  readonly start: number
  readonly end: number
  readonly entries: readonly Readonly<Entry>[]
  readonly seeds: readonly PeerName[]
  readonly removed: ReadonlySet<PeerName>
  isEmpty(): boolean
  owner(addr: number): PeerName | undefined
  ownedBy(peer: PeerName): Range[]
  shares(): Map<PeerName, number>
  freeIn(within: Range): Map<PeerName, number>
  check(): string | undefined
  toWire(): RingWire
}

export class Ring implements RingView {
  entries: Entry[] = []
  seeds: PeerName[] = []
  removed = new Set<PeerName>()

  constructor(readonly start: number, readonly end: number) {
    if (!(end > start)) throw new Error(`empty ring universe ${start}-${end}`)
  }

  isEmpty(): boolean {
    return this.entries.length === 0
  }

  clone(): Ring {
    const r = new Ring(this.start, this.end)
    r.entries = this.entries.map((e) => ({ ...e }))
    r.seeds = [...this.seeds]
    r.removed = new Set(this.removed)
    return r
  }

  /** The range of entry `i`. */
  rangeAt(i: number): Range {
    return { start: this.entries[i].token, end: i + 1 < this.entries.length ? this.entries[i + 1].token : this.end }
  }

  /** Index of the entry whose range contains `addr`, or -1 (empty ring or outside). */
  indexOf(addr: number): number {
    if (addr < this.start || addr >= this.end || this.entries.length === 0) return -1
    let lo = 0
    let hi = this.entries.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (this.entries[mid].token <= addr) lo = mid
      else hi = mid - 1
    }
    return lo
  }

  owner(addr: number): PeerName | undefined {
    const i = this.indexOf(addr)
    return i < 0 ? undefined : this.entries[i].peer
  }

  /** Ranges owned by `peer`, adjacent ones coalesced, in order. */
  ownedBy(peer: PeerName): Range[] {
    const out: Range[] = []
    for (let i = 0; i < this.entries.length; i++) {
      if (this.entries[i].peer !== peer) continue
      const r = this.rangeAt(i)
      const last = out[out.length - 1]
      if (last && last.end === r.start) last.end = r.end
      else out.push({ ...r })
    }
    return out
  }

  /** Addresses each peer owns. */
  shares(): Map<PeerName, number> {
    const out = new Map<PeerName, number>()
    for (let i = 0; i < this.entries.length; i++) {
      const p = this.entries[i].peer
      out.set(p, (out.get(p) ?? 0) + rangeSize(this.rangeAt(i)))
    }
    return out
  }

  /** Advertised free addresses per peer within `within` (prorated for partial overlap). */
  freeIn(within: Range): Map<PeerName, number> {
    const out = new Map<PeerName, number>()
    for (let i = 0; i < this.entries.length; i++) {
      const r = this.rangeAt(i)
      const o = intersect(r, within)
      if (!o) continue
      const e = this.entries[i]
      const share = Math.floor((e.free * rangeSize(o)) / rangeSize(r))
      out.set(e.peer, (out.get(e.peer) ?? 0) + share)
    }
    return out
  }

  /**
   * Split the universe among `peers` (sorted, de-duplicated) in equal shares; every peer that
   * runs the same function on the same list builds the same ring.
   */
  claimForPeers(peers: PeerName[], freeOf: (r: Range) => number = rangeSize): void {
    if (!this.isEmpty()) throw new Error('claimForPeers on a non-empty ring')
    const list = [...new Set(peers)].sort()
    const size = this.end - this.start
    if (list.length === 0 || list.length > size) throw new Error(`cannot split ${size} addresses among ${list.length} peers`)
    this.entries = list.map((peer, i) => ({ token: this.start + Math.floor((i * size) / list.length), peer, version: 0, free: 0 }))
    for (let i = 0; i < this.entries.length; i++) this.entries[i].free = freeOf(this.rangeAt(i))
    this.seeds = list
  }

  /** Make sure a token exists at `addr`, splitting the entry that covers it (same owner). */
  private split(addr: number): void {
    if (addr <= this.start || addr >= this.end) return
    const i = this.indexOf(addr)
    if (this.entries[i].token === addr) return
    const e = this.entries[i]
    // A new token never existed before (tokens are never removed), so version 0 cannot clash.
    this.entries.splice(i + 1, 0, { token: addr, peer: e.peer, version: 0, free: 0 })
  }

  /**
   * Give `r` (which `self` must own entirely) to `to`. Free counts of the touched entries are
   * recomputed by `freeOf` (the donor knows them; for the receiver all of `r` is free).
   */
  grant(self: PeerName, r: Range, to: PeerName, freeOf: (r: Range) => number): void {
    for (let a = r.start; a < r.end; ) {
      const i = this.indexOf(a)
      if (i < 0 || this.entries[i].peer !== self) throw new Error(`grant of ${formatRange(r)}: not owned by ${self}`)
      a = this.rangeAt(i).end
    }
    this.split(r.start)
    this.split(r.end)
    for (let i = 0; i < this.entries.length; i++) {
      const rr = this.rangeAt(i)
      const inside = rr.start >= r.start && rr.end <= r.end
      const e = this.entries[i]
      if (inside) {
        e.peer = to
        e.version++
        e.free = rangeSize(rr)
      } else if (e.peer === self && (rr.end === r.start || rr.start === r.end)) {
        const f = freeOf(rr)
        if (f !== e.free) {
          e.free = f
          e.version++
        }
      }
    }
  }

  /** Update free counts of `self`'s entries; returns whether anything changed. */
  reportFree(self: PeerName, freeOf: (r: Range) => number): boolean {
    let changed = false
    for (let i = 0; i < this.entries.length; i++) {
      const e = this.entries[i]
      if (e.peer !== self) continue
      const f = freeOf(this.rangeAt(i))
      if (f !== e.free) {
        e.free = f
        e.version++
        changed = true
      }
    }
    return changed
  }

  /** rmpeer: move every entry of `from` to `to` and tombstone `from`; returns addresses moved. */
  transfer(from: PeerName, to: PeerName): number {
    let moved = 0
    for (let i = 0; i < this.entries.length; i++) {
      const e = this.entries[i]
      if (e.peer !== from) continue
      e.peer = to
      e.version += TRANSFER_VERSION_JUMP
      moved += rangeSize(this.rangeAt(i))
    }
    this.removed.add(from)
    return moved
  }

  /**
   * Merge `other` into this ring as peer `self`. Refused as a whole (and this ring unchanged)
   * when the universes or seeds differ, or when it would take from `self` a range in which
   * `hasLeases` reports live leases -- unless `self` itself was tombstoned by rmpeer, in which case
   * the takeover is accepted and `selfRemoved` is reported so the caller stops allocating.
   */
  merge(other: Ring, self: PeerName, hasLeases: (r: Range) => boolean): MergeResult {
    if (other.start !== this.start || other.end !== this.end) {
      return { ok: false, code: 'range-mismatch', reason: `Incompatible IP allocation ranges: ours ${formatRange(this)}, theirs ${formatRange(other)}` }
    }
    if (this.seeds.length > 0 && other.seeds.length > 0 && this.seeds.join(',') !== other.seeds.join(',')) {
      return { ok: false, code: 'seed-mismatch', reason: `IP allocation was seeded by different peers: ours ${this.seeds.join(',')}, theirs ${other.seeds.join(',')}` }
    }
    const removed = new Set([...this.removed, ...other.removed])
    const selfRemoved = removed.has(self) && !this.removed.has(self)
    const byToken = new Map<number, Entry>()
    for (const e of this.entries) byToken.set(e.token, { ...e })
    let reasserted = false
    for (const theirs of other.entries) {
      const ours = byToken.get(theirs.token)
      if (!ours) {
        byToken.set(theirs.token, { ...theirs })
        continue
      }
      if (!wins(theirs, ours, removed)) continue
      if (theirs.peer === self && ours.peer === self && !removed.has(self)) {
        // Our own entry, newer elsewhere (we restarted from older state): re-assert it above theirs.
        byToken.set(theirs.token, { ...ours, version: theirs.version + 1 })
        reasserted = true
      } else byToken.set(theirs.token, { ...theirs })
    }
    const merged = new Ring(this.start, this.end)
    merged.entries = [...byToken.values()].sort((a, b) => a.token - b.token)
    merged.seeds = this.seeds.length > 0 ? [...this.seeds] : [...other.seeds]
    merged.removed = removed
    const problem = merged.check()
    if (problem) return { ok: false, code: 'invalid', reason: `invalid ring: ${problem}` }
    if (!removed.has(self)) {
      for (const lost of subtract(this.ownedBy(self), merged.ownedBy(self))) {
        if (hasLeases(lost)) {
          const by = merged.owner(lost.start)
          return { ok: false, code: 'lease-conflict', reason: `refusing ring update: it gives ${formatRange(lost)}, where we hold leases, to ${by}` }
        }
      }
    }
    const changed = !sameRing(this, merged)
    this.entries = merged.entries
    this.seeds = merged.seeds
    this.removed = merged.removed
    return { ok: true, changed, reasserted, selfRemoved }
  }

  /** An invariant violation as text, or undefined when the ring is sound. */
  check(): string | undefined {
    if (this.entries.length === 0) return undefined
    if (this.entries[0].token !== this.start) return `first token ${this.entries[0].token} is not the range start`
    for (let i = 0; i < this.entries.length; i++) {
      const e = this.entries[i]
      if (!Number.isInteger(e.token) || e.token < this.start || e.token >= this.end) return `token ${e.token} outside the range`
      if (i > 0 && e.token <= this.entries[i - 1].token) return `tokens not strictly increasing at ${e.token}`
      if (!Number.isInteger(e.version) || e.version < 0) return `bad version at ${e.token}`
      if (!(e.free >= 0 && e.free <= rangeSize(this.rangeAt(i)))) return `free count ${e.free} out of bounds at ${e.token}`
    }
    return undefined
  }

  toWire(): RingWire {
    return { start: this.start, end: this.end, entries: this.entries.map((e) => ({ ...e })), seeds: [...this.seeds], removed: [...this.removed].sort() }
  }

  /** Decode untrusted wire data; a value error, never a throw. */
  static fromWire(w: unknown): { ok: true; ring: Ring } | { ok: false; reason: string } {
    const o = w as RingWire
    if (!o || typeof o !== 'object' || !Number.isInteger(o.start) || !Number.isInteger(o.end) || !(o.end > o.start) || o.end > 2 ** 32) {
      return { ok: false, reason: 'bad ring range' }
    }
    if (!Array.isArray(o.entries) || !Array.isArray(o.seeds) || !Array.isArray(o.removed)) return { ok: false, reason: 'bad ring fields' }
    const r = new Ring(o.start, o.end)
    for (const e of o.entries) {
      if (!e || typeof e.peer !== 'string' || !Number.isInteger(e.token) || !Number.isInteger(e.version) || !Number.isInteger(e.free)) {
        return { ok: false, reason: 'bad ring entry' }
      }
      r.entries.push({ token: e.token, peer: e.peer, version: e.version, free: e.free })
    }
    r.seeds = o.seeds.map(String) as PeerName[]
    r.removed = new Set(o.removed.map(String) as PeerName[])
    const problem = r.check()
    return problem ? { ok: false, reason: problem } : { ok: true, ring: r }
  }
}

/**
 * Does `a` beat `b` for the same token? An entry of a tombstoned owner never beats one of a live
 * owner; otherwise the higher version, then the larger free count, then the larger peer name
 * (a total order, so every peer picks the same winner).
 */
function wins(a: Entry, b: Entry, removed: Set<PeerName>): boolean {
  const ra = removed.has(a.peer)
  const rb = removed.has(b.peer)
  if (ra !== rb) return rb
  if (a.version !== b.version) return a.version > b.version
  if (a.free !== b.free) return a.free > b.free
  return a.peer > b.peer
}

function sameRing(a: Ring, b: Ring): boolean {
  if (a.entries.length !== b.entries.length || a.removed.size !== b.removed.size || a.seeds.join() !== b.seeds.join()) return false
  for (let i = 0; i < a.entries.length; i++) {
    const x = a.entries[i]
    const y = b.entries[i]
    if (x.token !== y.token || x.peer !== y.peer || x.version !== y.version || x.free !== y.free) return false
  }
  return true
}

/** `a` minus `b`, both sorted disjoint range lists. */
export function subtract(a: Range[], b: Range[]): Range[] {
  const out: Range[] = []
  for (const r of a) {
    let cur = r.start
    for (const x of b) {
      if (x.end <= cur || x.start >= r.end) continue
      if (x.start > cur) out.push({ start: cur, end: x.start })
      cur = Math.max(cur, x.end)
    }
    if (cur < r.end) out.push({ start: cur, end: r.end })
  }
  return out
}
