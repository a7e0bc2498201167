/** Unit tests of IPAM's pure cores: address math, space, ring, consensus, persistence, HTTP. */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type { PeerName } from '../../router/mesh'
import { memoryLogger, seededRng } from '../../router/deps'
import {
  cidrRange, formatCidr, formatIp, hostRange, largestAlignedBlock, parseCidr, parseIp,
} from '../../ipam/address'
import { Space } from '../../ipam/space'
import { Ring } from '../../ipam/ring'
import { Paxos } from '../../ipam/consensus'
import { applyJournal, decodeState, fileStore, memoryStore } from '../../ipam/persistence'
import { createIpam, parseInit } from '../../ipam'
import { SimBus, simPeerName } from '../../ipam/testing'

const A = 'aa:00:00:00:00:01' as PeerName
const B = 'aa:00:00:00:00:02' as PeerName
const C = 'aa:00:00:00:00:03' as PeerName

const address = suite('ipam address')
address('parses and formats addresses and CIDRs', () => {
  assert.is(parseIp('10.32.0.1'), 10 * 2 ** 24 + 32 * 2 ** 16 + 1)
  assert.is(formatIp(parseIp('255.255.255.255')!), '255.255.255.255')
  assert.is(parseIp('10.32.0.256'), undefined)
  assert.is(parseIp('10.32.0'), undefined)
  assert.is(parseCidr('10.32.0.0/33'), undefined)
  const c = parseCidr('10.32.5.7/12')!
  assert.is(formatCidr(c), '10.32.5.7/12')
  assert.equal(cidrRange(c), { start: parseIp('10.32.0.0')!, end: parseIp('10.48.0.0')! })
  assert.equal(hostRange(parseCidr('10.0.0.0/30')!), { start: parseIp('10.0.0.1')!, end: parseIp('10.0.0.3')! })
  assert.is(cidrRange(parseCidr('0.0.0.0/0')!).end, 2 ** 32)
})
address('largestAlignedBlock picks the biggest aligned block, highest first, under the cap', () => {
  assert.equal(largestAlignedBlock({ start: 3, end: 17 }, 100), { start: 8, end: 16 })
  assert.equal(largestAlignedBlock({ start: 0, end: 64 }, 32), { start: 32, end: 64 })
  assert.equal(largestAlignedBlock({ start: 5, end: 6 }, 1), { start: 5, end: 6 })
  assert.is(largestAlignedBlock({ start: 5, end: 5 }, 4), undefined)
})
address.run()

const space = suite('ipam space')
space('allocates lowest free, releases, coalesces, and donates at most half', () => {
  const s = new Space()
  s.setOwned([{ start: 100, end: 116 }])
  assert.is(s.allocateLowest({ start: 0, end: 1000 }, 'a'), 100)
  assert.is(s.allocateLowest({ start: 0, end: 1000 }, 'b'), 101)
  assert.is(s.allocateLowest({ start: 110, end: 1000 }, 'c'), 110)
  s.release(101)
  assert.is(s.allocateLowest({ start: 0, end: 1000 }, 'd'), 101)
  assert.is(s.freeIn({ start: 100, end: 116 }), 13)
  assert.is(s.check(), undefined)
  const d = s.donation({ start: 100, end: 116 })!
  assert.ok(d.end - d.start <= 6 && d.end - d.start >= 1)
  for (let a = d.start; a < d.end; a++) assert.ok(s.isFree(a))
  assert.is(s.allocateLowest({ start: 116, end: 200 }, 'e'), undefined)
  assert.ok(s.hasLeasesIn({ start: 110, end: 111 }))
  assert.not.ok(s.hasLeasesIn({ start: 111, end: 116 }))
})
space('setOwned keeps leases and recomputes free space', () => {
  const s = new Space()
  s.restoreLease(5, 'x')
  s.setOwned([{ start: 0, end: 10 }])
  assert.is(s.freeIn({ start: 0, end: 10 }), 9)
  assert.not.ok(s.isFree(5))
  assert.is(s.check(), undefined)
})
space.run()

