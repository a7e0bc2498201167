/** Topology CRDT: merge laws (property-based), incarnations, deltas and gaps, GC, wire decoding. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import {
  Topology, mergeRecords, encodeUpdate, decodeTopologyMessage, encodeDigest, combineUpdates,
  type PeerRecord, type RecordUpdate,
} from '../../router/mesh/topology'
import { seededRng } from '../../router/deps'
import type { PeerName } from '../../router/mesh/gossip-contract'

const N = (i: number) => `02:00:00:00:00:${i.toString(16).padStart(2, '0')}` as PeerName

/**
 * Honest histories: each (peer, incarnation) applies a sequence of connection changes, so two
 * snapshots of one incarnation are always one a prefix of the other, as with real owners.
 */
type Op = { remote: number; add: boolean }
function snapshot(name: PeerName, uid: bigint, ops: Op[], upto: number): PeerRecord {
  const r: PeerRecord = { name, nickname: `n${uid}`, uid, version: 1, shortId: Number(uid % 4096n), conns: new Map() }
  for (const op of ops.slice(0, upto)) {
    r.version++
    r.conns.set(N(op.remote), { seq: r.version, present: op.add, outbound: op.remote % 2 === 0, established: true, addr: `10.0.0.${op.remote}:6783` })
  }
  return r
}

const opsArb = fc.array(fc.record({ remote: fc.integer({ min: 0, max: 5 }), add: fc.boolean() }), { maxLength: 8 })
// A world: for each of 3 peers, 2 incarnations each with a history; a state picks, per peer, an incarnation and a prefix.
const worldArb = fc.array(fc.tuple(opsArb, opsArb), { minLength: 3, maxLength: 3 })
const pickArb = fc.array(fc.tuple(fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0, max: 8 })), { minLength: 3, maxLength: 3 })

type State = Map<PeerName, PeerRecord>
function stateOf(world: Array<[Op[], Op[]]>, pick: Array<[number, number]>): State {
  const s: State = new Map()
  world.forEach(([a, b], i) => {
    const [inc, upto] = pick[i]
    const ops = inc === 0 ? a : b
    s.set(N(i + 10), snapshot(N(i + 10), BigInt(inc + 1), ops, Math.min(upto, ops.length)))
  })
  return s
}
function join(x: State, y: State): State {
  const out: State = new Map(x)
  for (const [k, v] of y) out.set(k, out.has(k) ? mergeRecords(out.get(k)!, v) : v)
  return out
}
function canon(s: State): string {
  return [...s.values()].sort((a, b) => (a.name < b.name ? -1 : 1))
    .map((r) => `${r.name}/${r.uid}/${r.version}/${r.shortId}/` + [...r.conns].sort().map(([k, e]) => `${k}:${e.seq}:${e.present}`).join(','))
    .join('|')
}

test('merge is commutative, associative and idempotent (property)', () => {
  fc.assert(
    fc.property(worldArb, pickArb, pickArb, pickArb, (w, p1, p2, p3) => {
      const a = stateOf(w, p1), b = stateOf(w, p2), c = stateOf(w, p3)
      assert.is(canon(join(a, b)), canon(join(b, a)))
      assert.is(canon(join(join(a, b), c)), canon(join(a, join(b, c))))
      assert.is(canon(join(a, a)), canon(a))
    }),
    { numRuns: 300, seed: 42 },
  )
})

