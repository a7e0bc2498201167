/**
 * IPAM simulations: many peers in one process over the in-memory bus (ipam/testing.ts), virtual
 * time, seeded randomness. A failing test prints its seed.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { memoryLogger, seededRng } from '../../router/deps'
import type { PeerName } from '../../router/mesh'
import { type Ipam, createIpam, memoryStore, formatCidr, parseCidr } from '../../ipam'
import { SimBus, simPeerName } from '../../ipam/testing'

interface SimNode { name: PeerName; ipam: Ipam; store: ReturnType<typeof memoryStore>; log: ReturnType<typeof memoryLogger> }

async function makeNode(bus: SimBus, i: number, init: string, range = '10.32.0.0/12', store = memoryStore()): Promise<SimNode> {
  const name = simPeerName(i)
  const host = bus.addPeer(name, `host${i}`)
  const log = memoryLogger('info')
  const ipam = createIpam({ range, init }, { clock: bus.clock, rng: seededRng(bus.seed * 1000 + i), logger: log, host, store })
  await ipam.start()
  return { name, ipam, store, log }
}

/** Allocate without blocking the bus: the promise settles while the bus runs. */
function track<T>(p: Promise<T>): { done: boolean; value?: T; error?: Error } {
  const t: { done: boolean; value?: T; error?: Error } = { done: false }
  p.then((v) => { t.done = true; t.value = v }, (e) => { t.done = true; t.error = e })
  return t
}

test('3 peers with consensus=3 allocate 1,000 addresses between them with no duplicates', async () => {
  const bus = new SimBus(11)
  const nodes = await Promise.all([1, 2, 3].map((i) => makeNode(bus, i, 'consensus=3')))
  const results: Array<ReturnType<typeof track<unknown>>> = []
  for (let k = 0; k < 1000; k++) results.push(track(nodes[k % 3].ipam.allocator.allocate(`c${k}`)))
  await bus.until(() => results.every((r) => r.done), 10_000)
  const errs = results.filter((r) => r.error)
  assert.is(errs.length, 0, errs[0]?.error?.message)
  const addrs = results.map((r) => formatCidr(r.value as never))
  assert.is(new Set(addrs).size, 1000, 'duplicate address')
  for (const n of nodes) assert.is(n.ipam.statusText(), 'ready')
  // Everyone agrees on the ring and it splits the range in three.
  await bus.run(3000)
  const wire = JSON.stringify(nodes[0].ipam.allocator.ring.toWire().entries.map((e) => [e.token, e.peer]))
  for (const n of nodes) assert.is(JSON.stringify(n.ipam.allocator.ring.toWire().entries.map((e) => [e.token, e.peer])), wire)
})

test('a fresh 100-peer mesh reaches its first allocation within 10 s of virtual time', async () => {
  const bus = new SimBus(7)
  const nodes: SimNode[] = []
  for (let i = 1; i <= 100; i++) nodes.push(await makeNode(bus, i, 'consensus=100'))
  assert.is(nodes[0].ipam.statusText(), 'idle')
  const first = track(nodes[42].ipam.allocator.allocate('first'))
  const took = await bus.until(() => first.done, 10_000)
  assert.not.ok(first.error, first.error?.message)
  assert.ok(took <= 10_000, `took ${took} ms`)
  console.log(`    100 peers: first allocation after ${took} ms virtual, ${bus.delivered} messages`)
  // Another peer allocates too, and gets a different address.
  const second = track(nodes[7].ipam.allocator.allocate('second'))
  await bus.until(() => second.done, 10_000)
  assert.not.ok(second.error, second.error?.message)
  assert.is.not(formatCidr(second.value as never), formatCidr(first.value as never))
})