const ring = suite('ipam ring')
ring('claimForPeers splits evenly and identically on every peer', () => {
  const r1 = new Ring(0, 1024)
  r1.claimForPeers([C, A, B, A])
  const r2 = new Ring(0, 1024)
  r2.claimForPeers([A, B, C])
  assert.equal(r1.toWire(), r2.toWire())
  assert.equal([...r1.shares().values()], [341, 341, 342])
  assert.is(r1.check(), undefined)
  assert.equal(r1.seeds, [A, B, C])
})
ring('grant moves a range with a version bump; merge carries it over', () => {
  const r = new Ring(0, 1024)
  r.claimForPeers([A, B])
  const theirs = r.clone()
  r.grant(A, { start: 256, end: 512 }, B, () => 256)
  assert.is(r.owner(300), B)
  assert.is(r.owner(100), A)
  assert.is(r.check(), undefined)
  const res = theirs.merge(r, B, () => false)
  assert.ok(res.ok && res.changed)
  assert.equal(theirs.toWire(), r.toWire())
  const again = theirs.merge(r, B, () => false)
  assert.ok(again.ok && !again.changed)
})
ring('merges are refused for different ranges, seeds, or taking a range we hold leases in', () => {
  const a = new Ring(0, 1024)
  a.claimForPeers([A, B])
  const other = new Ring(0, 2048)
  other.claimForPeers([A, B])
  const r1 = a.merge(other, A, () => false)
  assert.ok(!r1.ok && r1.code === 'range-mismatch' && /Incompatible IP allocation ranges/.test(r1.reason))
  const seeded = new Ring(0, 1024)
  seeded.claimForPeers([A, C])
  const r2 = a.merge(seeded, A, () => false)
  assert.ok(!r2.ok && r2.code === 'seed-mismatch' && /seeded by different peers/.test(r2.reason))
  const takeover = a.clone()
  takeover.transfer(A, B)
  takeover.removed.clear()
  const before = JSON.stringify(a.toWire())
  const r3 = a.merge(takeover, A, (r) => r.start <= 10 && r.end > 10)
  assert.ok(!r3.ok && r3.code === 'lease-conflict')
  assert.is(JSON.stringify(a.toWire()), before, 'refused merge changed the ring')
})
ring('our own entry seen newer elsewhere is re-asserted above it', () => {
  const a = new Ring(0, 1024)
  a.claimForPeers([A, B])
  const newer = a.clone()
  newer.entries[0].version = 7
  const res = a.merge(newer, A, () => false)
  assert.ok(res.ok && res.reasserted)
  assert.is(a.entries[0].version, 8)
})
ring('rmpeer tombstones: the removed peer never wins its entries back, and learns it was removed', () => {
  const base = new Ring(0, 1024)
  base.claimForPeers([A, B])
  const bOld = base.clone()
  for (let i = 0; i < 300; i++) bOld.reportFree(B, () => i % 2) // B kept bumping while cut off
  const a = base.clone()
  a.transfer(B, A)
  const r1 = a.merge(bOld, A, () => false)
  assert.ok(r1.ok)
  assert.is(a.owner(600), A, 'tombstoned peer won its range back')
  const r2 = bOld.merge(a, B, () => true)
  assert.ok(r2.ok && r2.selfRemoved)
  assert.is(bOld.owner(600), A)
})
ring('fromWire rejects malformed rings', () => {
  assert.not.ok(Ring.fromWire({ start: 0, end: 10, entries: [{ token: 5, peer: A, version: 0, free: 1 }], seeds: [], removed: [] }).ok)
  assert.not.ok(Ring.fromWire({ start: 0, end: 10, entries: [{ token: 0, peer: A, version: 0, free: 11 }], seeds: [], removed: [] }).ok)
  assert.not.ok(Ring.fromWire('nope').ok)
  assert.ok(Ring.fromWire({ start: 0, end: 10, entries: [{ token: 0, peer: A, version: 0, free: 10 }], seeds: [], removed: [] }).ok)
})
ring.run()

