/**
 * `npm run bench -- mesh [N...]`: convergence after one peer joins a settled mesh, in simulation.
 *
 * For each N: build a mesh of N peers (full mesh up to 100, connection limit 10 above), let it
 * settle, then add one peer with one existing peer as its target, and measure
 *  - converge_s: virtual seconds until every peer holds the same topology (every live peer at
 *    its current UID and version) and the joiner's discovery has finished;
 *  - gossip_bytes_per_peer: gossip payload bytes (plus a small per-message envelope estimate)
 *    sent by all peers during the join, divided by the number of peers.
 * Time is virtual (in-memory transport, 5 ms per hop, the real gossip timers and batching
 * delays); wall-clock seconds of each simulation are reported separately.
 * The baseline, measured in the same run, is the smallest mesh (N=10): ratios are against it.
 */
import { createMeshSim, type MeshSim } from '../sim/mesh-harness'

const LATENCY_MS = 5
const FULL_MESH_MAX = 100
const LIMIT = 10

interface Row {
  peers: number
  conn_limit: number
  converge_s: number
  gossip_bytes_per_peer: number
  gossip_msgs_per_peer: number
  wall_s: number
  build_wall_s: number
}

const totalBytes = (sim: MeshSim) => sim.peers.reduce((a, p) => a + p.mesh.stats.gossipBytesSent, 0)
const totalMsgs = (sim: MeshSim) => sim.peers.reduce((a, p) => a + p.mesh.stats.gossipMessagesSent, 0)

async function measure(n: number, seed: number): Promise<Row> {
  const limit = n > FULL_MESH_MAX ? LIMIT : 0
  const sim = createMeshSim({ seed, latencyMs: LATENCY_MS, connLimit: limit })
  const t0 = Date.now()
  await sim.addPeer([])
  for (let i = 1; i < n; i++) {
    const targets = new Set<string>()
    for (let k = 0; k < Math.min(i, limit ? 2 : 1); k++) targets.add(sim.peers[sim.rng.int(i)].addr)
    await sim.addPeer([...targets])
  }
  const fullMesh = () => limit > 0 || sim.alive().every((p) => p.mesh.connections().size === sim.alive().length - 1)
  // All N start at once (a cold start), then settle; only the join after that is measured.
  const built = await sim.runUntil(() => sim.converged() && fullMesh(), 120_000, 50)
  if (built < 0) throw new Error(`mesh of ${n} did not form`)
  await sim.run(2_000) // settle: pending batches, GC, discovery retries
  const buildWall = (Date.now() - t0) / 1000
  const b0 = totalBytes(sim), m0 = totalMsgs(sim)
  const t1 = Date.now()
  const joinTarget = sim.peers[sim.rng.int(n)]
  const joiner = await sim.addPeer([joinTarget.addr])
  const expected = limit > 0 ? 1 : n
  const took = await sim.runUntil(() => joiner.mesh.connections().size >= expected && sim.converged(), 60_000, 10)
  const wall = (Date.now() - t1) / 1000
  const row: Row = {
    peers: n,
    conn_limit: limit,
    converge_s: took < 0 ? -1 : took / 1000,
    gossip_bytes_per_peer: Math.round((totalBytes(sim) - b0) / (n + 1)),
    gossip_msgs_per_peer: Math.round(((totalMsgs(sim) - m0) / (n + 1)) * 10) / 10,
    wall_s: Math.round(wall * 100) / 100,
    build_wall_s: Math.round(buildWall * 10) / 10,
  }
  await sim.stop()
  return row
}

async function main() {
  const args = process.argv.slice(2).map(Number).filter((x) => x > 0)
  const sizes = args.length ? args : [10, 50, 100, 200, 500, 1000]
  const rows: Row[] = []
  for (const n of sizes) {
    const r = await measure(n, 1000 + n)
    rows.push(r)
    console.log(`peers=${r.peers} conn_limit=${r.conn_limit || 'none'} converge=${r.converge_s}s (virtual) gossip=${r.gossip_bytes_per_peer} B/peer ${r.gossip_msgs_per_peer} msgs/peer, join ${r.wall_s}s wall, build ${r.build_wall_s}s wall`)
  }
  const base = rows[0]
  const growth = rows.map((r) => ({ peers: r.peers, bytes_ratio: +(r.gossip_bytes_per_peer / base.gossip_bytes_per_peer).toFixed(2), peers_ratio: +(r.peers / base.peers).toFixed(2) }))
  console.log(JSON.stringify({ bench: 'mesh', time: 'virtual', latency_ms_per_hop: LATENCY_MS, baseline: { peers: base.peers }, growth, rows }))
}
main().catch((err) => {
  console.error(err)
  process.exit(1)
})
