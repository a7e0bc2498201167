/**
 * Routes over the topology, computed the same way on every peer so they agree when the
 * topology does: breadth-first search visiting neighbours in name order.
 *
 * - Unicast: destination → first hop. Gossip uses every link a record lists ('all'); the data
 *   plane uses only established links both ends list ('established-symmetric').
 * - Broadcast from a source: reverse-path forwarding; when every peer holds the same topology each
 *   peer gets a broadcast exactly once. Gossip floods over every link (`broadcast`), the data plane
 *   only over established symmetric ones (`broadcastData`, Weave's `Broadcast` vs `BroadcastAll`):
 *   a connection whose overlay path is down carries neither unicast nor broadcast frames.
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

/**
 * The graph with peers numbered in name order and int adjacency: what broadcast forwarding
 * searches per neighbour, many times per topology change in a big mesh.
 */
class IndexedGraph {
  readonly names: PeerName[]
  readonly id = new Map<PeerName, number>()
  readonly adj: Int32Array[]
  private readonly hops = new Map<number, Int32Array>()

  constructor(g: Graph) {
    const all = new Set<PeerName>(g.keys())
    for (const ns of g.values()) for (const n of ns) all.add(n)
    this.names = [...all].sort()
    this.names.forEach((n, i) => this.id.set(n, i))
    // Names sorted ⇒ ids sorted: visiting ids in order is visiting names in order.
    this.adj = this.names.map((n) => Int32Array.from((g.get(n) ?? []).map((m) => this.id.get(m)!)))
  }

  /** First hop from `from` to every peer (-1: unreachable), as `unicastRoutes` computes it. */
  firstHops(from: number): Int32Array {
    let hop = this.hops.get(from)
    if (hop) return hop
    const n = this.names.length
    hop = new Int32Array(n).fill(-1)
    const queue = new Int32Array(n)
    let head = 0, tail = 0
    hop[from] = from
    queue[tail++] = from
    while (head < tail) {
      const u = queue[head++]
      for (const v of this.adj[u]) {
        if (hop[v] !== -1) continue
        hop[v] = u === from ? v : hop[u]
        queue[tail++] = v
      }
    }
    this.hops.set(from, hop)
    return hop
  }

  linked(u: number, v: number): boolean {
    const a = this.adj[u]
    let lo = 0, hi = a.length - 1
    while (lo <= hi) {
      const m = (lo + hi) >> 1
      if (a[m] === v) return true
      if (a[m] < v) lo = m + 1
      else hi = m - 1
    }
    return false
  }

  /** Same result as `broadcastChildren`, on ints. */
  broadcastChildren(source: PeerName, self: PeerName): PeerName[] {
    const s = this.id.get(source), me = this.id.get(self)
    if (s === undefined || me === undefined) return []
    const out: PeerName[] = []
    for (const v of this.adj[me]) {
      if (v === s) continue
      if (s === me) out.push(this.names[v])
      else if (!this.linked(v, s) && this.firstHops(v)[s] === me) out.push(this.names[v])
    }
    return out
  }
}

/** Caches routes for one topology state; call `invalidate()` when the topology changes. */
export class RouteTable {
  private graphAll: Graph | undefined
  private graphData: Graph | undefined
  private indexed: IndexedGraph | undefined
  private indexedData: IndexedGraph | undefined
  private uniAll: Map<PeerName, PeerName> | undefined
  private uniData: Map<PeerName, PeerName> | undefined
  private readonly bcast = new Map<PeerName, PeerName[]>()
  private readonly bcastData = new Map<PeerName, PeerName[]>()

  constructor(private readonly self: PeerName, private readonly records: () => Iterable<PeerRecord>) {}

  invalidate(): void {
    this.graphAll = this.graphData = this.uniAll = this.uniData = this.indexed = this.indexedData = undefined
    this.bcast.clear()
    this.bcastData.clear()
  }

  private all(): Graph {
    return (this.graphAll ??= buildGraph(this.records(), 'all'))
  }

  /** Next hop for gossip (any link). */
  unicastAll(): Map<PeerName, PeerName> {
    return (this.uniAll ??= unicastRoutes(this.all(), this.self))
  }

  private data(): Graph {
    return (this.graphData ??= buildGraph(this.records(), 'established-symmetric'))
  }

  /** Next hop for the data plane (established symmetric links). */
  unicast(): Map<PeerName, PeerName> {
    return (this.uniData ??= unicastRoutes(this.data(), this.self))
  }

  /** Who we forward a broadcast from `source` to. */
  broadcast(source: PeerName): PeerName[] {
    let c = this.bcast.get(source)
    if (!c) {
      c = (this.indexed ??= new IndexedGraph(this.all())).broadcastChildren(source, this.self)
      this.bcast.set(source, c)
    }
    return c
  }

  /** Who we forward a data-plane broadcast (a frame flooded by the overlay) from `source` to. */
  broadcastData(source: PeerName): PeerName[] {
    let c = this.bcastData.get(source)
    if (!c) {
      c = (this.indexedData ??= new IndexedGraph(this.data())).broadcastChildren(source, this.self)
      this.bcastData.set(source, c)
    }
    return c
  }
}