const paxos = suite('ipam consensus')
function exchange(nodes: Paxos[]): void {
  for (let round = 0; round < 20; round++) {
    let changed = false
    for (const n of nodes) for (const m of nodes) if (n !== m && n.merge(m.toWire())) changed = true
    for (const n of nodes) if (n.think()) changed = true
    if (!changed) return
  }
}
paxos('one proposer: every node learns the same value, listing the electors', () => {
  const nodes = [A, B, C].map((n) => new Paxos(n, 2, undefined, 3))
  nodes[0].propose()
  exchange(nodes)
  for (const n of nodes) assert.equal(n.result(), [A, B, C])
})
paxos('duelling proposers still agree on one value', () => {
  const rng = seededRng(4)
  for (let trial = 0; trial < 50; trial++) {
    const names = [A, B, C, 'aa:00:00:00:00:04' as PeerName, 'aa:00:00:00:00:05' as PeerName]
    const nodes = names.map((n) => new Paxos(n, 3, undefined, 5))
    nodes.forEach((n) => (n.allowPartial = true))
    // Random partial exchanges with several proposers, then full exchange.
    for (let step = 0; step < 30; step++) {
      const i = rng.int(nodes.length)
      const j = rng.int(nodes.length)
      if (rng.next() < 0.2) nodes[i].propose()
      nodes[i].merge(nodes[j].toWire())
      nodes[i].think()
    }
    exchange(nodes)
    const results = nodes.map((n) => JSON.stringify(n.result()))
    const decided = results.filter((r) => r !== undefined && r !== 'undefined')
    assert.ok(new Set(decided).size <= 1, `trial ${trial}: different values ${[...new Set(decided)].join(', ')}`)
  }
})
paxos('a quorum is needed: one node of three cannot decide alone', () => {
  const a = new Paxos(A, 2, undefined, 3)
  a.allowPartial = true
  a.propose()
  a.think()
  assert.is(a.result(), undefined)
})
paxos.run()

