import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fc from 'fast-check'
import { FakeClock } from '../../router/deps'
import { MacTable } from '../../router/overlay/mac-table'
import { Forwarder, type Routes, type ForwardEffect } from '../../router/overlay/forwarder'

const BCAST = 0xffffffffffff
const mac = (peer: number, host: number) => 0x020000000000 + peer * 256 + host

function frame(dst: number, src: number, tag = 0): Uint8Array {
  const f = Buffer.alloc(60)
  f.writeUIntBE(dst, 0, 6)
  f.writeUIntBE(src, 6, 6)
  f.writeUInt16BE(0x0800, 12)
  f.writeUInt32BE(tag, 14)
  return f
}

/** Routes of peer `self` over an undirected graph: BFS by ascending ID, as the mesh does. */
function bfsTree(adj: Map<number, number[]>, root: number): Map<number, number> {
  const parent = new Map<number, number>([[root, root]])
  const queue = [root]
  while (queue.length) {
    const p = queue.shift()!
    for (const n of [...(adj.get(p) ?? [])].sort((a, b) => a - b)) if (!parent.has(n)) { parent.set(n, p); queue.push(n) }
  }
  return parent
}
function routesFor(adj: Map<number, number[]>, self: number): Routes {
  return {
    unicastNextHop(dst) {
      const parent = bfsTree(adj, self)
      if (!parent.has(dst) || dst === self) return undefined
      let cur = dst
      while (parent.get(cur) !== self) cur = parent.get(cur)!
      return cur
    },
    broadcastNextHops(src) {
      const parent = bfsTree(adj, src)
      return [...parent].filter(([child, p]) => p === self && child !== self).map(([child]) => child)
    },
  }
}
function graph(edges: Array<[number, number]>): Map<number, number[]> {
  const adj = new Map<number, number[]>()
  for (const [a, b] of edges) {
    adj.set(a, [...(adj.get(a) ?? []), b])
    adj.set(b, [...(adj.get(b) ?? []), a])
  }
  return adj
}

/** Several peers over an in-memory underlay: delivers send effects until nobody sends. */
function network(adj: Map<number, number[]>) {
  const clock = new FakeClock()
  const peers = new Map<number, Forwarder>()
  for (const p of adj.keys()) peers.set(p, new Forwarder(p, new MacTable<number>(clock, p), routesFor(adj, p)))
  const injected = new Map<number, Uint8Array[]>([...adj.keys()].map((p) => [p, []]))
  const hops: Array<{ from: number; to: number; src: number; dst: number }> = []
  function run(at: number, effects: ForwardEffect[]): void {
    const queue = effects.map((e) => ({ at, e }))
    while (queue.length) {
      const { at: p, e } = queue.shift()!
      if (e.kind === 'inject') { injected.get(p)!.push(...e.frames); continue }
      assert.ok(adj.get(p)!.includes(e.hop), `peer ${p} sends only to neighbours (tried ${e.hop})`)
      hops.push({ from: p, to: e.hop, src: e.src, dst: e.dst })
      const r = peers.get(e.hop)!.fromPeer(e.src, e.dst, e.frames)
      queue.push(...r.effects.map((x) => ({ at: e.hop, e: x })))
    }
  }
  return {
    peers, injected, hops, clock,
    capture(p: number, frames: Uint8Array[]) { const r = peers.get(p)!.fromBridge(frames); run(p, r.effects); return r },
  }
}

test('unknown destination floods along the tree; each other peer injects it exactly once', () => {
  const net = network(graph([[1, 2], [2, 3]]))
  const f = frame(mac(3, 1), mac(1, 1))
  net.capture(1, [f])
  assert.is(net.injected.get(1)!.length, 0, 'never back into the bridge it came from')
  assert.is(net.injected.get(2)!.length, 1)
  assert.is(net.injected.get(3)!.length, 1)
  assert.equal(net.hops, [{ from: 1, to: 2, src: 1, dst: 2 }, { from: 2, to: 3, src: 1, dst: 3 }], 'broadcast copies are addressed hop by hop')
})

