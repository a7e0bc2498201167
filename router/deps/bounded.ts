/**
 * Collections keyed by what a peer chooses (its name, a channel name, a reason, a range) must not
 * grow with the peer's imagination: these keep at most `cap` keys, forget the least recently set
 * one first, and count what they forgot so status/metrics can show a flood.
 */

/**
 * Deletes the `n` oldest keys of `m` in one pass. In batches on purpose: V8's Map leaves a hole
 * per deleted entry until it rehashes, and `keys().next()` walks over the holes, so evicting one
 * at a time under a flood costs O(holes) per insert; a batch of cap/8 keeps it O(1) amortized.
 */
export function evictOldest<K>(m: Map<K, unknown>, n: number, onEvict?: (k: K) => void): void {
  for (const k of m.keys()) {
    if (n-- <= 0) break
    m.delete(k)
    onEvict?.(k)
  }
}

/** A Map of at most `cap` entries; `set` makes an entry the newest; when full, the oldest eighth goes. */
export class BoundedMap<K, V> {
  private readonly m = new Map<K, V>()
  /** Entries forgotten to stay within `cap`. */
  evicted = 0

  constructor(readonly cap: number) {
    if (!(cap >= 1)) throw new Error(`BoundedMap cap must be at least 1, got ${cap}`)
  }

  get size(): number { return this.m.size }
  get(k: K): V | undefined { return this.m.get(k) }
  has(k: K): boolean { return this.m.has(k) }
  delete(k: K): boolean { return this.m.delete(k) }
  keys(): IterableIterator<K> { return this.m.keys() }
  values(): IterableIterator<V> { return this.m.values() }
  /** Oldest first; deleting the current entry while iterating is fine (a Map's iterator). */
  [Symbol.iterator](): IterableIterator<[K, V]> { return this.m.entries() }

  set(k: K, v: V): this {
    this.m.delete(k) // re-inserting moves it to the end: Map iterates in insertion order
    this.m.set(k, v)
    if (this.m.size > this.cap) evictOldest(this.m, this.m.size - this.cap + Math.floor(this.cap / 8), () => this.evicted++)
    return this
  }
}

/**
 * Logs a message once per key, remembering at most `cap` keys. Once more than `cap` distinct keys
 * came (a peer inventing them), only every 1000th new one is logged, saying how many were not:
 * bounded memory and a bounded log. `suppressed` counts the lines not logged.
 */
export class LogOnce {
  private readonly seen: BoundedMap<string, true>
  /** New keys since the cap was first exceeded. */
  private overflowKeys = 0
  suppressed = 0

  constructor(private readonly log: (msg: string) => void, cap = 1024) {
    this.seen = new BoundedMap(cap)
  }

  /** Log `msg` unless `key` was logged (and is still remembered); true when it was logged. */
  once(key: string, msg: string): boolean {
    if (this.seen.has(key)) {
      this.suppressed++
      return false
    }
    this.seen.set(key, true)
    if (this.seen.evicted > 0 && ++this.overflowKeys % 1000 !== 0) {
      this.suppressed++
      return false
    }
    this.log(this.seen.evicted > 0 ? `${msg} (more than ${this.seen.cap} distinct such messages: ${this.suppressed} not logged)` : msg)
    return true
  }

  /** Keys remembered now (at most the cap). */
  get size(): number { return this.seen.size }
  /** Keys forgotten to stay within the cap. */
  get evicted(): number { return this.seen.evicted }
}
