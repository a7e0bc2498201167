/**
 * The topology page's model, pure: the mesh's status (the same MeshStatus `weave status peers`
 * and `connections` print from), what carries each of our connections, traffic rates and IPAM
 * shares in; nodes, edges and the two status texts out. `diffTopology` turns two models into the
 * delta the page applies, so an idle mesh sends nothing.
 */
import type { MeshStatus } from '../mesh'

export interface TopologyNode {
  id: string
  nickname: string
  self: boolean
  reachable: boolean
  /** IPAM: addresses owned and share of the range (%), when IPAM runs. */
  ipam?: { addresses: number; percent: number }
  /** Containers with addresses here (known for our own peer only). */
  containers?: number
  /** DNS entries this peer registered, when DNS runs. */
  dns?: number
}

export interface TopologyEdge {
  /** `a|b` with a < b: one edge per pair, whichever side reported it. */
  id: string
  a: string
  b: string
  /** `established` when both ends list it as established, else `pending`; ours: our connection's state. */
  state: string
  /** Set for our own connections: what carries them and how. */
  datapath?: 'fastdp' | 'sleeve'
  encrypted?: boolean
  mtu?: number
  /** Bytes/s both ways over the last interval (our connections). */
  rateBps?: number
}

export interface Topology {
  self: string
  nodes: Map<string, TopologyNode>
  edges: Map<string, TopologyEdge>
  /** Verbatim `weave status peers` / `weave status connections`. */
  peersText: string
  connectionsText: string
}

export interface TopologyInput {
  mesh: MeshStatus
  peersText: string
  connectionsText: string
  /** Our overlay connections by peer. */
  carriers: ReadonlyMap<string, { datapath: 'fastdp' | 'sleeve'; encrypted: boolean; mtu?: number; state: string }>
  rates: ReadonlyMap<string, number>
  ipamShares?: ReadonlyArray<{ peer: string; addresses: number; percent: number }>
  containers?: number
  dnsByPeer?: ReadonlyMap<string, number>
}

export function edgeId(x: string, y: string): [string, string, string] {
  const [a, b] = x < y ? [x, y] : [y, x]
  return [`${a}|${b}`, a, b]
}

/** Rates as the page shows them (3 significant digits): noise below that sends no delta. */
export function roundRate(bps: number): number {
  if (bps < 1) return 0
  const p = 10 ** Math.max(0, Math.floor(Math.log10(bps)) - 2)
  return Math.round(bps / p) * p
}

export function buildTopology(input: TopologyInput): Topology {
  const st = input.mesh
  const nodes = new Map<string, TopologyNode>()
  const shares = new Map((input.ipamShares ?? []).map((s) => [s.peer, s]))
  for (const p of st.peers) {
    const n: TopologyNode = { id: p.name, nickname: p.nickname, self: p.name === st.name, reachable: p.reachable || p.name === st.name }
    const sh = shares.get(p.name)
    if (input.ipamShares) n.ipam = { addresses: sh?.addresses ?? 0, percent: Math.round((sh?.percent ?? 0) * 10) / 10 }
    if (n.self && input.containers !== undefined) n.containers = input.containers
    if (input.dnsByPeer) n.dns = input.dnsByPeer.get(p.name) ?? 0
    nodes.set(p.name, n)
  }
  // Every peer's record lists its connections; an edge is established when both ends say so.
  const edges = new Map<string, TopologyEdge>()
  const said = new Map<string, { count: number; established: number }>()
  for (const p of st.peers) {
    for (const c of p.connections) {
      if (!nodes.has(c.peer)) continue
      const [id, a, b] = edgeId(p.name, c.peer)
      const s = said.get(id) ?? { count: 0, established: 0 }
      s.count++
      if (c.established) s.established++
      said.set(id, s)
      if (!edges.has(id)) edges.set(id, { id, a, b, state: 'pending' })
    }
  }
  for (const [id, s] of said) if (s.established === 2) edges.get(id)!.state = 'established'
  // Our own connections: the state and data path `weave status connections` shows.
  for (const c of st.connections) {
    if (!c.peer || !nodes.has(c.peer)) continue
    const [id, a, b] = edgeId(st.name, c.peer)
    const e = edges.get(id) ?? { id, a, b, state: c.state }
    const carrier = input.carriers.get(c.peer)
    e.state = c.state === 'established' && carrier && carrier.state !== 'established' ? 'pending' : c.state
    if (carrier) {
      e.datapath = carrier.datapath
      e.encrypted = carrier.encrypted
      if (carrier.mtu !== undefined) e.mtu = carrier.mtu
    } else if (c.encrypted !== undefined) e.encrypted = c.encrypted
    e.rateBps = roundRate(input.rates.get(c.peer) ?? 0)
    edges.set(id, e)
  }
  return { self: st.name, nodes, edges, peersText: input.peersText, connectionsText: input.connectionsText }
}

/** What the page receives: a whole model first, then only what changed. */
export interface TopologyMessage {
  type: 'snapshot' | 'delta'
  self: string
  nodes?: TopologyNode[]
  edges?: TopologyEdge[]
  removedNodes?: string[]
  removedEdges?: string[]
  peersText?: string
  connectionsText?: string
}

export function snapshotMessage(t: Topology): TopologyMessage {
  return {
    type: 'snapshot', self: t.self, nodes: [...t.nodes.values()], edges: [...t.edges.values()],
    peersText: t.peersText, connectionsText: t.connectionsText,
  }
}

/** The delta from `prev` to `next`, or undefined when nothing the page shows changed. */
export function diffTopology(prev: Topology, next: Topology): TopologyMessage | undefined {
  const m: TopologyMessage = { type: 'delta', self: next.self }
  const nodes = changed(prev.nodes, next.nodes)
  const edges = changed(prev.edges, next.edges)
  if (nodes.upsert.length) m.nodes = nodes.upsert
  if (edges.upsert.length) m.edges = edges.upsert
  if (nodes.removed.length) m.removedNodes = nodes.removed
  if (edges.removed.length) m.removedEdges = edges.removed
  if (prev.peersText !== next.peersText) m.peersText = next.peersText
  if (prev.connectionsText !== next.connectionsText) m.connectionsText = next.connectionsText
  return Object.keys(m).length > 2 ? m : undefined
}

function changed<T>(prev: Map<string, T>, next: Map<string, T>): { upsert: T[]; removed: string[] } {
  const upsert: T[] = []
  for (const [k, v] of next) {
    const old = prev.get(k)
    if (old === undefined || JSON.stringify(old) !== JSON.stringify(v)) upsert.push(v)
  }
  const removed = [...prev.keys()].filter((k) => !next.has(k))
  return { upsert, removed }
}
