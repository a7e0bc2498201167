/**
 * Gossip channels: unicast relayed hop by hop, broadcast reaching each peer once, pending sends
 * merged per connection, unknown channels relayed by a surrogate. Three routers in a line
 * (A - B - C, no discovery) on the in-memory transport and virtual time.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createMeshSim, type SimPeer } from '../sim/mesh-harness'
import { BytesGossipData, GossipChannels, SurrogateGossiper, fanout } from '../../router/mesh/gossip-channel'
import type { GossipData, Gossiper, PeerName } from '../../router/mesh/gossip-contract'
import type { MeshMessage } from '../../router/mesh/connection-contract'
import { nullLogger, seededRng } from '../../router/deps'
import { HeapClock } from '../sim/mesh-harness'

/** A set-of-strings gossiper: state merges by union, news is what we lacked. */
class SetGossiper implements Gossiper {
  readonly items = new Set<string>()
  readonly unicasts: Array<[PeerName, string]> = []
  readonly broadcasts: Array<[PeerName, string]> = []
  onGossipUnicast(src: PeerName, msg: Uint8Array): void {
    this.unicasts.push([src, Buffer.from(msg).toString()])
  }
  onGossipBroadcast(src: PeerName, update: Uint8Array): GossipData | undefined {
    this.broadcasts.push([src, Buffer.from(update).toString()])
    return this.absorb(update)
  }
  gossip(): GossipData | undefined {
    return this.items.size ? bytes([...this.items].join(',')) : undefined
  }
  onGossip(update: Uint8Array): GossipData | undefined {
    return this.absorb(update)
  }
  private absorb(update: Uint8Array): GossipData | undefined {
    const news = Buffer.from(update).toString().split(',').filter((x) => x && !this.items.has(x))
    for (const x of news) this.items.add(x)
    return news.length ? bytes(news.join(',')) : undefined
  }
}
const bytes = (s: string) => new BytesGossipData([Buffer.from(s)])

async function line() {
  const sim = createMeshSim({ seed: 3, discovery: false })
  const a = await sim.addPeer([])
  const b = await sim.addPeer([a.addr])
  const c = await sim.addPeer([b.addr])
  const took = await sim.runUntil(() => sim.converged(), 5_000)
  assert.ok(took >= 0)
  assert.not.ok(a.mesh.connections().has(c.name), 'A and C are not neighbours')
  return { sim, a, b, c }
}
const reg = (p: SimPeer, ch = 'test') => {
  const g = new SetGossiper()
  return { g, gossip: p.mesh.newGossip(ch, g) }
}

test('unicast is relayed hop by hop; broadcast reaches every peer once', async () => {
  const { sim, a, b, c } = await line()
  try {
    const ga = reg(a), gb = reg(b), gc = reg(c)
    assert.ok(ga.gossip.gossipUnicast(c.name, Buffer.from('hello C')))
    ga.gossip.gossipBroadcast(bytes('x1'))
    await sim.run(200)
    assert.equal(gc.g.unicasts, [[a.name, 'hello C']])
    assert.equal(gb.g.unicasts, [])
    assert.equal(gb.g.broadcasts, [[a.name, 'x1']])
    assert.equal(gc.g.broadcasts, [[a.name, 'x1']])
    assert.not.ok(ga.gossip.gossipUnicast('02:ff:ff:ff:ff:ff' as PeerName, Buffer.from('nobody')), 'no route')
  } finally {
    await sim.stop()
  }
})

test('neighbour gossip spreads news; a new connection gets the full state', async () => {
  const { sim, a, b, c } = await line()
  try {
    const ga = reg(a), gb = reg(b), gc = reg(c)
    ga.g.items.add('seed')
    ga.gossip.gossipNeighbourSubset(bytes('n1'))
    await sim.run(200)
    assert.ok(gb.g.items.has('n1') && gc.g.items.has('n1'))
    const d = await sim.addPeer([c.addr])
    const gd = reg(d)
    await sim.runUntil(() => sim.converged(), 5_000)
    await sim.run(100)
    assert.ok(gd.g.items.has('n1'), 'full state from the new neighbour')
  } finally {
    await sim.stop()
  }
})

test('an unknown channel is relayed by the peer that does not know it (surrogate)', async () => {
  const { sim, a, b, c } = await line()
  try {
    const ga = reg(a, 'dns'), gc = reg(c, 'dns')
    void b
    ga.gossip.gossipBroadcast(bytes('rec1'))
    ga.gossip.gossipUnicast(c.name, Buffer.from('direct'))
    ga.gossip.gossipNeighbourSubset(bytes('rec2'))
    await sim.run(200)
    assert.equal(gc.g.broadcasts, [[a.name, 'rec1']])
    assert.equal(gc.g.unicasts, [[a.name, 'direct']])
    assert.ok(gc.g.items.has('rec2'))
  } finally {
    await sim.stop()
  }
})

test('pending sends to one neighbour are merged into one message; fan-out is 2·log2 N', () => {
  const clock = new HeapClock()
  const sent: MeshMessage[] = []
  const self = '02:00:00:00:00:01' as PeerName, peer = '02:00:00:00:00:02' as PeerName
  const ch = new GossipChannels({
    self, clock, rng: seededRng(1), logger: nullLogger,
    nextHop: () => peer, broadcastChildren: () => [peer], neighbours: () => [peer], peerCount: () => 2,
    send: (_p, m) => { sent.push(m); return true },
  })
  const g = ch.newGossip('c', new SetGossiper())
  g.gossipNeighbourSubset(bytes('a'))
  g.gossipNeighbourSubset(bytes('b'))
  assert.is(sent.length, 0, 'nothing leaves before the flush')
  clock.advanceTo(1)
  assert.is(sent.length, 2, 'BytesGossipData merges by keeping both parts, one send each')
  assert.is(fanout(100, 50), 14)
  assert.is(fanout(1000, 10), 10)
  const s = new SurrogateGossiper(clock, 1000)
  assert.ok(s.onGossip(Buffer.from('z'), peer))
  assert.is(s.onGossip(Buffer.from('z'), peer), undefined, 'same bytes within the window are not relayed again')
})

test('a channel registered after connecting catches up both ways (a subsystem that starts after the mesh)', async () => {
  const { sim, a } = await line()
  try {
    const ga = reg(a, 'dns')
    ga.g.items.add('on-a')
    // d connects to a, whose full state arrives on connect while d has no dns channel yet
    const d = await sim.addPeer([a.addr])
    await sim.runUntil(() => sim.converged(), 5_000)
    await sim.run(100)
    const gd = { g: new SetGossiper() }
    gd.g.items.add('on-d') // state it holds when it registers (restored from disk, say)
    d.mesh.newGossip('dns', gd.g)
    await sim.run(100) // far below the 30 s periodic gossip
    assert.ok(gd.g.items.has('on-a'), 'what neighbours sent before registration is handed over')
    assert.ok(ga.g.items.has('on-d'), 'our state goes to the neighbours at registration')
  } finally {
    await sim.stop()
  }
})

test.run()
