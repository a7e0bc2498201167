/**
 * The kernel vxlan path's pure parts: heartbeat datagrams and the MAC pages they carry (every
 * page reaches every peer; a set counts only when complete), the fdb plan (flood entry and MACs
 * only for peers on the path; removals first), the fdb commands, the bridge's local MACs, the
 * overlay choice between OVS and kernel vxlan peers, and the overlay itself over fake sockets
 * and host: heartbeats out, a peer's MACs installed only while the switch has it forwarding.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { FakeClock, nullLogger } from '../../router/deps'
import {
  MacAnnouncer, MacCollector, chooseOverlay, createVxlanOverlay, decodeVxlanHeartbeat, emptyFdb, encodeVxlanHeartbeat, planCounters, planFdb, wantedFdb,
  type VxlanIo,
} from '../../router/overlay'
import {
  KERNEL_VXLAN_VNI, TRAFFIC_TABLE, countersPeersScript, countersTableScript, fdbCommands, parseCounters, parseLocalMacs, type FdbOp, type PathTraffic,
} from '../../router/net'
import { linksToRemove } from '../../router/net/reset'

const mac = (i: number) => `02:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`

test('heartbeat: a vxlan datagram (VNI, I flag) whose inner frame round-trips; small ones 60 bytes, full ones the MTU', () => {
  const page = { gen: 7, total: 3, offset: 1, macs: [mac(1), mac(2)] }
  const d = encodeVxlanHeartbeat({ vni: KERNEL_VXLAN_VNI, src: 5, dst: 9, full: false, fullBytes: 1390, page })
  assert.is(d[0], 0x08)
  assert.is(d.readUIntBE(4, 3), KERNEL_VXLAN_VNI)
  assert.is(d.length, 8 + 60)
  assert.equal(decodeVxlanHeartbeat(d.subarray(8)), { src: 5, dst: 9, full: false, page })
  const full = encodeVxlanHeartbeat({ vni: 1, src: 5, dst: 9, full: true, fullBytes: 1390, page })
  assert.is(full.length, 8 + 1390)
  assert.is(decodeVxlanHeartbeat(full.subarray(8))?.full, true)
  // not ours, or malformed: undefined / no page (peer input never throws)
  const f = Buffer.from(d.subarray(8))
  f[0] = 0xff
  assert.is(decodeVxlanHeartbeat(f), undefined)
  assert.is(decodeVxlanHeartbeat(d.subarray(8, 40)), undefined)
  const lying = Buffer.from(d.subarray(8))
  lying.writeUInt16BE(200, 24) // claims 200 MACs in 60 bytes
  assert.equal(decodeVxlanHeartbeat(lying), { src: 5, dst: 9, full: false })
})

test('MAC pages: each peer walks every page; a set counts once complete, only changes are news', () => {
  const a = new MacAnnouncer()
  assert.ok(a.set([mac(3), mac(1), mac(2), mac(1)]))
  assert.not.ok(a.set([mac(1), mac(2), mac(3)]), 'the same set: no new generation')
  const c = new MacCollector()
  let cursor = 0, got: ReadonlySet<string> | undefined
  for (let i = 0; i < 2; i++) {
    const { page, next } = a.page(cursor, 2)
    cursor = next
    got = c.add(page) ?? got
    if (i === 0) assert.is(got, undefined, 'one page of two: nothing yet')
  }
  assert.equal([...got!].sort(), [mac(1), mac(2), mac(3)])
  // the same generation again (pages wrap around): no news
  for (let i = 0; i < 4; i++) { const { page, next } = a.page(cursor, 2); cursor = next; assert.is(c.add(page), undefined) }
  a.set([mac(1)])
  const { page } = a.page(cursor, 2)
  assert.equal([...c.add(page)!], [mac(1)], 'a new generation replaces the set')
  assert.equal([...c.macs()], [mac(1)])
  a.set([])
  assert.equal([...(c.add(a.page(0, 2).page) ?? ['?'])], [], 'none left')
})

test('fdb plan: only peers on the path; MACs and flood entries out first, then in', () => {
  const want = wantedFdb([
    { ip: '10.0.0.2', forwarding: true, macs: [mac(1), mac(2)] },
    { ip: '10.0.0.3', forwarding: false, macs: [mac(3)] },
  ])
  assert.equal([...want.flood], ['10.0.0.2'])
  assert.equal([...want.macs], [[mac(1), '10.0.0.2'], [mac(2), '10.0.0.2']])
  const ops = planFdb(emptyFdb(), want)
  assert.equal(ops, [{ op: 'add-flood', ip: '10.0.0.2' }, { op: 'set-mac', mac: mac(1), ip: '10.0.0.2' }, { op: 'set-mac', mac: mac(2), ip: '10.0.0.2' }])
  assert.equal(planFdb(want, want), [])
  const moved = wantedFdb([{ ip: '10.0.0.3', forwarding: true, macs: [mac(2)] }])
  assert.equal(planFdb(want, moved), [
    { op: 'del-mac', mac: mac(1) }, { op: 'del-flood', ip: '10.0.0.2' }, { op: 'add-flood', ip: '10.0.0.3' }, { op: 'set-mac', mac: mac(2), ip: '10.0.0.3' },
  ])
})

test('fdb commands: all-zeros appended per peer; a MAC gets its vxlan and its bridge entry', () => {
  assert.equal(fdbCommands({ op: 'add-flood', ip: '10.0.0.2' }), [['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'vxlan-6784', 'dst', '10.0.0.2', 'self', 'permanent']])
  assert.equal(fdbCommands({ op: 'set-mac', mac: mac(1), ip: '10.0.0.2' }), [
    ['bridge', 'fdb', 'replace', mac(1), 'dev', 'vxlan-6784', 'dst', '10.0.0.2', 'self', 'permanent'],
    ['bridge', 'fdb', 'replace', mac(1), 'dev', 'vxlan-6784', 'master', 'static'],
  ])
  assert.is(fdbCommands({ op: 'del-mac', mac: mac(1) }).length, 2)
  assert.equal(linksToRemove(['lo', 'eth0', 'weave', 'vxlan-6784', 'vxlan0', 'vethwe-pcap'], 'weave'), ['weave', 'vxlan-6784', 'vethwe-pcap'])
})

test('local MACs: learnt on container ports only, never on the ports that lead off the host', () => {
  const rows = [
    { mac: 'aa:00:00:00:00:01', ifname: 'vethwepl123', master: 'weave', state: '' },
    { mac: 'aa:00:00:00:00:02', ifname: 'vethwepl123', master: 'weave', state: 'permanent' },
    { mac: 'aa:00:00:00:00:03', ifname: 'vethwe-bridge', master: 'weave', state: '' },
    { mac: 'aa:00:00:00:00:04', ifname: 'vxlan-6784', master: 'weave', state: 'static' },
    { mac: '00:00:00:00:00:00', ifname: 'vxlan-6784', dst: '10.0.0.2', flags: ['self'], state: 'permanent' },
    { mac: '33:33:00:00:00:01', ifname: 'vethwepl123', master: 'weave', state: '' },
    { mac: 'AA:00:00:00:00:05', ifname: 'vethweplabc', master: 'weave' },
    { mac: 'aa:00:00:00:00:06', ifname: 'eth1', master: 'other' },
  ]
  assert.equal(parseLocalMacs(JSON.stringify(rows), 'weave', ['vxlan-6784', 'vethwe-bridge']), ['aa:00:00:00:00:01', 'aa:00:00:00:00:05'])
  assert.equal(parseLocalMacs('not json', 'weave', []), [])
})

test('choice: OVS and kernel vxlan peers stay on sleeve, and say why', () => {
  const ip = '192.168.250.2'
  assert.equal(chooseOverlay({ ready: true, kind: 'vxlan' }, { ip, fastdp: true, dp: 'vxlan' }), { via: 'fastdp' })
  assert.equal(chooseOverlay({ ready: true, kind: 'vxlan' }, { ip, fastdp: true }), { via: 'sleeve', why: "the peer's fast path is OVS fastdp, ours kernel vxlan" })
  assert.equal(chooseOverlay({ ready: true }, { ip, fastdp: true, dp: 'vxlan' }), { via: 'sleeve', why: "the peer's fast path is kernel vxlan, ours OVS fastdp" })
  assert.equal(chooseOverlay({ ready: true }, { ip, fastdp: true }), { via: 'fastdp' })
})

test('traffic counters: one nft transaction makes the table afresh; heartbeats are not counted; peers by set elements', () => {
  const t = countersTableScript(6784, 0x88b5).split('\n')
  assert.equal(t.slice(0, 3), [`add table ip ${TRAFFIC_TABLE}`, `delete table ip ${TRAFFIC_TABLE}`, `add table ip ${TRAFFIC_TABLE}`], 'a leftover table goes first')
  assert.ok(t.includes(`add rule ip ${TRAFFIC_TABLE} out udp dport 6784 @th,224,16 != 0x88b5 counter name ip daddr map @tx`), t.join('\n'))
  assert.ok(t.includes(`add rule ip ${TRAFFIC_TABLE} in udp dport 6784 @th,224,16 != 0x88b5 counter name ip saddr map @rx`), t.join('\n'))
  assert.equal(countersPeersScript(['10.0.0.2'], ['10.0.0.3']).split('\n'), [
    `delete element ip ${TRAFFIC_TABLE} tx { 10.0.0.3 }`, `delete counter ip ${TRAFFIC_TABLE} tx_10_0_0_3`,
    `delete element ip ${TRAFFIC_TABLE} rx { 10.0.0.3 }`, `delete counter ip ${TRAFFIC_TABLE} rx_10_0_0_3`,
    `add counter ip ${TRAFFIC_TABLE} tx_10_0_0_2`, `add element ip ${TRAFFIC_TABLE} tx { 10.0.0.2 : "tx_10_0_0_2" }`,
    `add counter ip ${TRAFFIC_TABLE} rx_10_0_0_2`, `add element ip ${TRAFFIC_TABLE} rx { 10.0.0.2 : "rx_10_0_0_2" }`,
  ])
  assert.is(countersPeersScript([], []), '')
  assert.throws(() => countersPeersScript(['10.0.0.2; flush ruleset'], []), /bad IPv4 address/, 'an address never becomes nft syntax')
  assert.equal(planCounters(new Set(['a', 'b']), new Set(['b', 'c'])), { add: ['c'], del: ['a'] })
})

test('traffic counters: nft -j output → inner frame bytes by peer address (36 bytes of outer headers off each datagram)', () => {
  // as nft 1.0.6 prints it
  const json = JSON.stringify({ nftables: [
    { metainfo: { version: '1.0.6', json_schema_version: 1 } },
    { counter: { family: 'ip', name: 'tx_10_0_0_2', table: TRAFFIC_TABLE, handle: 7, packets: 5, bytes: 750 } },
    { counter: { family: 'ip', name: 'rx_10_0_0_2', table: TRAFFIC_TABLE, handle: 8, packets: 2, bytes: 172 } },
    { counter: { family: 'ip', name: 'tx_10_0_0_2', table: 'someone-else', handle: 9, packets: 1, bytes: 1 } },
    { counter: { family: 'ip', name: 'other', table: TRAFFIC_TABLE, handle: 10, packets: 1, bytes: 1 } },
  ] })
  assert.equal([...parseCounters(json)], [['10.0.0.2', { txBytes: 570, txPackets: 5, rxBytes: 100, rxPackets: 2 }]])
  assert.equal([...parseCounters('{"nftables": []}')], [])
})

function fakeOverlay() {
  const clock = new FakeClock()
  const fdb: FdbOp[][] = []
  const sent: Array<{ ip: string; d: Buffer }> = []
  let deliver: ((frames: Uint8Array[]) => void) | undefined
  const counts = new Map<string, PathTraffic>()
  const counters = {
    tables: 0, updates: [] as Array<{ add: readonly string[]; del: readonly string[] }>,
    async ensure(ethertype: number) { assert.is(ethertype, 0x88b5); counters.tables++ },
    async update(add: readonly string[], del: readonly string[]) {
      counters.updates.push({ add, del })
      for (const ip of del) counts.delete(ip)
      for (const ip of add) counts.set(ip, { txBytes: 0, txPackets: 0, rxBytes: 0, rxPackets: 0 })
    },
    async read() { return new Map(counts) },
    async remove() { counters.tables--; counts.clear(); return true },
  }
  const host = {
    ensured: 0, removed: 0, counters,
    async ensure() { host.ensured++ },
    async remove() { host.removed++; return true },
    async applyFdb(ops: readonly FdbOp[]) { fdb.push([...ops]) },
    async localMacs() { return ['aa:00:00:00:00:01'] },
  }
  const io: VxlanIo = { send: (ip, _port, d) => { sent.push({ ip, d: Buffer.from(d) }); return 0 }, onFrames: (fn) => { deliver = fn }, close: () => undefined }
  const o = createVxlanOverlay({ mtu: 1376, bridge: 'weave' }, { clock, logger: nullLogger, host, openIo: () => io })
  return { o, clock, fdb, sent, host, counts, deliver: (f: Uint8Array[]) => deliver!(f) }
}

test('kernel vxlan overlay: a counter per connected peer, read by name; gone with the peer and at stop', async () => {
  const { o, host, counts } = fakeOverlay()
  await o.start(5)
  assert.is(host.counters.tables, 1)
  const c9 = o.connect({ shortId: 9, peer: 'p9', ip: '10.0.0.9' })
  const c7 = o.connect({ shortId: 7, peer: 'p7', ip: '10.0.0.7' })
  await c9.start()
  await c7.start()
  assert.equal(host.counters.updates, [{ add: ['10.0.0.9'], del: [] }, { add: ['10.0.0.7'], del: [] }])
  counts.set('10.0.0.9', { txBytes: 1042, txPackets: 1, rxBytes: 2084, rxPackets: 2 })
  counts.set('10.0.0.66', { txBytes: 1, txPackets: 1, rxBytes: 1, rxPackets: 1 }) // no peer of ours: not reported
  const t = (await o.traffic!()).sort((a, b) => a.peer.localeCompare(b.peer))
  assert.equal(t, [
    { peer: 'p7', txBytes: 0, txPackets: 0, rxBytes: 0, rxPackets: 0 },
    { peer: 'p9', txBytes: 1042, txPackets: 1, rxBytes: 2084, rxPackets: 2 },
  ])
  await c9.stop()
  assert.equal(host.counters.updates.at(-1), { add: [], del: ['10.0.0.9'] }, 'peers come and go: the table holds only those connected')
  assert.equal((await o.traffic!()).map((x) => x.peer), ['p7'])
  await o.stop()
  assert.is(host.counters.tables, 0, 'the table goes at stop')
  assert.equal(await o.traffic!(), [])
})

test('kernel vxlan overlay: heartbeats out with our MACs; a peer\'s MACs in the fdb only while it forwards', async () => {
  const { o, clock, fdb, sent, host, deliver } = fakeOverlay()
  assert.is(o.unavailable(), 'not started')
  o.setChoice('no openvswitch kernel module')
  o.useBridgeMac('AA:BB:CC:00:00:01')
  await o.start(5)
  assert.is(o.unavailable(), undefined)
  assert.is(host.ensured, 1)
  const c = o.connect({ shortId: 9, peer: 'p9', ip: '10.0.0.9' })
  await c.start()
  const beats = o.heartbeats!()!
  beats.health.add(9, clock.now())
  await beats.tick([{ shortId: 9, ip: '10.0.0.9', peer: 'p9' }], () => assert.unreachable())
  assert.is(sent.length, 1)
  assert.is(sent[0].ip, '10.0.0.9')
  const out = decodeVxlanHeartbeat(sent[0].d.subarray(8))!
  assert.equal({ src: out.src, dst: out.dst, full: out.full, macs: out.page?.macs }, { src: 5, dst: 9, full: true, macs: ['aa:bb:cc:00:00:01'] })
  // the peer's heartbeat, with its two MACs: heard, but nothing installed until it forwards
  const theirs = encodeVxlanHeartbeat({ vni: KERNEL_VXLAN_VNI, src: 9, dst: 5, full: true, fullBytes: 1390, page: { gen: 1, total: 2, offset: 0, macs: [mac(1), mac(2)] } })
  deliver([theirs.subarray(8)])
  assert.ok(beats.health.rxOk(9, clock.now()))
  await c.forward(true)
  assert.equal(fdb.flat(), [{ op: 'add-flood', ip: '10.0.0.9' }, { op: 'set-mac', mac: mac(1), ip: '10.0.0.9' }, { op: 'set-mac', mac: mac(2), ip: '10.0.0.9' }])
  assert.match(o.statusLine(), /^vxlan-6784 \(kernel vxlan: no openvswitch kernel module\) 1 of 1 peers, 2 remote MACs$/)
  fdb.length = 0
  await c.forward(false)
  assert.equal(fdb.flat(), [{ op: 'del-mac', mac: mac(1) }, { op: 'del-mac', mac: mac(2) }, { op: 'del-flood', ip: '10.0.0.9' }])
  // a neighbour that is our next hop to another peer goes by sleeve, which relays
  o.syncRoutes!(new Map([[9, 9], [11, 9]]), new Set([9]), new Map([[11, 'p11']]))
  assert.match((c.health(clock.now()) as { why: string }).why, /^next hop to p11: peers not reached directly go by sleeve/)
  // and one we pass another peer's broadcasts on to (we are the relay)
  o.syncRoutes!(new Map([[9, 9], [11, 11]]), new Set([9, 11]), new Map([[11, 'p11']]), new Map([[9, [11]]]))
  assert.match((c.health(clock.now()) as { why: string }).why, /^gets broadcasts of p11 through us: peers not reached directly go by sleeve/)
  o.syncRoutes!(new Map([[9, 9], [11, 11]]), new Set([9, 11]), new Map(), new Map())
  assert.match((c.health(clock.now()) as { why: string }).why, /^fastdp heartbeats do not get through to the peer/, 'a full mesh: the heartbeats decide (the peer has not said it hears ours)')
  await o.stop()
  assert.is(host.removed, 1)
  assert.is(o.unavailable(), 'stopped')
})

test('kernel vxlan overlay: a host that cannot make the device says why (sleeve only)', async () => {
  const clock = new FakeClock()
  const o = createVxlanOverlay({ mtu: 1376, bridge: 'weave' }, {
    clock, logger: nullLogger, openIo: () => { throw new Error('unused') },
    host: { ensure: async () => { throw new Error('Error: Unknown device type.\n') }, remove: async () => true, applyFdb: async () => undefined, localMacs: async () => [] },
  })
  await o.start(1)
  assert.is(o.unavailable(), 'no kernel vxlan: Error: Unknown device type.')
  assert.is(o.statusLine(), 'off: no kernel vxlan: Error: Unknown device type.')
})

test.run()
