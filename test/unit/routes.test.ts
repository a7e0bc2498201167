/** Routes on known graphs: unicast next hops, symmetric-established links, broadcast trees. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { buildGraph, unicastRoutes, broadcastChildren, RouteTable } from '../../router/mesh/routes'
import type { PeerRecord } from '../../router/mesh/topology'
import type { PeerName } from '../../router/mesh/gossip-contract'

const P = (c: string) => `02:00:00:00:00:0${c}` as PeerName
/** Records from "a-b a-c ..." (symmetric links) plus one-way "a>b" links. */
function graph(spec: string, established = true): PeerRecord[] {
  const recs = new Map<string, PeerRecord>()
  const rec = (c: string) => recs.get(c) ?? (recs.set(c, { name: P(c), nickname: c, uid: 1n, version: 1, shortId: 1, conns: new Map() }), recs.get(c)!)
  for (const e of spec.split(/\s+/).filter(Boolean)) {
    const [a, b] = e.includes('>') ? e.split('>') : e.split('-')
    rec(a).conns.set(P(b), { seq: 1, present: true, outbound: true, established, addr: '' })
    if (!e.includes('>')) rec(b).conns.set(P(a), { seq: 1, present: true, outbound: false, established, addr: '' })
    else rec(b)
  }
  return [...recs.values()]
}

test('unicast: a line routes through each hop', () => {
  const r = unicastRoutes(buildGraph(graph('1-2 2-3 3-4'), 'all'), P('1'))
  assert.is(r.get(P('4')), P('2'))
  assert.is(r.get(P('2')), P('2'))
  assert.is(r.get(P('1')), P('1'))
})

test('unicast: ties go to the lower name, the same on every run', () => {
  const r = unicastRoutes(buildGraph(graph('1-3 1-2 2-4 3-4'), 'all'), P('1'))
  assert.is(r.get(P('4')), P('2'))
})

test('data-plane routes need links both ends list as established', () => {
  const recs = graph('1-2 2>3 1-4 4-3')
  const all = unicastRoutes(buildGraph(recs, 'all'), P('1'))
  const data = unicastRoutes(buildGraph(recs, 'established-symmetric'), P('1'))
  assert.is(all.get(P('3')), P('2'))
  assert.is(data.get(P('3')), P('4'))
  const pending = unicastRoutes(buildGraph(graph('1-2', false), 'established-symmetric'), P('1'))
  assert.not.ok(pending.has(P('2')))
})

test('unreachable peers have no route', () => {
  const r = unicastRoutes(buildGraph(graph('1-2 3-4'), 'all'), P('1'))
  assert.not.ok(r.has(P('3')))
})

test('broadcast trees reach every peer exactly once', () => {
  const recs = graph('1-2 1-3 2-4 3-4 4-5 2-3 5-6 3-6')
  const g = buildGraph(recs, 'all')
  for (const src of recs.map((r) => r.name)) {
    const got = new Map<PeerName, number>()
    const queue = [src]
    while (queue.length) {
      const u = queue.shift()!
      for (const c of broadcastChildren(g, src, u)) {
        got.set(c, (got.get(c) ?? 0) + 1)
        queue.push(c)
      }
    }
    assert.is(got.size, recs.length - 1, `from ${src}`)
    for (const n of got.values()) assert.is(n, 1)
    assert.not.ok(got.has(src))
  }
})

test('broadcast in a full mesh is a star from the source', () => {
  const g = buildGraph(graph('1-2 1-3 1-4 2-3 2-4 3-4'), 'all')
  assert.equal(broadcastChildren(g, P('1'), P('1')), [P('2'), P('3'), P('4')])
  assert.equal(broadcastChildren(g, P('1'), P('3')), [])
})

test('the route table (int-indexed) forwards broadcasts exactly as the reference function', () => {
  const recs = graph('1-2 1-3 2-4 3-4 4-5 2-3 5-6 3-6 6-7 7-8 5-8 1-9 9-8')
  const g = buildGraph(recs, 'all')
  for (const self of recs.map((r) => r.name)) {
    const table = new RouteTable(self, () => recs)
    for (const src of recs.map((r) => r.name)) assert.equal(table.broadcast(src), broadcastChildren(g, src, self), `${src} at ${self}`)
  }
})

test('data-plane broadcast trees skip links that are not established both ways; gossip trees keep them', () => {
  const recs = graph('1-2 2-3')
  const extra = graph('1-3', false) // connected, but the overlay has not got its heartbeats through
  for (const r of extra) recs.find((x) => x.name === r.name)!.conns.set([...r.conns.keys()][0], [...r.conns.values()][0])
  const t1 = new RouteTable(P('1'), () => recs), t2 = new RouteTable(P('2'), () => recs)
  assert.equal(t1.broadcastData(P('1')), [P('2')])
  assert.equal(t1.broadcast(P('1')), [P('2'), P('3')])
  assert.equal(t2.broadcastData(P('1')), [P('3')], '2 passes 1\'s frames on to 3')
  assert.equal(t2.broadcast(P('1')), [], 'gossip: 3 hears 1 directly')
  assert.is(t1.unicast().get(P('3')), P('2'))
})

test.run()