test('after learning, unicast goes through the intermediate peer without being injected there', () => {
  const net = network(graph([[1, 2], [2, 3]]))
  const h1 = mac(1, 1), h3 = mac(3, 1)
  net.capture(1, [frame(BCAST, h1)]) // everyone learns h1 → 1
  net.capture(3, [frame(h1, h3)]) // reply: 3 knows h1 is at 1 → unicast via 2
  assert.equal(net.hops.slice(-2), [{ from: 3, to: 2, src: 3, dst: 1 }, { from: 2, to: 1, src: 3, dst: 1 }])
  assert.is(net.injected.get(2)!.length, 1, 'the relay injected only the broadcast')
  assert.is(net.injected.get(1)!.length, 1, 'the reply arrived')
  net.hops.length = 0
  net.capture(1, [frame(h3, h1, 1), frame(h3, h1, 2)])
  assert.equal(net.hops, [{ from: 1, to: 2, src: 1, dst: 3 }, { from: 2, to: 3, src: 1, dst: 3 }], 'one send per hop for the batch')
  assert.equal(net.injected.get(3)!.slice(-2).map((f) => Buffer.from(f).readUInt32BE(14)), [1, 2], 'in order')
})

test('broadcast over any connected topology reaches every peer exactly once', () => {
  const arb = fc.integer({ min: 2, max: 7 }).chain((n) => fc.tuple(
    fc.constant(n),
    fc.array(fc.tuple(fc.integer({ min: 1, max: n }), fc.integer({ min: 1, max: n })), { maxLength: 12 }),
    fc.integer({ min: 1, max: n }),
  ))
  fc.assert(fc.property(arb, ([n, extra, origin]) => {
    const edges: Array<[number, number]> = []
    for (let p = 2; p <= n; p++) edges.push([p - 1, p]) // a path keeps it connected
    for (const [a, b] of extra) if (a !== b && !edges.some(([x, y]) => (x === a && y === b) || (x === b && y === a))) edges.push([a, b])
    const net = network(graph(edges))
    net.capture(origin, [frame(BCAST, mac(origin, 1))])
    for (let p = 1; p <= n; p++) assert.is(net.injected.get(p)!.length, p === origin ? 0 : 1, `peer ${p}`)
  }))
})

test('captured frames: STP, runts, local destinations and MAC conflicts are dropped and counted', () => {
  const clock = new FakeClock()
  const routes = routesFor(graph([[1, 2]]), 1)
  const fw = new Forwarder(1, new MacTable<number>(clock, 1), routes)
  const local = mac(1, 1), other = mac(1, 2), remote = mac(2, 1)
  fw.fromBridge([frame(BCAST, other)])
  fw.fromPeer(2, 1, [frame(local, remote)])
  const r = fw.fromBridge([
    frame(0x0180c2000000, local),
    new Uint8Array(10),
    frame(other, local),
    frame(BCAST, remote), // remote's MAC captured locally: a loop or a spoofer
  ])
  assert.equal(r.drops, { stp: 1, runt: 1, 'local-destination': 1, 'mac-conflict': 1 })
  assert.equal(r.effects, [])
})

test('no route: unicast to an unreachable owner and relays to nowhere are dropped', () => {
  const clock = new FakeClock()
  const adj = graph([[1, 2]])
  const fw = new Forwarder(1, new MacTable<number>(clock, 1), routesFor(adj, 1))
  fw.fromPeer(2, 1, [frame(BCAST, mac(9, 1))])
  fw.macs.learnRemote(mac(9, 1), 9) // learnt earlier, peer 9 since gone from the topology
  const r = fw.fromBridge([frame(mac(9, 1), mac(1, 1))])
  assert.equal(r.drops, { 'no-route': 1 })
  const relay = fw.fromPeer(2, 5, [frame(BCAST, mac(2, 1)), frame(BCAST, mac(2, 1))])
  assert.equal(relay.drops, { 'no-route': 2 })
  assert.equal(fw.fromPeer(1, 1, [frame(BCAST, mac(2, 1))]).drops, { 'own-source': 1 }, 'our own ID coming back')
})

