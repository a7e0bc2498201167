/**
 * Churn in simulation (16-peer full mesh, in-memory transport, virtual time): a partition into two
 * halves is seen by both sides and heals; a restarted peer (new UID) replaces its old record
 * everywhere; departed peers are collected everywhere.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { allRoutesWork, createMeshSim, type MeshSim } from './mesh-harness'

const SEED = Number(process.env.SIM_SEED ?? 11)
const N = 16

async function fullMesh(seed: number): Promise<MeshSim> {
  const sim = createMeshSim({ seed })
  const first = await sim.addPeer([])
  // Every peer names the first as its launch target, as `weave launch FIRST` on each host would.
  for (let i = 1; i < N; i++) await sim.addPeer([first.addr])
  const took = await sim.runUntil(() => sim.converged() && sim.alive().every((p) => p.mesh.connections().size === N - 1), 20_000, 20)
  assert.ok(took >= 0, `formed (seed ${seed})`)
  return sim
}

const host = (addr: string) => addr.slice(0, addr.lastIndexOf(':'))

test(`partition into two halves: both sides see it, then it heals (seed ${SEED})`, async () => {
  const sim = await fullMesh(SEED)
  try {
    const left = sim.peers.slice(0, N / 2), right = sim.peers.slice(N / 2)
    for (const a of left) for (const b of right) sim.net.cut(host(a.addr), host(b.addr), { close: true })
    const split = await sim.runUntil(
      () => sim.peers.every((p) => p.mesh.topology.size() === N / 2 && p.mesh.connections().size === N / 2 - 1),
      20_000, 50)
    assert.ok(split >= 0, 'each side holds only its half')
    for (const p of left) for (const q of right) assert.not.ok(p.mesh.view.isReachable(q.name))
    for (const a of left) for (const b of right) sim.net.heal(host(a.addr), host(b.addr))
    const healed = await sim.runUntil(() => sim.converged() && sim.peers.every((p) => p.mesh.connections().size === N - 1), 60_000, 50)
    assert.ok(healed >= 0, 'healed to one full mesh')
    assert.ok(allRoutesWork(sim).ok)
  } finally {
    await sim.stop()
  }
})

test(`a restarted peer (new UID) replaces its old record everywhere (seed ${SEED})`, async () => {
  const sim = await fullMesh(SEED + 1)
  try {
    const old = sim.peers[5]
    const oldUid = old.mesh.identity.uid
    await sim.stopPeer(old)
    // Its last paths went with its connections: every survivor drops it as soon as the news that
    // nobody is connected to it arrives (a departed peer needs no grace period).
    const dropped = await sim.runUntil(() => sim.alive().every((p) => !p.mesh.topology.has(old.name)), 5_000, 10)
    assert.ok(dropped >= 0 && dropped < 1_000, `every survivor dropped the stopped peer within ${dropped} ms (virtual)`)
    const fresh = await sim.restartPeer(old, [sim.peers[0].addr])
    const newUid = fresh.mesh.identity.uid
    assert.is.not(newUid, oldUid)
    const took = await sim.runUntil(() => sim.converged() && fresh.mesh.connections().size === N - 1, 20_000, 20)
    assert.ok(took >= 0, 'converged after restart')
    for (const p of sim.peers) assert.is(p.mesh.topology.get(fresh.name)!.uid, newUid, `${p.name} holds the new incarnation`)
    // (A survivor that still held the old record would make the new incarnation jump past its
    // version: topology.test.ts covers that merge.)
  } finally {
    await sim.stop()
  }
})

test(`departed peers are collected everywhere (seed ${SEED})`, async () => {
  const sim = await fullMesh(SEED + 2)
  try {
    const gone = [sim.peers[3], sim.peers[9]]
    for (const p of gone) await sim.stopPeer(p)
    const took = await sim.runUntil(
      () => sim.alive().every((p) => p.mesh.topology.size() === N - 2 && gone.every((g) => !p.mesh.topology.has(g.name))),
      20_000, 50)
    assert.ok(took >= 0, 'collected')
    assert.ok(took < 5_000, `collected within ${took} ms (virtual)`)
    assert.ok(sim.converged())
  } finally {
    await sim.stop()
  }
})

test.run()
