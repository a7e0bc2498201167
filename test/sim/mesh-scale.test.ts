/**
 * Scale simulations: a 50-peer full mesh converges; a 500-peer mesh with a connection limit of
 * 10 converges and every peer routes to every other (multi-hop).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { allRoutesWork, createMeshSim } from './mesh-harness'

const SEED = Number(process.env.SIM_SEED ?? 7)

test(`50-peer full mesh converges to one topology (seed ${SEED})`, async () => {
  const sim = createMeshSim({ seed: SEED })
  try {
    const first = await sim.addPeer([])
    for (let i = 1; i < 50; i++) await sim.addPeer([sim.peers[sim.rng.int(i)].addr])
    const took = await sim.runUntil(() => sim.converged() && sim.peers.every((p) => p.mesh.connections().size === 49), 30_000, 50)
    assert.ok(took >= 0, `converged (seed ${SEED})`)
    assert.is(first.mesh.topology.size(), 50)
    const fp = first.mesh.topology.fingerprint()
    for (const p of sim.peers) assert.is(p.mesh.topology.fingerprint(), fp)
    assert.ok(allRoutesWork(sim).ok)
  } finally {
    await sim.stop()
  }
})

test(`500 peers, connection limit 10: converge and route between any two (seed ${SEED})`, async () => {
  const sim = createMeshSim({ seed: SEED, connLimit: 10 })
  try {
    const t0 = Date.now()
    await sim.addPeer([])
    // All launched at once, each with two earlier peers as targets (a cold start of a big cluster).
    for (let i = 1; i < 500; i++) {
      const targets = new Set<string>()
      for (let k = 0; k < Math.min(i, 2); k++) targets.add(sim.peers[sim.rng.int(i)].addr)
      await sim.addPeer([...targets])
    }
    const took = await sim.runUntil(() => sim.converged(), 60_000, 100)
    console.log(`500 peers converged in ${took} ms virtual, ${(Date.now() - t0) / 1000}s wall`)
    assert.ok(took >= 0, `converged (seed ${SEED})`)
    const degrees = sim.peers.map((p) => p.mesh.connections().size)
    // Discovery dials stop at 10; inbound ones are accepted up to 20 beyond which they are refused.
    assert.ok(Math.max(...degrees) <= 32, `max degree ${Math.max(...degrees)}`)
    const r = allRoutesWork(sim)
    console.log(`routes: max ${r.maxHops} hops, degrees ${Math.min(...degrees)}..${Math.max(...degrees)}`)
    assert.ok(r.ok, r.failed)
    assert.ok(r.maxHops >= 2, 'multi-hop')
  } finally {
    await sim.stop()
  }
})
test.run()