test('a MAC moving between peers is reported', () => {
  const fw = new Forwarder(1, new MacTable<number>(new FakeClock(), 1), routesFor(graph([[1, 2], [1, 3]]), 1))
  const m = mac(7, 7)
  assert.equal(fw.fromPeer(2, 1, [frame(BCAST, m)]).moved, [])
  assert.equal(fw.fromPeer(3, 1, [frame(BCAST, m)]).moved, [m])
  assert.is(fw.macs.lookup(m), 3)
})

test('a relayed datagram keeps its original source and destination', () => {
  const fw = new Forwarder(2, new MacTable<number>(new FakeClock(), 2), routesFor(graph([[1, 2], [2, 3]]), 2))
  const frames = [frame(mac(3, 1), mac(1, 1), 1), frame(mac(3, 1), mac(1, 1), 2)]
  const r = fw.fromPeer(1, 3, frames)
  assert.equal(r.effects, [{ kind: 'send', hop: 3, src: 1, dst: 3, frames }])
  assert.is(fw.macs.size, 0, 'relays learn nothing')
})

// ---- a middle host between a sleeve peer and a datapath (fastdp) peer ----

/** Peer 2 in the middle: 1 by sleeve, 3 by the datapath; a line 1 — 2 — 3. */
function middleRoutes(): Routes {
  return {
    unicastNextHop: (dst) => (dst === 1 ? 1 : undefined),
    broadcastNextHops: (src) => (src === 3 ? [1] : []),
    datapathNextHop: (dst) => (dst === 3 ? 3 : undefined),
    broadcastDatapathHops: (src) => (src === 1 ? [3] : []),
  }
}

test('middle host: a sleeve peer\'s relayed frames and floods for the fastdp side go to the datapath, key kept', () => {
  const f = new Forwarder(2, new MacTable<number>(new FakeClock(), 2), middleRoutes())
  const uni = f.fromPeer(1, 3, [frame(mac(3, 1), mac(1, 1))])
  assert.equal(uni.effects.map((e) => [e.kind, 'hop' in e ? e.hop : -1, 'src' in e ? e.src : -1, 'dst' in e ? e.dst : -1]), [['datapath', 3, 1, 3]])
  const arp = f.fromPeer(1, 2, [frame(BCAST, mac(1, 1))])
  assert.equal(arp.effects.map((e) => e.kind === 'datapath' ? [e.kind, e.hop, e.src, e.dst] : [e.kind]), [['inject'], ['datapath', 3, 1, 3]],
    'delivered here and flooded on to 3 through the datapath')
  assert.is(f.fromBridge([frame(BCAST, mac(2, 1))]).effects.some((e) => e.kind === 'datapath'), false,
    'what we capture ourselves the datapath floods itself: no second copy')
})

test('middle host: frames the datapath relays to the sleeve keep their sender; their MACs are never learnt as ours', () => {
  const macs = new MacTable<number>(new FakeClock(), 2)
  const f = new Forwarder(2, macs, middleRoutes())
  f.fromPeer(1, 2, [frame(BCAST, mac(1, 1))]) // 1's MAC learnt from its own frames
  const r = f.fromDatapath(3, [frame(mac(1, 1), mac(3, 1))])
  assert.equal(r.effects.map((e) => e.kind === 'send' ? [e.hop, e.src, e.dst] : []), [[1, 3, 1]], 'to 1, from 3')
  assert.is(macs.lookup(mac(3, 1)), 3, '3\'s MAC belongs to 3, not to us')
  // and a frame later captured from our own bridge for that MAC is not dropped as local
  const back = f.fromBridge([frame(mac(3, 1), mac(2, 9))])
  assert.is(back.drops['local-destination'], undefined)
  const flood = f.fromDatapath(3, [frame(BCAST, mac(3, 1))])
  assert.equal(flood.effects.map((e) => e.kind === 'send' ? [e.hop, e.src, e.dst] : []), [[1, 3, 1]], 'a broadcast follows 3\'s tree')
})

test.run()
