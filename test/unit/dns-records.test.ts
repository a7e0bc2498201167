/**
 * The weaveDNS records CRDT (dns/records.ts) and its wire: merges are commutative and idempotent
 * (property-tested over random histories of several owners), tombstones beat older live entries
 * whatever the delivery order, a peer that leaves is dropped, a restarted owner outbids its stale
 * entries, tombstones are collected after their TTL and capped, and gossip from a skewed clock is
 * refused with a log line.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { Records, entryKey, type Entry, decodeDnsMsg, encodeDnsMsgs, DnsGossipData, createWeaveDns } from '../../dns'
import { DnsGossiper } from '../../dns/gossiper'
import { FakeClock, memoryLogger, seededRng } from '../../router/deps'

const P = ['aa:00:00:00:00:01', 'aa:00:00:00:00:02', 'aa:00:00:00:00:03']
const opts = (self: string) => ({ self, tombstoneTtlMs: 30 * 60_000, maxTombstones: 1000 })
const all = () => true

/** State as a comparable map key → version/tombstone. */
function snapshot(r: Records): string {
  return JSON.stringify(r.all().map((e) => [entryKey(e), e.version, e.tombstone > 0]).sort())
}

/** Random histories: each owner adds/removes its own names; returns every entry version ever written. */
const history = fc.array(fc.record({ owner: fc.integer({ min: 0, max: 2 }), name: fc.integer({ min: 0, max: 4 }), add: fc.boolean() }), { maxLength: 60 })

function writeHistory(ops: Array<{ owner: number; name: number; add: boolean }>): Entry[] {
  const owners = P.map((p) => new Records(opts(p)))
  const written: Entry[] = []
  let now = 1000
  for (const op of ops) {
    const r = owners[op.owner]
    const hostname = `n${op.name}.weave.local.`
    const address = `10.32.0.${op.name + 1}`
    if (op.add) { const e = r.addLocal({ hostname, containerId: `c${op.name}`, address }); if (e) written.push(e) }
    else written.push(...r.removeLocal((e) => e.hostname === hostname, now++))
  }
  return written
}

test('merge is commutative, associative-by-order and idempotent over random histories', () => {
  fc.assert(fc.property(history, fc.integer(), (ops, seed) => {
    const written = writeHistory(ops)
    const shuffled = [...written]
    let s = seed >>> 0
    for (let i = shuffled.length - 1; i > 0; i--) { s = (s * 1103515245 + 12345) >>> 0; const j = s % (i + 1); [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]] }
    const a = new Records(opts('bb:00:00:00:00:09'))
    const b = new Records(opts('bb:00:00:00:00:09'))
    a.merge(written, 2000, all)
    for (const e of shuffled) b.merge([e], 2000, all)
    assert.is(snapshot(a), snapshot(b))
    const before = snapshot(a)
    assert.equal(a.merge(written, 2000, all), [], 'merging again changes nothing')
    assert.is(snapshot(a), before)
    // every key ends at the highest version written for it
    const max = new Map<string, number>()
    for (const e of written) max.set(entryKey(e), Math.max(max.get(entryKey(e)) ?? 0, e.version))
    for (const e of a.all()) assert.is(e.version, max.get(entryKey(e)))
  }), { numRuns: 300 })
})

test('a tombstone beats the live entry it removed, in either order', () => {
  const owner = new Records(opts(P[0]))
  const live = owner.addLocal({ hostname: 'web.weave.local.', containerId: 'c1', address: '10.32.0.1' })!
  const [dead] = owner.removeLocal(() => true, 5000)
  for (const order of [[live, dead], [dead, live]]) {
    const r = new Records(opts(P[1]))
    for (const e of order) r.merge([e], 6000, all)
    assert.equal(r.lookup('web.weave.local.'), [])
    assert.is(r.tombstoneCount, 1)
  }
})

