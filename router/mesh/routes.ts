/**
 * Routes over the topology, computed the same way on every peer so they agree when the
 * topology does: breadth-first search visiting neighbours in name order.
 *
 * - Unicast: destination → first hop. Gossip uses every link a record lists ('all'); the data
 *   plane uses only established links both ends list ('established-symmetric').
 * - Broadcast from a source: reverse-path forwarding over the gossip routes; when every peer
 *   holds the same topology each peer gets a broadcast exactly once.
 *
 * Pure: a graph in, maps out.
 */
import type { PeerName } from './gossip-contract'
import type { PeerRecord } from './topology'

export type LinkMode = 'all' | 'established-symmetric'

/** Adjacency: each peer's neighbours, sorted by name. */
export type Graph = Map<PeerName, PeerName[]>

export function buildGraph(records: Iterable<PeerRecord>, mode: LinkMode): Graph {
  const recs = new Map<PeerName, PeerRecord>()
  for (const r of records) recs.set(r.name, r)
  const g: Graph = new Map()
  for (const r of recs.values()) {
    const out: PeerName[] = []
    for (const [to, e] of r.conns) {
      if (!e.present) continue
      if (mode === 'established-symmetric') {
        if (!e.established) continue
        const back = recs.get(to)?.conns.get(r.name)
        if (!back || !back.present || !back.established) continue
      }
      out.push(to)
    }
    out.sort()
    g.set(r.name, out)
  }
  return g
}

/** BFS from `from`: each reached peer's parent (the source maps to itself), in visiting order. */
function bfs(g: Graph, from: PeerName): Map<PeerName, PeerName> {
  const parent = new Map<PeerName, PeerName>([[from, from]])
  const queue: PeerName[] = [from]
  for (let i = 0; i < queue.length; i++) {
    const u = queue[i]
    for (const v of g.get(u) ?? []) {
      if (parent.has(v)) continue
      parent.set(v, u)
      queue.push(v)
    }
  }
  return parent
}

/** Destination → next hop from `self` (self maps to itself); unreachable peers are absent. */
export function unicastRoutes(g: Graph, self: PeerName): Map<PeerName, PeerName> {
  const parent = bfs(g, self)
  const hop = new Map<PeerName, PeerName>([[self, self]])
  // Visiting order is BFS order, so a parent's hop is known before its children's.
  for (const [v, p] of parent) {
    if (v === self) continue
    hop.set(v, p === self ? v : hop.get(p)!)
  }
  return hop
}

/**
 * The peers `self` forwards a broadcast from `source` to (reverse-path forwarding): each
 * neighbour whose own gossip route toward `source` goes through us. Every peer computes every
 * neighbour's route the same way, so when views agree each peer gets the broadcast exactly once,
 * from its next hop toward the source. `routesFrom(v)` gives v's unicast routes (cached by the caller).
 */
export function broadcastChildren(
  g: Graph,
  source: PeerName,
  self: PeerName,
  routesFrom: (v: PeerName) => Map<PeerName, PeerName> = (v) => unicastRoutes(g, v),
): PeerName[] {
  const out: PeerName[] = []
  for (const v of g.get(self) ?? []) {
    if (v === source) continue
    if (source === self) {
      out.push(v)
      continue
    }
    // A neighbour linked to the source itself takes it from the source (no search needed: in a
    // full mesh this is every neighbour).
    if (g.get(v)?.includes(source)) continue
    if (routesFrom(v).get(source) === self) out.push(v)
  }
  return out
}

/** Caches routes for one topology state; call `invalidate()` when the topology changes. */
export class RouteTable {
  private graphAll: Graph | undefined
  private graphData: Graph | undefined
  private uniAll: Map<PeerName, PeerName> | undefined
  private uniData: Map<PeerName, PeerName> | undefined
  private readonly bcast = new Map<PeerName, PeerName[]>()
  private readonly fromCache = new Map<PeerName, Map<PeerName, PeerName>>()

  constructor(private readonly self: PeerName, private readonly records: () => Iterable<PeerRecord>) {}

  invalidate(): void {
    this.graphAll = this.graphData = this.uniAll = this.uniData = undefined
    this.bcast.clear()
    this.fromCache.clear()
  }

  private all(): Graph {
    return (this.graphAll ??= buildGraph(this.records(), 'all'))
  }

  /** Next hop for gossip (any link). */
  unicastAll(): Map<PeerName, PeerName> {
    return (this.uniAll ??= unicastRoutes(this.all(), this.self))
  }

  /** Next hop for the data plane (established symmetric links). */
  unicast(): Map<PeerName, PeerName> {
    return (this.uniData ??= unicastRoutes((this.graphData ??= buildGraph(this.records(), 'established-symmetric')), this.self))
  }

  broadcast(source: PeerName): PeerName[] {
    let c = this.bcast.get(source)
    if (!c) {
      c = broadcastChildren(this.all(), source, this.self, (v) => this.routesFrom(v))
      this.bcast.set(source, c)
    }
    return c
  }

  private routesFrom(v: PeerName): Map<PeerName, PeerName> {
    let r = this.fromCache.get(v)
    if (!r) {
      r = unicastRoutes(this.all(), v)
      this.fromCache.set(v, r)
    }
    return r
  }
}
