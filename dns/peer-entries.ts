/**
 * Entries and the mesh's peers: entries of an origin our topology does not know yet wait (bounded)
 * until it does, else go at the next GC; entries of a peer that left the mesh are dropped.
 */
import type { Clock, Logger } from '../router/deps'
import type { MeshView } from '../router/mesh'
import { entryKey, type Entry, type Records } from './records'
import type { DnsCounters } from './types'

const MAX_PENDING = 20_000

export class PeerEntries {
  private known: Set<string>
  /** Entries whose owner our topology does not know yet, by key. */
  private pending = new Map<string, Entry>()

  constructor(
    private readonly records: Records,
    private readonly view: MeshView,
    private readonly deps: { clock: Clock; logger: Logger; counters: DnsCounters },
  ) {
    this.known = new Set<string>([view.self.name])
  }

  isKnown(origin: string): boolean {
    return this.known.has(origin)
  }

  /** Entries from origins we do not know yet: kept (the newest version of each) until they are known. */
  hold(entries: readonly Entry[]): void {
    for (const e of entries) {
      const k = entryKey(e)
      const old = this.pending.get(k)
      if (!old && this.pending.size >= MAX_PENDING) continue
      if (!old || old.version < e.version) this.pending.set(k, e)
    }
  }

  /** The peers changed: take in held entries of newly known origins, drop those of departed ones. */
  onPeersChanged(): void {
    const known = new Set(this.view.peers().map((p) => p.name as string))
    known.add(this.view.self.name)
    this.known = known
    const ready = [...this.pending.values()].filter((e) => known.has(e.origin))
    if (ready.length) {
      for (const e of ready) this.pending.delete(entryKey(e))
      this.records.merge(ready, this.deps.clock.now(), (o) => known.has(o))
    }
    for (const origin of new Set(this.records.all().map((e) => e.origin))) {
      if (!known.has(origin)) {
        const n = this.records.dropPeer(origin)
        this.deps.counters.droppedPeerEntries += n
        this.deps.logger.info(`peer ${origin} left the mesh: dropped its ${n} DNS entries`)
      }
    }
  }

  /** Held entries whose origin never became known by the GC are forgotten. */
  gc(): void {
    this.pending = new Map()
  }
}