test('a peer that left is dropped, and entries of unknown owners are not taken', () => {
  const r = new Records(opts(P[1]))
  const e: Entry = { hostname: 'a.weave.local.', origin: P[0], containerId: 'c', address: '10.32.0.1', version: 1, tombstone: 0 }
  r.merge([e], 0, all)
  assert.equal(r.lookup('a.weave.local.'), ['10.32.0.1'])
  assert.is(r.dropPeer(P[0]), 1)
  assert.equal(r.lookup('a.weave.local.'), [])
  assert.equal(r.merge([e], 0, (o) => o !== P[0]), [])
  assert.is(r.size, 0)
})

test('a restarted owner tombstones its stale entries and outbids old versions of live ones', () => {
  const stale: Entry = { hostname: 'old.weave.local.', origin: P[0], containerId: 'gone', address: '10.32.0.9', version: 7, tombstone: 0 }
  const oldLive: Entry = { hostname: 'web.weave.local.', origin: P[0], containerId: 'c1', address: '10.32.0.1', version: 5, tombstone: 99 }
  const restarted = new Records(opts(P[0]))
  restarted.addLocal({ hostname: 'web.weave.local.', containerId: 'c1', address: '10.32.0.1' })
  const changed = restarted.merge([stale, oldLive], 10_000, all)
  assert.is(changed.length, 2)
  const s = changed.find((e) => e.containerId === 'gone')!
  assert.ok(s.tombstone > 0 && s.version === 8, 'stale entry tombstoned above its version')
  const w = changed.find((e) => e.containerId === 'c1')!
  assert.ok(w.tombstone === 0 && w.version === 6, 'live entry re-issued above the remembered tombstone')
  // a third peer holding the old state converges to the owner's word
  const other = new Records(opts(P[1]))
  other.merge([stale, oldLive], 10_000, all)
  other.merge(changed, 10_000, all)
  assert.equal(other.lookup('web.weave.local.'), ['10.32.0.1'])
  assert.equal(other.lookup('old.weave.local.'), [])
})

test('tombstones are collected after their TTL and capped in number', () => {
  const r = new Records({ self: P[0], tombstoneTtlMs: 1000, maxTombstones: 50 })
  for (let i = 0; i < 200; i++) {
    r.addLocal({ hostname: `n${i}.weave.local.`, containerId: `c${i}`, address: '10.32.0.1' })
    r.removeLocal((e) => e.containerId === `c${i}`, 100 + i)
  }
  assert.ok(r.tombstoneCount <= 200)
  r.gc(150)
  assert.ok(r.tombstoneCount <= 50 && r.tombstoneCount >= 45, `capped: ${r.tombstoneCount}`)
  r.gc(100 + 199 + 1001)
  assert.is(r.tombstoneCount, 0)
  assert.is(r.size, 0)
  // a tombstone older than the TTL arriving late is not taken back in
  const late: Entry = { hostname: 'x.weave.local.', origin: P[1], containerId: 'c', address: '10.32.0.2', version: 2, tombstone: 10 }
  assert.equal(r.merge([late], 5000, all), [])
})

test('wire round trip, chunking, and refusal of malformed messages', () => {
  const entries: Entry[] = Array.from({ length: 4500 }, (_, i) => ({
    hostname: `h${i}.weave.local.`, origin: P[i % 3], containerId: `c${i}`, address: `10.32.${(i >> 8) & 255}.${i & 255}`, version: i + 1, tombstone: i % 2 ? 1000 + i : 0,
  }))
  const msgs = encodeDnsMsgs(entries, 123)
  assert.is(msgs.length, 3)
  const back = msgs.flatMap((m) => { const d = decodeDnsMsg(m); assert.ok(d.ok); return d.ok ? d.msg.entries : [] })
  assert.equal(back, entries)
  assert.not.ok(decodeDnsMsg(new Uint8Array([1, 2, 3])).ok)
  const bad = encodeDnsMsgs([{ ...entries[0], hostname: 'NOT..valid' }], 1)
  assert.equal(decodeDnsMsg(bad[0]), { ok: false, reason: 'bad-hostname' })
  // pending data merges by version
  const d1 = DnsGossipData.of([{ ...entries[0], version: 1 }], () => 0)
  const d2 = DnsGossipData.of([{ ...entries[0], version: 5 }], () => 0)
  const m = d1.merge(d2) as DnsGossipData
  assert.is([...m.entries.values()][0].version, 5)
})