test('a peer whose IPAM starts after the mesh met it still joins consensus at once', async () => {
  const bus = new SimBus(53, { gossipIntervalMs: 30_000 }) // periodic gossip as slow as the real mesh's
  const [a] = await Promise.all([1, 2].map((i) => makeNode(bus, i, 'consensus=3')))
  const r = track(a.ipam.allocator.allocate('x'))
  await bus.run(200)
  // The mesh knows peer 3 now (the others announce themselves to it at once, into the void),
  // but its IPAM channel registers only 1.1 s later, before the proposer's grace for absent peers ends.
  const host = bus.addPeer(simPeerName(3), 'host3')
  await bus.run(1100)
  const c = createIpam({ range: '10.32.0.0/12', init: 'consensus=3' }, { clock: bus.clock, rng: seededRng(3), logger: memoryLogger(), host, store: memoryStore() })
  await c.start()
  await bus.until(() => r.done, 10_000)
  assert.not.ok(r.error, r.error?.message)
  assert.is(a.ipam.allocator.ring.shares().size, 3, 'the late peer was left out of the ring')
})

test('status says awaiting consensus with quorum and known count until a quorum is there', async () => {
  const bus = new SimBus(3)
  const a = await makeNode(bus, 1, 'consensus=3')
  bus.partition([[a.name]])
  const b = await makeNode(bus, 2, 'consensus=3')
  const c = await makeNode(bus, 3, 'consensus=3')
  const r = track(a.ipam.allocator.allocate('x'))
  await bus.run(500)
  assert.is(a.ipam.statusText(), 'awaiting consensus (quorum: 2, known: 1)')
  assert.not.ok(r.done)
  bus.heal()
  await bus.until(() => r.done, 10_000)
  assert.not.ok(r.error, r.error?.message)
  void b; void c
})

test('a peer that exhausted its share gets space from another', async () => {
  const bus = new SimBus(5)
  const nodes = await Promise.all([1, 2].map((i) => makeNode(bus, i, 'consensus=2', '10.40.0.0/26')))
  // 64 addresses, 32 each; the subnet's network and broadcast addresses are never handed out.
  const rs: Array<ReturnType<typeof track<unknown>>> = []
  for (let k = 0; k < 50; k++) rs.push(track(nodes[0].ipam.allocator.allocate(`c${k}`)))
  await bus.until(() => rs.every((r) => r.done), 30_000)
  const errs = rs.filter((r) => r.error)
  assert.is(errs.length, 0, errs[0]?.error?.message)
  const addrs = rs.map((r) => formatCidr(r.value as never))
  assert.is(new Set(addrs).size, 50)
  assert.not.ok(addrs.includes('10.40.0.0/26'), 'network address handed out')
  assert.not.ok(addrs.includes('10.40.0.63/26'), 'broadcast address handed out')
  assert.ok(nodes[1].ipam.allocator.ring.ownedBy(nodes[1].name).length >= 1, 'donor kept nothing')
})

test('seed mode allocates while partitioned and merges cleanly on heal', async () => {
  const bus = new SimBus(9)
  const seeds = `seed=${simPeerName(1)},${simPeerName(2)}`
  const a = await makeNode(bus, 1, seeds)
  const b = await makeNode(bus, 2, seeds)
  bus.partition([[a.name], [b.name]])
  const ra = track(a.ipam.allocator.allocate('ca'))
  const rb = track(b.ipam.allocator.allocate('cb'))
  await bus.until(() => ra.done && rb.done, 1000)
  assert.not.ok(ra.error)
  assert.not.ok(rb.error)
  assert.is.not(formatCidr(ra.value as never), formatCidr(rb.value as never))
  bus.heal()
  await bus.run(5000)
  assert.equal(a.ipam.allocator.ring.toWire(), b.ipam.allocator.ring.toWire())
  assert.not.ok(a.log.lines.some((l) => l.includes('refusing')), a.log.lines.join('\n'))
})

