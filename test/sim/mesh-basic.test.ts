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
test('a connection whose data path is down carries no data routes: every peer relays through the third, and it returns', async () => {
  // the daemon's mode: the overlay marks each connection established (its heartbeats got through)
  const sim = createMeshSim({ seed: 7, mesh: { establishedByOverlay: true } })
  try {
    const a = await sim.addPeer([])
    const b = await sim.addPeer([a.addr])
    const c = await sim.addPeer([b.addr])
    assert.ok(await sim.runUntil(() => sim.converged() && c.mesh.connections().size === 2, 10_000) >= 0, 'converged')
    for (const p of [a, b, c]) assert.is(p.mesh.routes.unicast().size, 1, `${p.name}: no data routes before any overlay verdict`)
    const up = (x: typeof a, y: typeof a, ok: boolean, why?: string) => { x.mesh.setDataPath(y.name, ok, why); y.mesh.setDataPath(x.name, ok, why) }
    up(a, b, true); up(b, c, true); up(a, c, true)
    await sim.run(1_000)
    assert.is(a.mesh.routes.unicast().get(c.name), c.name, 'direct while the path works')
    // only A sees the path to C fail (one end is enough: links count only when both call them established)
    a.mesh.setDataPath(c.name, false, 'no UDP heartbeat arrives from the peer')
    await sim.run(1_000)
    assert.is(a.mesh.routes.unicast().get(c.name), b.name, 'A → C via B')
    assert.is(c.mesh.routes.unicast().get(a.name), b.name, 'C → A via B (learnt by gossip)')
    assert.equal(a.mesh.routes.broadcastData(a.name), [b.name], 'A floods only to B')
    assert.equal(b.mesh.routes.broadcastData(a.name), [c.name], 'B passes A\'s floods on to C')
    assert.ok(a.mesh.routes.broadcast(a.name).includes(c.name), 'gossip still uses the TCP link')
    const st = a.mesh.status().connections.find((x) => x.peer === c.name)!
    assert.equal(st.dataPath, { ok: false, why: 'no UDP heartbeat arrives from the peer' })
    assert.is(st.dataVia, `${b.name}(p1)`)
    a.mesh.setDataPath(c.name, true)
    await sim.run(1_000)
    assert.is(c.mesh.routes.unicast().get(a.name), a.name, 'direct again once it works')
  } finally {
    await sim.stop()
  }
})

test.run()