test('gossip from a peer whose clock is 20 min off is refused with one clear log line', () => {
  const clock = new FakeClock(100 * 60_000)
  const logger = memoryLogger()
  const records = new Records(opts(P[1]))
  const g = new DnsGossiper({ records, clock, logger, self: P[1], maxClockSkewMs: 15 * 60_000, isKnownPeer: all, onUnknownOrigin: () => {}, onOwnChanged: () => {}, onChanged: () => {} })
  const e: Entry = { hostname: 'a.weave.local.', origin: P[0], containerId: 'c', address: '10.32.0.1', version: 1, tombstone: 0 }
  const skewed = encodeDnsMsgs([e], clock.now() - 20 * 60_000)[0]
  assert.is(g.onGossipBroadcast(P[0] as never, skewed), undefined)
  g.onGossipBroadcast(P[0] as never, skewed)
  assert.is(records.size, 0)
  assert.is(g.counters.refusedSkew, 2)
  const lines = logger.lines.filter((l) => l.includes('clock'))
  assert.is(lines.length, 1)
  assert.match(lines[0], /refusing DNS gossip from aa:00:00:00:00:01: its clock is -1200 s off ours/)
  const ok = encodeDnsMsgs([e], clock.now() + 60_000)[0]
  assert.ok(g.onGossipBroadcast(P[0] as never, ok))
  assert.equal(records.lookup('a.weave.local.'), ['10.32.0.1'])
})

test('memory stays bounded: 10,000 register/remove events keep at most maxTombstones', () => {
  const r = new Records({ self: P[0], tombstoneTtlMs: 30 * 60_000, maxTombstones: 1000 })
  const peer = new Records({ self: P[1], tombstoneTtlMs: 30 * 60_000, maxTombstones: 1000 })
  for (let i = 0; i < 5000; i++) {
    const a = r.addLocal({ hostname: `c${i}.weave.local.`, containerId: `id${i}`, address: '10.32.0.5' })!
    const t = r.removeLocal((e) => e.containerId === `id${i}`, i + 1)
    peer.merge([a, ...t], i + 1, all)
  }
  assert.ok(peer.size <= 1000, `peer holds ${peer.size}`)
})

test('entries of an owner the topology does not know yet are held until it does (gossip before topology after a heal)', async () => {
  const clock = new FakeClock(1000)
  let peers = [P[1]]
  let listener = () => {}
  let gossiper: import('../../router/mesh').Gossiper | undefined
  const host = {
    view: {
      self: { name: P[1], nickname: 'h2', uid: 1n },
      peers: () => peers.map((name) => ({ name, nickname: name, uid: 1n })),
      isReachable: () => true,
      onPeersChanged: (fn: () => void) => { listener = fn; return () => {} },
    },
    newGossip: (_c: string, g: import('../../router/mesh').Gossiper) => { gossiper = g; return { gossipUnicast: () => true, gossipBroadcast: () => {}, gossipNeighbourSubset: () => {} } },
  } as unknown as import('../../router/mesh').GossipHost
  const dns = createWeaveDns({}, { clock, rng: seededRng(1), logger: memoryLogger(), host })
  await dns.start()
  const e: Entry = { hostname: 'web.weave.local.', origin: P[0], containerId: 'c', address: '10.32.0.1', version: 3, tombstone: 0 }
  gossiper!.onGossip(encodeDnsMsgs([e], clock.now())[0])
  assert.equal(dns.lookup('web'), [], 'not answered while its owner is unknown')
  peers = [P[0], P[1]]
  listener()
  assert.equal(dns.lookup('web'), ['10.32.0.1'])
  peers = [P[1]]
  listener()
  assert.equal(dns.lookup('web'), [], 'dropped when its owner leaves')
  await dns.stop()
})

test.run()