test('a seed mismatch and a range mismatch are refused with their messages', async () => {
  const bus = new SimBus(13)
  const a = await makeNode(bus, 1, `seed=${simPeerName(1)}`)
  const b = await makeNode(bus, 2, `seed=${simPeerName(2)}`)
  const c = await makeNode(bus, 3, `seed=${simPeerName(3)}`, '10.48.0.0/16')
  await bus.run(3000)
  assert.ok(a.log.lines.some((l) => l.includes('IP allocation was seeded by different peers')), a.log.lines.join('\n'))
  assert.ok(a.log.lines.some((l) => l.includes('Incompatible IP allocation ranges')), a.log.lines.join('\n'))
  // Nothing was merged: each still owns its whole own range.
  assert.is(a.ipam.allocator.ring.ownedBy(a.name)[0].end - a.ipam.allocator.ring.ownedBy(a.name)[0].start, 2 ** 20)
  void b; void c
})

test('claims: local, remote-owned (donated or refused), outside the range', async () => {
  const bus = new SimBus(17)
  const [a, b] = await Promise.all([1, 2].map((i) => makeNode(bus, i, `seed=${simPeerName(1)},${simPeerName(2)}`, '10.50.0.0/24')))
  const ownedByB = b.ipam.allocator.ring.ownedBy(b.name)[0].start
  const bAddr = parseCidr(`10.50.0.${(ownedByB % 256) + 5}/24`)!
  const r1 = track(a.ipam.allocator.claim('ca', bAddr))
  await bus.until(() => r1.done, 10_000)
  assert.not.ok(r1.error, r1.error?.message)
  assert.is(a.ipam.allocator.ring.owner(bAddr.ip), a.name)
  // b's own container holds another of b's addresses; a's claim of it is refused.
  const held = parseCidr(`10.50.0.${(ownedByB % 256) + 9}/24`)!
  const r2 = track(b.ipam.allocator.claim('cb', held))
  await bus.until(() => r2.done, 1000)
  assert.not.ok(r2.error)
  const r3 = track(a.ipam.allocator.claim('other', held))
  await bus.until(() => r3.done, 20_000)
  assert.ok(r3.error && /owned by other peer/.test(r3.error.message), r3.error?.message)
  const r4 = track(a.ipam.allocator.claim('out', parseCidr('192.168.9.9/24')!))
  await bus.until(() => r4.done, 1000)
  assert.not.ok(r4.error)
  const r5 = track(a.ipam.allocator.claim('out2', parseCidr('192.168.9.9/24')!))
  await bus.until(() => r5.done, 1000)
  assert.ok(r5.error, 'two IDs claimed one outside address')
})

test('rmpeer takes over a stopped peer; the removed peer that comes back is told and does not reclaim', async () => {
  const bus = new SimBus(19)
  const seeds = `seed=${simPeerName(1)},${simPeerName(2)},${simPeerName(3)}`
  const stores = [memoryStore(), memoryStore(), memoryStore()]
  const [a, b, c] = await Promise.all([1, 2, 3].map((i) => makeNode(bus, i, seeds, '10.32.0.0/12', stores[i - 1])))
  const rc = track(c.ipam.allocator.allocate('cc'))
  await bus.until(() => rc.done, 1000)
  await bus.run(2000)
  const sharesBefore = a.ipam.allocator.ring.shares()
  await c.ipam.stop()
  bus.stopPeer(c.name)
  await assert_rejects(a.ipam.allocator.removePeer(b.name), /reachable/)
  const r = track(a.ipam.allocator.removePeer(c.name))
  await bus.until(() => r.done, 1000)
  assert.not.ok(r.error, r.error?.message)
  await bus.run(3000)
  assert.is(b.ipam.allocator.ring.ownedBy(c.name).length, 0)
  assert.is(a.ipam.allocator.ring.shares().get(a.name), sharesBefore.get(a.name)! + sharesBefore.get(c.name)!)
  // c comes back with its old state: it must not win its ranges back.
  const host = bus.restartPeer(c.name)
  const log = memoryLogger('info')
  const c2 = createIpam({ range: '10.32.0.0/12', init: seeds }, { clock: bus.clock, rng: seededRng(99), logger: log, host, store: stores[2] })
  await c2.start()
  await bus.run(3000)
  assert.is(a.ipam.allocator.ring.ownedBy(c.name).length, 0)
  assert.is(c2.allocator.ring.ownedBy(c.name).length, 0)
  assert.ok(c2.allocator.isRemoved())
  assert.ok(log.lines.some((l) => l.includes('removed from the ring by rmpeer')), log.lines.join('\n'))
  const again = track(c2.allocator.allocate('new'))
  await bus.until(() => again.done, 1000)
  assert.ok(again.error)
})

