/**
 * The weaveDNS records CRDT (pure: time is an argument). Every entry is owned by the peer whose
 * container it names (`origin`), and only that peer writes it: a write bumps the version, and a
 * merge keeps the higher version of each key. Removal is a tombstone (a version like any other),
 * so "removed" spreads the same way "added" does and a late delta cannot resurrect a name.
 *
 * The owner's word is final: when gossip brings back an entry of ours with a version we did not
 * write (we restarted and forgot), we answer with a higher version — our live entry if we still
 * hold it, else a tombstone. Tombstones are collected `tombstoneTtlMs` after they were set, and
 * at most `maxTombstones` are kept (oldest dropped first), so memory stays bounded under churn.
 * Dropping one early is safe here: should a peer that missed it gossip the live entry back, the
 * owner (the only writer) hears of an entry it does not hold and tombstones it again.
 */

export interface Entry {
  /** Normalized fqdn (lower case, trailing dot). */
  readonly hostname: string
  /** Owning peer (PeerName). */
  readonly origin: string
  /** Docker container id, a namespace id, or `weave:extern` for manual records. */
  readonly containerId: string
  /** IPv4 address. */
  readonly address: string
  readonly version: number
  /** 0 while live; else the owner's clock (ms) when it was removed. */
  readonly tombstone: number
}

/** Container id of records added by hand without a container (`weave dns-add IP -h NAME`), as Weave. */
export const EXTERN_ID = 'weave:extern'

export function entryKey(e: Pick<Entry, 'origin' | 'containerId' | 'address' | 'hostname'>): string {
  return `${e.origin}|${e.containerId}|${e.address}|${e.hostname}`
}

export interface RecordsOptions {
  self: string
  tombstoneTtlMs: number
  maxTombstones: number
}

export class Records {
  private readonly byKey = new Map<string, Entry>()
  private readonly byName = new Map<string, Set<string>>()
  private tombstones = 0

  constructor(private readonly opts: RecordsOptions) {}

  get size(): number { return this.byKey.size }
  get tombstoneCount(): number { return this.tombstones }

  all(): Entry[] { return [...this.byKey.values()] }
  live(): Entry[] { return this.all().filter((e) => !e.tombstone) }
  get(key: string): Entry | undefined { return this.byKey.get(key) }

  /** Live addresses of `fqdn` (normalized), each once. */
  lookup(fqdn: string): string[] {
    const keys = this.byName.get(fqdn)
    if (!keys) return []
    const out = new Set<string>()
    for (const k of keys) {
      const e = this.byKey.get(k)!
      if (!e.tombstone) out.add(e.address)
    }
    return [...out]
  }

  /** Live names with `address`, each once. */
  reverse(address: string): string[] {
    const out = new Set<string>()
    for (const e of this.byKey.values()) if (!e.tombstone && e.address === address) out.add(e.hostname)
    return [...out].sort()
  }

  /** Add (or revive) one of our own entries; returns it when it changed. */
  addLocal(r: { hostname: string; containerId: string; address: string }): Entry | undefined {
    const key = entryKey({ ...r, origin: this.opts.self })
    const old = this.byKey.get(key)
    if (old && !old.tombstone) return undefined
    return this.put({ ...r, origin: this.opts.self, version: (old?.version ?? 0) + 1, tombstone: 0 })
  }

  /** Tombstone our live entries matching `pred`; returns the tombstones. */
  removeLocal(pred: (e: Entry) => boolean, now: number): Entry[] {
    // Matches first, then the writes: no copy of the whole table per call (a container's removal
    // is one call, and churn of thousands of names made that copy most of the daemon's garbage).
    const hits: Entry[] = []
    for (const e of this.byKey.values()) if (e.origin === this.opts.self && !e.tombstone && pred(e)) hits.push(e)
    const out = hits.map((e) => this.put({ ...e, version: e.version + 1, tombstone: Math.max(1, now) }))
    if (this.tombstones > this.opts.maxTombstones) this.trimTombstones()
    return out
  }

  /**
   * Merge entries from gossip; returns what changed here (to relay), including our answers to
   * stale entries of our own. `isKnownPeer` filters out owners that left the topology.
   */
  merge(incoming: readonly Entry[], now: number, isKnownPeer: (origin: string) => boolean): Entry[] {
    const changed: Entry[] = []
    for (const e of incoming) {
      const key = entryKey(e)
      const old = this.byKey.get(key)
      if (e.origin === this.opts.self) {
        if (old && old.version >= e.version) continue
        // Gossip remembers a version of ours we did not write in this life: outbid it.
        if (old) changed.push(this.put({ ...old, version: e.version + 1 }))
        else if (e.tombstone) changed.push(this.put(e))
        else changed.push(this.put({ ...e, version: e.version + 1, tombstone: Math.max(1, now) }))
        continue
      }
      if (!isKnownPeer(e.origin)) continue
      if (old && old.version >= e.version) continue
      if (e.tombstone && !old && now - e.tombstone > this.opts.tombstoneTtlMs) continue // already collected here
      changed.push(this.put(e))
    }
    if (this.tombstones > this.opts.maxTombstones) this.trimTombstones()
    return changed
  }

  /** Forget every entry of `origin` (it left the mesh); returns how many went. */
  dropPeer(origin: string): number {
    let n = 0
    for (const e of [...this.byKey.values()]) if (e.origin === origin) { this.delete(entryKey(e)); n++ }
    return n
  }

  /** Collect tombstones older than the TTL; returns how many went. */
  gc(now: number): number {
    let n = 0
    for (const [k, e] of [...this.byKey]) {
      if (e.tombstone && now - e.tombstone > this.opts.tombstoneTtlMs) { this.delete(k); n++ }
    }
    if (this.tombstones > this.opts.maxTombstones) n += this.trimTombstones()
    return n
  }

  /** Down to 90% of the cap (not just under it), so a steady stream of removals sorts rarely. */
  private trimTombstones(): number {
    const ts = [...this.byKey.entries()].filter(([, e]) => e.tombstone).sort((a, b) => a[1].tombstone - b[1].tombstone)
    const excess = ts.length - Math.floor(this.opts.maxTombstones * 0.9)
    for (let i = 0; i < excess; i++) this.delete(ts[i][0])
    return Math.max(0, excess)
  }

  private put(e: Entry): Entry {
    const key = entryKey(e)
    const old = this.byKey.get(key)
    if (old?.tombstone) this.tombstones--
    if (e.tombstone) this.tombstones++
    this.byKey.set(key, e)
    // Only live entries are indexed by name (lookups never want tombstones; churn makes many).
    if (e.tombstone) this.unindex(key, e.hostname)
    else {
      let set = this.byName.get(e.hostname)
      if (!set) this.byName.set(e.hostname, (set = new Set()))
      set.add(key)
    }
    return e
  }

  private delete(key: string): void {
    const e = this.byKey.get(key)
    if (!e) return
    if (e.tombstone) this.tombstones--
    this.byKey.delete(key)
    this.unindex(key, e.hostname)
  }

  private unindex(key: string, hostname: string): void {
    const set = this.byName.get(hostname)
    set?.delete(key)
    if (set && set.size === 0) this.byName.delete(hostname)
  }
}