test('Topology.merge of deltas in any order reaches the same state as the full merge (property)', () => {
  fc.assert(
    fc.property(opsArb, fc.integer({ min: 0, max: 1000 }), (ops, seed) => {
      const owner = N(1)
      // Deltas of consecutive versions, as the owner sends them, delivered shuffled.
      const deltas: RecordUpdate[] = []
      for (let v = 0; v < ops.length; v++) {
        const full = snapshot(owner, 7n, ops, v + 1)
        const conns = new Map([...full.conns].filter(([, e]) => e.seq > v + 1))
        deltas.push({ rec: { ...full, conns }, base: v + 1 })
      }
      const rng = seededRng(seed)
      for (let i = deltas.length - 1; i > 0; i--) { const j = rng.int(i + 1); [deltas[i], deltas[j]] = [deltas[j], deltas[i]] }
      const t = new Topology({ name: N(0), nickname: 'me', uid: 1n })
      t.merge([{ rec: snapshot(owner, 7n, ops, 0), base: 0 }])
      // Apply until nothing changes; gaps are what a real peer would fetch, so they must resolve.
      for (let round = 0; round < deltas.length + 1; round++) t.merge(deltas)
      const want = snapshot(owner, 7n, ops, ops.length)
      const got = t.get(owner)!
      assert.is(got.version, want.version)
      assert.is(canon(new Map([[owner, got]])), canon(new Map([[owner, want]])))
    }),
    { numRuns: 200, seed: 7 },
  )
})

test('a delta that skips versions is a gap, not applied; the digest answer fills it', () => {
  const owner = new Topology({ name: N(1), nickname: 'o', uid: 5n })
  const me = new Topology({ name: N(0), nickname: 'me', uid: 1n })
  me.merge(owner.fullState())
  owner.setConnection(N(2), { outbound: true, established: true, addr: 'a:1' }) // v2
  const v2 = owner.ownDeltaSince(1)
  owner.setConnection(N(3), { outbound: true, established: true, addr: 'b:1' }) // v3
  const v3 = owner.ownDeltaSince(2)
  const r = me.merge([v3])
  assert.is(r.delta.length, 0)
  assert.equal(r.gaps.map((g) => g.version), [1])
  assert.is(me.get(N(1))!.version, 1)
  me.merge(owner.deltaForDigest(r.gaps, true))
  assert.is(me.get(N(1))!.version, 3)
  assert.is(me.get(N(1))!.conns.size, 2)
  assert.is(me.merge([v2]).delta.length, 0, 'old delta is not news')
})

test('restarted peer: an old incarnation of ourselves makes our version jump past it', () => {
  const old = new Topology({ name: N(1), nickname: 'x', uid: 10n })
  for (let i = 2; i < 8; i++) old.setConnection(N(i), { outbound: true, established: true, addr: 'a:1' })
  const fresh = new Topology({ name: N(1), nickname: 'x', uid: 11n })
  const r = fresh.merge(old.fullState())
  assert.ok(r.selfBumped)
  assert.ok(fresh.self().version > old.self().version)
  // A third party holding the old record takes the new one.
  const other = new Topology({ name: N(9), nickname: 'o', uid: 3n })
  other.merge(old.fullState())
  other.merge([fresh.ownDeltaSince(0)])
  assert.is(other.get(N(1))!.uid, 11n)
  assert.is(other.get(N(1))!.conns.size, 0)
})

test('GC: a peer that was reachable goes at once when its last path goes; a never-reached one after the grace', () => {
  const me = new Topology({ name: N(0), nickname: 'me', uid: 1n })
  const b = new Topology({ name: N(1), nickname: 'b', uid: 2n })
  b.setConnection(N(0), { outbound: false, established: true, addr: 'x:1' })
  me.setConnection(N(1), { outbound: true, established: true, addr: 'y:1' })
  me.merge(b.fullState())
  assert.equal(me.gc(0, 1000), [])
  me.removeConnection(N(1))
  assert.equal(me.gc(100, 1000), [N(1)], 'departed: collected at once (Weave drops it at once too)')
  assert.is(me.size(), 1)
  // A record learnt before anything connects it to us (a joiner whose neighbour's record is late)
  const c = new Topology({ name: N(2), nickname: 'c', uid: 3n })
  me.merge(c.fullState())
  assert.equal(me.gc(2000, 1000), [], 'never reachable: within grace')
  assert.equal(me.gc(3100, 1000), [N(2)], 'after the grace')
})