test('two peers running rmpeer of the same dead peer at once: at most one takes it over', async () => {
  const bus = new SimBus(43)
  const names = [1, 2, 3, 4].map(simPeerName)
  const seeds = `seed=${names.join(',')}`
  const [a, b, c] = await Promise.all([1, 2, 3, 4].map((i) => makeNode(bus, i, seeds)))
  bus.stopPeer(names[3])
  const ra = track(a.ipam.allocator.removePeer(names[3]))
  const rb = track(b.ipam.allocator.removePeer(names[3]))
  await bus.until(() => ra.done && rb.done, 10_000)
  const winners = [ra, rb].filter((r) => !r.error)
  assert.ok(winners.length <= 1, 'both took the dead peer over')
  for (const r of [ra, rb]) if (r.error) assert.match(r.error.message, /already removing|agreed/)
  // Retried alone, it goes through, and everyone ends up with one owner for the dead peer's space.
  if (winners.length === 0) {
    const again = track(a.ipam.allocator.removePeer(names[3]))
    await bus.until(() => again.done, 10_000)
    assert.not.ok(again.error, again.error?.message)
  }
  await bus.run(3000)
  const heirs = new Set([a, b, c].map((n) => n.ipam.allocator.ring.owner(0xffffffff & (n.ipam.allocator.ring.end - 1))))
  assert.is(heirs.size, 1)
  assert.not.ok(heirs.has(names[3]))
})

test('rmpeer with two of three peers dead needs them named together', async () => {
  const bus = new SimBus(47)
  const names = [1, 2, 3].map(simPeerName)
  const seeds = `seed=${names.join(',')}`
  const [a] = await Promise.all([1, 2, 3].map((i) => makeNode(bus, i, seeds)))
  bus.stopPeer(names[1])
  bus.stopPeer(names[2])
  const alone = track(a.ipam.allocator.removePeer(names[1]))
  await bus.until(() => alone.done, 10_000)
  assert.ok(alone.error && /1 of 2 peers owning space agreed, 2 needed/.test(alone.error.message), alone.error?.message)
  const both = track(a.ipam.allocator.removePeer(names[1], [names[2]]))
  await bus.until(() => both.done, 10_000)
  assert.not.ok(both.error, both.error?.message)
  const third = track(a.ipam.allocator.removePeer(names[2]))
  await bus.until(() => third.done, 10_000)
  assert.not.ok(third.error, third.error?.message)
  assert.is(a.ipam.allocator.ring.shares().get(names[0]), 2 ** 20)
})

test('reset hands our ranges to a live peer and confirms', async () => {
  const bus = new SimBus(23)
  const seeds = `seed=${simPeerName(1)},${simPeerName(2)}`
  const [a, b] = await Promise.all([1, 2].map((i) => makeNode(bus, i, seeds, '10.60.0.0/24')))
  const r = track(a.ipam.allocator.reset())
  await bus.until(() => r.done, 10_000)
  assert.not.ok(r.error, r.error?.message)
  assert.is(r.value, b.name)
  assert.is(b.ipam.allocator.ring.shares().get(b.name), 256)
})