const persist = suite('ipam persistence')
persist('fileStore writes atomically and loads back; foreign state is refused with a message', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipam-'))
  try {
    const file = path.join(dir, 'sub', 'ipam.json')
    const st = fileStore(file)
    assert.equal(await st.load(), { journal: [] })
    await st.save('{"x":1}')
    await st.append(['["+","a","10.0.0.1/8"]'])
    await st.save('{"x":2}')
    await st.append(['["+","b","10.0.0.2/8"]', '["-","b","10.0.0.2/8"]'])
    await st.append(['["+","c","10.0.0.3/8"]'])
    assert.equal(await fileStore(file).load(), { snapshot: '{"x":2}', journal: ['["+","b","10.0.0.2/8"]', '["-","b","10.0.0.2/8"]', '["+","c","10.0.0.3/8"]'] })
    assert.not.ok(fs.existsSync(`${file}.tmp`))
    // A torn last record (killed mid-append) is dropped; a journal of another generation is ignored.
    fs.appendFileSync(`${file}.journal`, '["+","d","10.0')
    assert.is((await fileStore(file).load()).journal.length, 3)
    fs.writeFileSync(`${file}.journal`, '{"gen":1}\n["+","z","10.0.0.9/8"]\n')
    assert.equal(await fileStore(file).load(), { snapshot: '{"x":2}', journal: [] })
    const saved = JSON.stringify({ format: 1, peerName: A, range: '10.32.0.0/12', leases: {} })
    const r1 = decodeState(saved, { peerName: B, range: '10.32.0.0/12', where: file })
    assert.ok(!r1.ok && /belongs to peer aa:00:00:00:00:01, not aa:00:00:00:00:02/.test(r1.reason))
    const r2 = decodeState(saved, { peerName: A, range: '10.40.0.0/16', where: file })
    assert.ok(!r2.ok && /is for range 10.32.0.0\/12, but --ipalloc-range is 10.40.0.0\/16/.test(r2.reason))
    assert.ok(decodeState(saved, { peerName: A, range: '10.32.0.0/12', where: file }).ok)
    assert.not.ok(decodeState('{', { peerName: A, range: '10.32.0.0/12', where: file }).ok)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
persist('leases and ring survive a restart; no address is handed out twice after it', async () => {
  const bus = new SimBus(31)
  const store = memoryStore()
  const host = bus.addPeer(A)
  const mk = (h = host) => createIpam({ range: '10.32.0.0/24', init: `seed=${A}` }, { clock: bus.clock, rng: seededRng(1), logger: memoryLogger(), host: h, store })
  const one = mk()
  await one.start()
  const got: string[] = []
  for (let i = 0; i < 5; i++) got.push(formatCidr(await one.allocator.allocate(`c${i}`)))
  await one.stop()
  bus.stopPeer(A)
  const two = mk(bus.restartPeer(A))
  await two.start()
  assert.is(formatCidr(two.allocator.lookup('c3')[0]), got[3])
  const next = formatCidr(await two.allocator.allocate('c9'))
  assert.not.ok(got.includes(next))
  assert.is(formatCidr(await two.allocator.allocate('c1')), got[1], 'not idempotent after restart')
  await two.stop()
  const refused = createIpam({ range: '10.33.0.0/24', init: `seed=${A}` }, { clock: bus.clock, rng: seededRng(1), logger: memoryLogger(), host: bus.restartPeer(A), store })
  try {
    await refused.start()
    assert.unreachable('state of another range accepted')
  } catch (e) {
    assert.match((e as Error).message, /is for range 10.32.0.0\/24/)
  }
})
persist('answers wait for the write, and concurrent requests share writes', async () => {
  const bus = new SimBus(32)
  const store = memoryStore()
  const ipam = createIpam({ range: '10.32.0.0/16', init: `seed=${A}` }, { clock: bus.clock, rng: seededRng(1), logger: memoryLogger(), host: bus.addPeer(A), store })
  await ipam.start()
  const before = store.saves + store.appends
  const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => ipam.allocator.allocate(`c${i}`)))
  assert.is(new Set(answers.map(formatCidr)).size, 200)
  const stored = await store.load()
  const dec = decodeState(stored.snapshot, { peerName: A, range: '10.32.0.0/16', where: 'memory' })
  assert.ok(dec.ok && dec.state)
  const full = applyJournal(dec.state, stored.journal, 'memory')
  assert.ok(full.ok)
  assert.is(Object.keys(full.ok ? full.state!.leases : {}).length, 200, 'answered before persisted')
  const writes = store.saves + store.appends - before
  assert.ok(writes < 20, `${writes} writes for 200 allocations`)
  assert.ok(stored.journal.length > 0, 'lease changes should go to the journal')
})
persist.run()