test('GC under a partition: the other side goes at once and comes back whole with the heal', () => {
  // a - b - c in a line; a loses b: b and c (behind it) depart at once; healing brings both back.
  const [a, b, c] = [0, 1, 2].map((i) => new Topology({ name: N(i), nickname: `p${i}`, uid: BigInt(i + 1) }))
  const link = (x: Topology, y: Topology, xi: number, yi: number) => {
    x.setConnection(N(yi), { outbound: true, established: true, addr: `h${yi}:1` })
    y.setConnection(N(xi), { outbound: false, established: true, addr: `h${xi}:1` })
  }
  link(a, b, 0, 1)
  link(b, c, 1, 2)
  for (const t of [a, b, c]) for (const u of [a, b, c]) if (t !== u) t.merge(u.fullState())
  assert.equal(a.gc(0, 1000), [])
  assert.is(a.size(), 3)
  a.removeConnection(N(1))
  assert.equal(a.gc(10, 1000).sort(), [N(1), N(2)])
  assert.is(a.size(), 1)
  // heal: the connection comes back and a full exchange restores both records
  a.setConnection(N(1), { outbound: true, established: true, addr: 'h1:1' })
  a.merge(b.fullState())
  a.merge(c.fullState())
  assert.equal(a.gc(20, 1000), [])
  assert.is(a.size(), 3)
  assert.ok(a.reachable().has(N(2)))
})

test('short ID collision: the higher name re-picks', () => {
  const rng = seededRng(3)
  const lo = new Topology({ name: N(1), nickname: 'lo', uid: 1n, shortId: 7 })
  const hi = new Topology({ name: N(2), nickname: 'hi', uid: 2n, shortId: 7 })
  hi.merge(lo.fullState())
  lo.merge(hi.fullState())
  assert.is(lo.resolveShortIdCollision(rng), undefined)
  const id = hi.resolveShortIdCollision(rng)
  assert.ok(id !== undefined && id !== 7)
})

test('wire: encode/decode round trip; garbage and bad shapes are values, never throws', () => {
  const t = new Topology({ name: N(1), nickname: 'nick', uid: 0xfedcba9876543210n, shortId: 12 })
  t.setConnection(N(2), { outbound: true, established: true, addr: '10.0.0.2:6783' })
  const d = decodeTopologyMessage(encodeUpdate(t.fullState()))
  assert.ok(d.ok && d.kind === 'update')
  if (d.ok && d.kind === 'update') {
    assert.is(d.updates[0].rec.uid, 0xfedcba9876543210n)
    assert.is(d.updates[0].rec.conns.get(N(2))!.addr, '10.0.0.2:6783')
  }
  const g = decodeTopologyMessage(encodeDigest(t.digest(), true))
  assert.ok(g.ok && g.kind === 'digest' && g.listedOnly)
  assert.not.ok(decodeTopologyMessage(new Uint8Array([1, 0xc1])).ok)
  assert.not.ok(decodeTopologyMessage(new Uint8Array([9, 0x90])).ok)
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (b) => { decodeTopologyMessage(b) }), { numRuns: 500, seed: 1 })
})

test('combineUpdates keeps non-contiguous deltas apart', () => {
  const o = new Topology({ name: N(1), nickname: 'o', uid: 5n })
  o.setConnection(N(2), { outbound: true, established: true, addr: 'a:1' }) // v2
  const d2 = o.ownDeltaSince(1)
  o.setConnection(N(3), { outbound: true, established: true, addr: 'a:1' }) // v3
  o.setConnection(N(4), { outbound: true, established: true, addr: 'a:1' }) // v4
  const d4 = o.ownDeltaSince(3)
  assert.is(combineUpdates([d2], [d4]).length, 2)
  const d3 = { rec: { ...o.self(), version: 3, conns: new Map([[N(3), o.self().conns.get(N(3))!]]) }, base: 2 }
  const c = combineUpdates([d2], [d3])
  assert.is(c.length, 1)
  assert.is(c[0].base, 1)
  assert.is(c[0].rec.conns.size, 2)
})

test.run()
