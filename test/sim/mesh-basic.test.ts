/** Small mesh simulations: a few peers form one topology, gossip channels carry messages. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { allRoutesWork, createMeshSim } from './mesh-harness'

test('three peers: B joins A, C joins B and discovers A', async () => {
  const sim = createMeshSim({ seed: 1 })
  try {
    const a = await sim.addPeer([])
    const b = await sim.addPeer([a.addr])
    const c = await sim.addPeer([b.addr])
    const took = await sim.runUntil(() => sim.converged() && c.mesh.connections().size === 2, 10_000)
    assert.ok(took >= 0, 'converged')
    assert.is(a.mesh.connections().size, 2)
    assert.ok(c.mesh.connections().has(a.name), 'C connected to A by discovery')
    for (const p of [a, b, c]) assert.is(p.mesh.status().peers.length, 3)
    assert.ok(allRoutesWork(sim).ok)
  } finally {
    await sim.stop()
  }
})
test.run()