const http = suite('ipam http')
http('routes: allocate, idempotent, lookup, claim, release, errors are errors', async () => {
  const bus = new SimBus(33)
  const ipam = createIpam({ range: '10.32.0.0/12', init: `seed=${A}` }, { clock: bus.clock, rng: seededRng(1), logger: memoryLogger(), host: bus.addPeer(A) })
  await ipam.start()
  const q = new URLSearchParams()
  const call = (method: string, p: string) => ipam.handle({ method, path: p, query: q })
  assert.equal(await call('POST', '/ip/abc'), { status: 200, text: '10.32.0.1/12' })
  assert.equal(await call('POST', '/ip/abc'), { status: 200, text: '10.32.0.1/12' })
  assert.equal(await call('POST', '/ip/abc/10.32.8.0/24'), { status: 200, text: '10.32.8.1/24' })
  assert.equal(await call('GET', '/ip/abc'), { status: 200, text: '10.32.0.1/12 10.32.8.1/24' })
  assert.equal(await call('GET', '/ip/abc/10.32.8.0/24'), { status: 200, text: '10.32.8.1/24' })
  assert.equal(await call('PUT', '/ip/def/10.32.0.9/12'), { status: 204 })
  assert.is((await call('PUT', '/ip/xyz/10.32.0.9/12')).status, 409)
  assert.is((await call('POST', '/ip/abc/192.168.0.0/24')).status, 400)
  assert.is((await call('POST', '/ip/abc/10.32.0.0/31')).status, 400)
  assert.equal(await call('DELETE', '/ip/abc/10.32.8.1'), { status: 204 })
  assert.is((await call('DELETE', '/ip/abc/10.32.8.1')).status, 400)
  assert.equal(await call('DELETE', '/ip/def'), { status: 204 })
  assert.is((await call('DELETE', '/ip/def')).status, 400)
  assert.equal(await call('GET', '/ipinfo/defaultsubnet'), { status: 200, text: '10.32.0.0/12' })
  assert.equal(await call('GET', '/ring'), { status: 200, text: 'ready' })
  assert.equal((await call('GET', '/ip')).json, { owned: [{ containerid: 'abc', addrs: ['10.32.0.1/12'] }] })
  assert.is((await call('DELETE', `/peer/${A}`)).status, 400)
  assert.match(ipam.statusIpam(), /^aa:00:00:00:00:01\(.*\) +1048576 IPs \(100\.0% of total\) \(1 active\)\n$/)
})
http('parseInit: explicit N, derived N with a warning, seeds, observer, garbage', () => {
  const log = memoryLogger()
  assert.equal(parseInit('consensus=5', 0, log), { kind: 'consensus', clusterSize: 5 })
  assert.equal(parseInit(undefined, 2, log), { kind: 'consensus', clusterSize: 3 })
  assert.ok(log.lines.some((l) => /assuming 3 peers \(the 2 launch peer\(s\) plus this one\)/.test(l)))
  assert.equal(parseInit(`seed=${A},${B.toUpperCase()}`, 0, log), { kind: 'seed', peers: [A, B] })
  assert.equal(parseInit('observer', 0, log), { kind: 'observer' })
  assert.throws(() => parseInit('seed=foo', 0, log))
  assert.throws(() => parseInit('bogus', 0, log))
})
http('weave status ipam: our line first with (K active), others with shares, unreachable marked, 100% in total', async () => {
  const bus = new SimBus(34)
  const seeds = `seed=${A},${B},${C}`
  const mk = (n: PeerName) => createIpam({ range: '10.32.0.0/12', init: seeds }, { clock: bus.clock, rng: seededRng(1), logger: memoryLogger(), host: bus.addPeer(n, `nick${n.slice(-1)}`) })
  const [a] = [mk(A), mk(B), mk(C)]
  await a.start()
  await a.allocator.allocate('x')
  bus.stopPeer(C)
  const lines = a.statusIpam().trimEnd().split('\n')
  assert.is(lines.length, 3)
  assert.match(lines[0], /^aa:00:00:00:00:01\(nick1\) +349525 IPs \(33\.3% of total\) \(1 active\)$/)
  assert.match(lines[1], /^aa:00:00:00:00:02\(nick2\) +349525 IPs \(33\.3% of total\)$/)
  assert.match(lines[2], /^aa:00:00:00:00:03\(nick3\) +349526 IPs \(33\.3% of total\) - unreachable!$/)
  assert.is(lines[0].indexOf('349525'), 37)
  const r = a.report() as { Shares: Array<{ Percent: number }>; Entries: Array<{ Size: number }>; RangeNumIPs: number }
  assert.ok(Math.abs(r.Shares.reduce((n, e) => n + e.Percent, 0) - 100) < 0.01)
  // Weave's Entries: one per ring token, their sizes cover the whole range
  assert.is(r.Entries.reduce((n, e) => n + e.Size, 0), r.RangeNumIPs)
})
http.run()
void simPeerName