test('consensus=3 with only two peers up: a quorum goes ahead after a short grace', async () => {
  const bus = new SimBus(29)
  const [a, b] = await Promise.all([1, 2].map((i) => makeNode(bus, i, 'consensus=3')))
  const r = track(a.ipam.allocator.allocate('x'))
  const took = await bus.until(() => r.done, 10_000)
  assert.not.ok(r.error, r.error?.message)
  assert.ok(took >= 500 && took <= 5000, `took ${took} ms`)
  assert.equal([...a.ipam.allocator.ring.shares().keys()].sort(), [a.name, b.name])
  // The third peer arrives late: it learns the ring and gets space by donation.
  const c = await makeNode(bus, 3, 'consensus=3')
  const rc = track(c.ipam.allocator.allocate('y'))
  await bus.until(() => rc.done, 20_000)
  assert.not.ok(rc.error, rc.error?.message)
  assert.is.not(formatCidr(rc.value as never), formatCidr(r.value as never))
})

test('an observer owns nothing until it needs space, then gets the ring and a donation', async () => {
  const bus = new SimBus(37)
  const seeds = `seed=${simPeerName(1)},${simPeerName(2)}`
  await Promise.all([1, 2].map((i) => makeNode(bus, i, seeds)))
  const o = await makeNode(bus, 3, 'observer')
  assert.is(o.ipam.statusText(), 'idle')
  await bus.run(2000)
  assert.is(o.ipam.allocator.ring.ownedBy(o.name).length, 0)
  const r = track(o.ipam.allocator.allocate('obs'))
  await bus.until(() => r.done, 20_000)
  assert.not.ok(r.error, r.error?.message)
  assert.is(o.ipam.allocator.ring.owner(r.value ? (r.value as { ip: number }).ip : 0), o.name)
})

test('killed mid-write: every answered lease survives, and no address is issued twice after restart', async () => {
  const bus = new SimBus(41)
  const name = simPeerName(1)
  // A store whose writes can be frozen: a frozen write never completes (the process dies in it).
  const durable = memoryStore()
  let frozen = false
  const never = new Promise<void>(() => {})
  const store = {
    where: 'crashy',
    load: () => durable.load(),
    save: (text: string) => (frozen ? never : durable.save(text)),
    append: (records: string[]) => (frozen ? never : durable.append(records)),
  }
  const ipam = createIpam({ range: '10.32.0.0/24', init: `seed=${name}` }, { clock: bus.clock, rng: seededRng(1), logger: memoryLogger(), host: bus.addPeer(name), store })
  await ipam.start()
  const answered: string[] = []
  for (let k = 0; k < 60; k++) {
    if (k === 40) frozen = true
    ipam.allocator.allocate(`c${k}`).then((c) => answered.push(formatCidr(c)), () => {})
    if (k % 7 === 0) await bus.flush()
  }
  await bus.flush()
  assert.ok(answered.length >= 30 && answered.length <= 46, `${answered.length} answered`)
  // "SIGKILL": drop the instance; restart from what is durable.
  bus.stopPeer(name)
  frozen = false
  const again = createIpam({ range: '10.32.0.0/24', init: `seed=${name}` }, { clock: bus.clock, rng: seededRng(2), logger: memoryLogger(), host: bus.restartPeer(name), store })
  await again.start()
  const kept = new Set(again.allocator.owned().flatMap((o) => o.addrs))
  for (const a of answered) assert.ok(kept.has(a), `answered lease ${a} lost`)
  const fresh: string[] = []
  for (let k = 100; k < 150; k++) fresh.push(formatCidr(await again.allocator.allocate(`c${k}`)))
  for (const f of fresh) assert.not.ok(answered.includes(f), `${f} issued twice`)
})

async function assert_rejects(p: Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await p
  } catch (e) {
    assert.match((e as Error).message, re)
    return
  }
  assert.unreachable('expected a rejection')
}

test.run()
