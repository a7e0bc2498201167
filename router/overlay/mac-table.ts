/**
 * MAC learning for the sleeve forwarder: which peer owns each MAC address seen on the overlay.
 * Pure apart from the injected clock; entries not seen for `maxAgeMs` are treated as unknown
 * and removed by `sweep()` (the driver calls it every minute, as Weave does).
 *
 * MACs are keys as 48-bit numbers (exact in a double), read straight out of a frame, so a
 * lookup on the hot path allocates nothing.
 */

import { evictOldest } from '../deps'

/** Weave ages MAC entries out after 10 minutes. */
export const DEFAULT_MAC_MAX_AGE_MS = 10 * 60_000
/**
 * Source MACs come from peers' frames: a peer sending frames from random MACs must not grow this
 * without bound within the 10 minutes. 100k entries (~10 MB) is far above any real overlay.
 */
export const DEFAULT_MAC_MAX_ENTRIES = 100_000

/** The 48-bit MAC at `buf[off..off+6)` as a number. */
export function macAt(buf: Uint8Array, off: number): number {
  return (buf[off] * 2 ** 40) + (buf[off + 1] * 2 ** 32) + ((buf[off + 2] << 24) >>> 0) + (buf[off + 3] << 16) + (buf[off + 4] << 8) + buf[off + 5]
}

/** "aa:bb:cc:dd:ee:ff" for logs and status. */
export function formatMac(mac: number): string {
  return mac.toString(16).padStart(12, '0').replace(/(..)(?!$)/g, '$1:')
}

/** Group bit set: broadcast or multicast. */
export function isGroupMac(mac: number): boolean {
  return Math.floor(mac / 2 ** 40) % 2 === 1
}

export type LearnResult = 'new' | 'refreshed' | 'moved' | 'conflict'

interface Entry<P> { owner: P; seenAt: number }

export class MacTable<P> {
  private readonly entries = new Map<number, Entry<P>>()
  /** Entries dropped (oldest learnt first) because the table was full. */
  evicted = 0

  constructor(
    private readonly clock: { now(): number },
    /** The local peer: MACs behind our own bridge belong to it. */
    readonly self: P,
    private readonly maxAgeMs = DEFAULT_MAC_MAX_AGE_MS,
    private readonly maxEntries = DEFAULT_MAC_MAX_ENTRIES,
  ) {}

  /** Live entries (expired ones may linger until `sweep`). */
  get size(): number { return this.entries.size }

  /** The owner of `mac`, or undefined when unknown or expired. */
  lookup(mac: number): P | undefined {
    const e = this.entries.get(mac)
    if (!e) return undefined
    if (this.clock.now() - e.seenAt > this.maxAgeMs) return undefined
    return e.owner
  }

  /**
   * A frame captured from our bridge came from `mac`. If a live entry says another peer owns
   * it the frame is suspect (a loop, or a spoofer): 'conflict', the entry is kept and the
   * caller drops the frame.
   */
  learnLocal(mac: number): LearnResult {
    const now = this.clock.now()
    const e = this.entries.get(mac)
    if (e && e.owner !== this.self && now - e.seenAt <= this.maxAgeMs) return 'conflict'
    return this.set(mac, this.self, now, e)
  }

  /**
   * A frame that `peer` sent us came from `mac`. Remote learning always wins (Weave's
   * force-learn): the sender knows best where its frames come from. 'moved' tells the caller
   * that a MAC changed peers, so any cached forwarding state for it is stale.
   */
  learnRemote(mac: number, peer: P): LearnResult {
    return this.set(mac, peer, this.clock.now(), this.entries.get(mac))
  }

  /** Removes entries not seen for `maxAgeMs`; returns how many. */
  sweep(): number {
    const now = this.clock.now()
    let n = 0
    for (const [mac, e] of this.entries) if (now - e.seenAt > this.maxAgeMs) { this.entries.delete(mac); n++ }
    return n
  }

  /** Drops every MAC of `peer` (when it leaves the topology); returns how many. */
  forgetPeer(peer: P): number {
    let n = 0
    for (const [mac, e] of this.entries) if (e.owner === peer) { this.entries.delete(mac); n++ }
    return n
  }

  /** A snapshot for status output. */
  dump(): Array<{ mac: string; owner: P; ageMs: number }> {
    const now = this.clock.now()
    return [...this.entries].map(([mac, e]) => ({ mac: formatMac(mac), owner: e.owner, ageMs: now - e.seenAt }))
  }

  private set(mac: number, owner: P, now: number, prev: Entry<P> | undefined): LearnResult {
    if (prev && now - prev.seenAt <= this.maxAgeMs) {
      const moved = prev.owner !== owner
      prev.owner = owner
      prev.seenAt = now
      return moved ? 'moved' : 'refreshed'
    }
    if (!prev && this.entries.size >= this.maxEntries) {
      // full: forget the eighth learnt longest ago (Map order; in a batch, see evictOldest) without
      // a sweep per frame under a flood; a MAC still in use is relearnt (its frames flooded meanwhile)
      evictOldest(this.entries, this.entries.size - this.maxEntries + 1 + Math.floor(this.maxEntries / 8), () => this.evicted++)
    }
    this.entries.set(mac, { owner, seenAt: now })
    return 'new'
  }
}
