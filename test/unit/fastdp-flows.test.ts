/**
 * fastdp's OpenFlow table on known topologies, the incremental diff, the ovs-ofctl script and
 * dump parser, and the driver's refusal when OVS is unreachable.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fc from 'fast-check'
import {
  applyChange, changeScript, computeFlows, diffFlows, flowKey, parseTunnelKey, tunnelKey, FLOW_COOKIE,
  type Flow, type FlowState,
} from '../../router/overlay/fastdp-flows'
import { parseDumpFlows, type FlowProgrammer } from '../../router/overlay/ofctl'
import type { FlowChange } from '../../router/overlay/fastdp-flows'
import { OvsdbError, type OvsdbClient, type Operation } from '../../router/ovsdb'
import { createFastdp, FastdpUnavailableError, rundirFor, startFastdp } from '../../router/overlay/fastdp'
import { FakeClock } from '../../router/deps'

const A = 1, B = 2, C = 3, D = 4
const macB = '02:00:00:00:00:0b', macB2 = '02:00:00:00:00:bb', macC = '02:00:00:00:00:0c', macD = '02:00:00:00:00:0d'
const macA = '02:00:00:00:00:0a'
const ports = { bridge: 1, vxlan: 2 }

function base(over: Partial<FlowState> = {}): FlowState {
  return {
    self: A,
    ports,
    localMacs: [macA],
    peers: [
      { shortId: B, ip: '10.0.0.2', macs: [macB, macB2] },
      { shortId: C, ip: '10.0.0.3', macs: [macC] },
    ],
    ...over,
  }
}

const find = (flows: Flow[], match: string) => flows.find((f) => f.match === match)
const tunnel = (ip: string, key: number) => `set_field:${ip}->tun_dst,set_field:0x${key.toString(16)}->tun_id,output:2`

test('tunnel key carries source and destination short IDs (12 + 12 bits)', () => {
  assert.is(tunnelKey(1, 2), 0x1002)
  assert.is(tunnelKey(0xfff, 0xfff), 0xffffff)
  assert.equal(parseTunnelKey(0xabc123), { src: 0xabc, dst: 0x123 })
  assert.throws(() => tunnelKey(4096, 1), /12 bits/)
})

test('two fastdp peers: unicast tunnels with the right key, flood copies once per peer, tunnel in goes to the bridge', () => {
  const flows = computeFlows(base())
  assert.is(find(flows, `in_port=1,dl_dst=${macB}`)?.actions, tunnel('10.0.0.2', 0x1002))
  assert.is(find(flows, `in_port=1,dl_dst=${macB2}`)?.actions, tunnel('10.0.0.2', 0x1002))
  assert.is(find(flows, `in_port=1,dl_dst=${macC}`)?.actions, tunnel('10.0.0.3', 0x1003))
  assert.is(find(flows, `in_port=1,dl_dst=${macA}`)?.actions, 'drop', 'local MAC: the Linux bridge delivers it')
  const flood = find(flows, 'in_port=1')!
  assert.is(flood.priority, 10)
  assert.is(flood.actions, `${tunnel('10.0.0.2', 0x1002)},${tunnel('10.0.0.3', 0x1003)}`)
  assert.is(find(flows, 'in_port=2,tun_id=0x1/0xfff')?.actions, 'output:1')
  // the same per peer, on its address: what each one sent us, counted by its own flow
  for (const ip of ['10.0.0.2', '10.0.0.3']) {
    const f = find(flows, `in_port=2,tun_src=${ip},tun_id=0x1/0xfff`)
    assert.equal([f?.priority, f?.actions], [105, 'output:1'])
  }
  // relays for B and C: straight to them, out the port the frame came in on
  assert.is(find(flows, 'in_port=2,tun_id=0x2/0xfff')?.actions, 'set_field:10.0.0.2->tun_dst,in_port')
  assert.is(find(flows, 'in_port=2,tun_id=0x3/0xfff')?.actions, 'set_field:10.0.0.3->tun_dst,in_port')
  assert.is(find(flows, '')?.actions, 'drop')
  assert.ok(flows.every((f, i) => i === 0 || flows[i - 1].priority >= f.priority), 'sorted by priority')
})

test('relay: C reached through B keeps key A→C but goes to B\'s address', () => {
  const flows = computeFlows(base({ nextHop: (d) => (d === C ? B : d === B ? B : undefined), selfIp: '10.0.0.1' }))
  assert.is(find(flows, `in_port=1,dl_dst=${macC}`)?.actions, tunnel('10.0.0.2', 0x1003))
  assert.is(find(flows, 'in_port=2,tun_id=0x3/0xfff')?.actions, 'set_field:10.0.0.1->tun_src,set_field:10.0.0.2->tun_dst,in_port')
  assert.match(find(flows, 'in_port=1')!.actions, tunnel('10.0.0.2', 0x1003))
})

test('relay loop guard: a frame for C that came from C\'s next hop is dropped, not sent back', () => {
  const flows = computeFlows(base({ nextHop: (d) => (d === C ? B : d === B ? B : undefined) }))
  const guard = find(flows, 'in_port=2,tun_id=0x3/0xfff,tun_src=10.0.0.2')
  assert.is(guard?.actions, 'drop')
  assert.ok(guard!.priority > find(flows, 'in_port=2,tun_id=0x3/0xfff')!.priority, 'above the relay flow')
  assert.is(find(flows, 'in_port=2,tun_id=0x3/0xfff,tun_src=10.0.0.3'), undefined)
})

test('unreachable peer: its MACs are dropped (not flooded) and it gets no flood copy', () => {
  const flows = computeFlows(base({ nextHop: (d) => (d === B ? B : undefined) }))
  assert.is(find(flows, `in_port=1,dl_dst=${macC}`)?.actions, 'drop')
  assert.is(find(flows, 'in_port=1')?.actions, tunnel('10.0.0.2', 0x1002))
  assert.is(find(flows, 'in_port=2,tun_id=0x3/0xfff'), undefined)
})

test('sleeve peer: to the router port when there is one (flooded once), else dropped', () => {
  const peers = [...base().peers, { shortId: D, ip: '10.0.0.4', macs: [macD], via: 'sleeve' as const }]
  const withRouter = computeFlows(base({ peers, ports: { ...ports, router: 7 } }))
  assert.is(find(withRouter, `in_port=1,dl_dst=${macD}`)?.actions, 'output:7')
  assert.is(find(withRouter, 'in_port=1')?.actions, `${tunnel('10.0.0.2', 0x1002)},${tunnel('10.0.0.3', 0x1003)},output:7`)
  assert.is(find(withRouter, 'in_port=7')?.actions, 'output:1', 'what the router injects goes to the bridge')
  // relayed to the router with the relay tag: the key's sender as an 802.1ad VLAN ID
  assert.is(find(withRouter, 'in_port=2,tun_id=0x4/0xfff')?.actions, 'push_vlan:0x88a8,move:NXM_NX_TUN_ID[12..23]->NXM_OF_VLAN_TCI[0..11],load:1->NXM_OF_VLAN_TCI[12],output:7')
  const without = computeFlows(base({ peers }))
  assert.is(find(without, `in_port=1,dl_dst=${macD}`)?.actions, 'drop')
  assert.not.match(find(without, 'in_port=1')!.actions, 'output:7')
  assert.is(find(without, 'in_port=7'), undefined)
})

test('floodToRouter: the router port gets a flood copy with every peer on fastdp (once, last)', () => {
  const on = computeFlows(base({ ports: { ...ports, router: 7 }, floodToRouter: true }))
  assert.is(find(on, 'in_port=1')?.actions, `${tunnel('10.0.0.2', 0x1002)},${tunnel('10.0.0.3', 0x1003)},output:7`)
  const off = computeFlows(base({ ports: { ...ports, router: 7 } }))
  assert.not.match(find(off, 'in_port=1')!.actions, 'output:7')
  const noPort = computeFlows(base({ floodToRouter: true }))
  assert.is(find(noPort, 'in_port=1')?.actions, `${tunnel('10.0.0.2', 0x1002)},${tunnel('10.0.0.3', 0x1003)}`, 'no router port: tunnels only')
})

test('learning: a peer reached by sleeve has its tunnel frames delivered but never learnt from', () => {
  const peers = [...base().peers, { shortId: D, ip: '10.0.0.4', macs: [], via: 'sleeve' as const }]
  const flows = computeFlows(base({ peers, ports: { ...ports, router: 7 }, learn: true }))
  const noLearn = flows.filter((f) => f.priority === 110)
  assert.equal(noLearn.map((f) => [f.match, f.actions]), [[`in_port=2,tun_id=0x${tunnelKey(D, A).toString(16)}`, 'output:1']])
  assert.match(find(flows, 'in_port=2,tun_id=0x1/0xfff')!.actions, /^learn\(/, 'fastdp peers still teach')
  assert.is(computeFlows(base({ peers, ports: { ...ports, router: 7 } })).filter((f) => f.priority === 110).length, 0, 'nothing to guard without learning')
})

test('MAC claims: local wins, then the lowest peer ID; group MACs never get a unicast flow; MACs normalised', () => {
  const flows = computeFlows(base({
    localMacs: [macA.toUpperCase()],
    peers: [
      { shortId: C, ip: '10.0.0.3', macs: [macB, macA, 'ff:ff:ff:ff:ff:ff'] },
      { shortId: B, ip: '10.0.0.2', macs: [macB] },
    ],
  }))
  assert.is(find(flows, `in_port=1,dl_dst=${macA}`)?.actions, 'drop')
  assert.is(find(flows, `in_port=1,dl_dst=${macB}`)?.actions, tunnel('10.0.0.2', 0x1002))
  assert.is(find(flows, 'in_port=1,dl_dst=ff:ff:ff:ff:ff:ff'), undefined)
  assert.is(new Set(flows.map(flowKey)).size, flows.length, 'no duplicate keys')
  assert.throws(() => computeFlows(base({ localMacs: ['nope'] })), /bad MAC/)
  assert.throws(() => computeFlows(base({ peers: [{ shortId: B, ip: '10.0.0.300', macs: [] }] })), /bad IPv4/)
})

test('learning: the tunnel-in flow learns a return flow with the swapped key', () => {
  const flows = computeFlows(base({ learn: true }))
  const f = find(flows, 'in_port=2,tun_id=0x1/0xfff')!
  assert.match(f.actions, /^learn\(table=0,priority=150,idle_timeout=300,/)
  assert.match(f.actions, 'load:NXM_NX_TUN_ID[12..23]->NXM_NX_TUN_ID[0..11],load:0x1->NXM_NX_TUN_ID[12..23]')
  assert.ok(f.actions.endsWith('),output:1'), f.actions)
})

test('diff: a new MAC for B is one add; nothing else moves', () => {
  const before = computeFlows(base())
  const after = computeFlows(base({ peers: [{ shortId: B, ip: '10.0.0.2', macs: [macB, macB2, '02:00:00:00:01:0b'] }, base().peers[1]] }))
  const d = diffFlows(before, after)
  assert.equal(d.modify, [])
  assert.equal(d.delete, [])
  assert.equal(d.add.map((f) => f.match), ['in_port=1,dl_dst=02:00:00:00:01:0b'])
})

test('diff: B moving to another address modifies only B\'s flows and the flood; C\'s are untouched', () => {
  const before = computeFlows(base())
  const after = computeFlows(base({ peers: [{ shortId: B, ip: '10.0.0.22', macs: [macB, macB2] }, base().peers[1]] }))
  const d = diffFlows(before, after)
  // the loop guard and B's tunnel-in flow name B's address in their match: new flows replace the old
  assert.equal(d.add.map((f) => f.match), ['in_port=2,tun_src=10.0.0.22,tun_id=0x1/0xfff', 'in_port=2,tun_id=0x2/0xfff,tun_src=10.0.0.22'])
  assert.equal(d.delete.map((f) => f.match), ['in_port=2,tun_src=10.0.0.2,tun_id=0x1/0xfff', 'in_port=2,tun_id=0x2/0xfff,tun_src=10.0.0.2'])
  const touched = d.modify.map((f) => f.match).sort()
  assert.equal(touched, ['in_port=1', `in_port=1,dl_dst=${macB}`, `in_port=1,dl_dst=${macB2}`, 'in_port=2,tun_id=0x2/0xfff'].sort())
  assert.ok(!touched.some((m) => m.includes(macC) || m.includes('0x3/')))
})

test('diff: removing C deletes its flows and modifies the flood; the change script is one bundle of strict mods', () => {
  const before = computeFlows(base())
  const after = computeFlows(base({ peers: [base().peers[0]] }))
  const d = diffFlows(before, after)
  assert.equal(d.delete.map((f) => f.match).sort(), [
    `in_port=1,dl_dst=${macC}`, 'in_port=2,tun_id=0x3/0xfff', 'in_port=2,tun_id=0x3/0xfff,tun_src=10.0.0.3', 'in_port=2,tun_src=10.0.0.3,tun_id=0x1/0xfff',
  ].sort())
  assert.equal(d.modify.map((f) => f.match), ['in_port=1'])
  const script = changeScript(d).trim().split('\n')
  assert.equal(script.filter((l) => l.startsWith('delete_strict priority=')).length, 4)
  assert.ok(script.includes(`modify_strict cookie=0x${FLOW_COOKIE.toString(16)},priority=10,in_port=1,actions=${tunnel('10.0.0.2', 0x1002)}`), script.join('\n'))
  assert.is(changeScript({ add: [], modify: [], delete: [] }), '')
})

test('property: applying diff(old, new) to old yields new; diff(x, x) is empty', () => {
  const mac = fc.integer({ min: 0, max: 30 }).map((n) => `02:00:00:00:00:${n.toString(16).padStart(2, '0')}`)
  const peer = fc.record({
    shortId: fc.integer({ min: 1, max: 8 }),
    ip: fc.option(fc.integer({ min: 1, max: 9 }).map((n) => `10.0.0.${n}`), { nil: undefined }),
    macs: fc.array(mac, { maxLength: 4 }),
    via: fc.constantFrom('fastdp' as const, 'sleeve' as const),
  })
  const st = fc.record({
    peers: fc.array(peer, { maxLength: 6 }),
    localMacs: fc.array(mac, { maxLength: 3 }),
    router: fc.option(fc.constant(9), { nil: undefined }),
    hops: fc.array(fc.option(fc.integer({ min: 1, max: 8 }), { nil: undefined }), { minLength: 9, maxLength: 9 }),
    useHops: fc.boolean(),
  }).map((s): FlowState => ({
    self: A, ports: { ...ports, ...(s.router ? { router: s.router } : {}) }, peers: s.peers, localMacs: s.localMacs,
    ...(s.useHops ? { nextHop: (d: number) => s.hops[d] } : {}),
  }))
  fc.assert(fc.property(st, st, (x, y) => {
    const fx = computeFlows(x), fy = computeFlows(y)
    assert.equal(applyChange(fx, diffFlows(fx, fy)), fy)
    const same = diffFlows(fx, computeFlows(x))
    assert.equal([same.add.length, same.modify.length, same.delete.length], [0, 0, 0])
    // every flow from the bridge that tunnels names our ID as the key's source
    for (const f of fy) {
      for (const m of f.actions.matchAll(/set_field:(0x[0-9a-f]+)->tun_id/g)) assert.is(parseTunnelKey(Number(m[1])).src, A)
    }
  }), { numRuns: 200 })
})

test('parseDumpFlows reads counters, priority and match', () => {
  const text = [
    'NXST_FLOW reply (xid=0x4):',
    ' cookie=0x77656176, duration=3.123s, table=0, n_packets=5, n_bytes=490, idle_age=1, priority=200,in_port=1,dl_dst=02:00:00:00:00:0b actions=set_field:10.0.0.2->tun_dst,set_field:0x1002->tun_id,output:2',
    ' cookie=0x77656176, duration=3.1s, table=0, n_packets=0, n_bytes=0, priority=0 actions=drop',
    ' cookie=0x7765616c, duration=1s, table=0, n_packets=2, n_bytes=196, idle_timeout=300, idle_age=0, priority=150,in_port=1,dl_dst=02:00:00:00:00:0c actions=output:2',
  ].join('\n')
  const s = parseDumpFlows(text)
  assert.is(s.length, 3)
  assert.equal({ ...s[0] }, {
    cookie: 0x77656176, table: 0, priority: 200, match: 'in_port=1,dl_dst=02:00:00:00:00:0b',
    actions: 'set_field:10.0.0.2->tun_dst,set_field:0x1002->tun_id,output:2', packets: 5, bytes: 490,
  })
  assert.equal([s[1].priority, s[1].match, s[1].actions], [0, '', 'drop'])
  assert.equal([s[2].priority, s[2].packets, s[2].cookie], [150, 2, 0x7765616c])
})

test('driver refuses with a reason when OVSDB cannot be reached', async () => {
  const clock = new FakeClock()
  const cfg = { ovsdbTarget: 'unix:/nonexistent/db.sock', datapathType: 'netdev' as const, self: 1 }
  const fdp = createFastdp(cfg, { clock, connect: () => Promise.reject(new Error('ENOENT')) })
  const err = await fdp.start().then(() => undefined, (e) => e)
  assert.instance(err, FastdpUnavailableError)
  assert.match(err.message, /^no OVS datapath on this host: cannot reach OVSDB at unix:\/nonexistent\/db.sock: ENOENT/)
  const r = await startFastdp(cfg, { clock, connect: () => Promise.reject(new Error('refused')) })
  assert.equal(r, { ok: false, reason: 'no OVS datapath on this host: cannot reach OVSDB at unix:/nonexistent/db.sock: refused' })
  assert.is(rundirFor('unix:/x/y/db.sock'), '/x/y')
  assert.throws(() => createFastdp({ ...cfg, self: 5000 }, { clock }), /12 bits/)
})

/**
 * An OVSDB that already holds the finished bridge (so ensureDatapath changes nothing) and whose
 * ovs-vswitchd has applied everything: enough for the driver's start().
 */
function fakeOvsdb(opts: { vxlanOfport?: number } = {}): OvsdbClient & { closedCount: number } {
  const ids = ['o1', 'b1', 'p1', 'p2', 'p3', 'i1', 'i2', 'i3']
  const u = (s: string): ['uuid', string] => ['uuid', `00000000-0000-4000-8000-${String(ids.indexOf(s)).padStart(12, '0')}`]
  const iface = (id: string, name: string, type: string, ofport: number | undefined, options: [string, string][] = []) =>
    ({ _uuid: u(id), name, type, options: ['map', options], ofport: ofport === undefined ? ['set', []] : ofport, error: ['set', []] })
  const tables: Record<string, unknown[]> = {
    Open_vSwitch: [{ _uuid: u('o1'), next_cfg: 1 }],
    Bridge: [{ _uuid: u('b1'), name: 'datapath', ports: ['set', [u('p1'), u('p2'), u('p3')]], datapath_type: 'netdev', fail_mode: 'secure' }],
    Port: [
      { _uuid: u('p1'), name: 'datapath', interfaces: u('i1') },
      { _uuid: u('p2'), name: 'vxlan-6784', interfaces: u('i2') },
      { _uuid: u('p3'), name: 'vethwe-datapath', interfaces: u('i3') },
    ],
    Interface: [
      iface('i1', 'datapath', 'internal', 65534),
      iface('i2', 'vxlan-6784', 'vxlan', opts.vxlanOfport ?? 2, [['dst_port', '6784'], ['key', 'flow'], ['remote_ip', 'flow']]),
      iface('i3', 'vethwe-datapath', '', 1),
    ],
  }
  const client = {
    closedCount: 0,
    listDbs: async () => ['Open_vSwitch'],
    getSchema: async () => ({}),
    async transact(_db: string, ops: Operation[]) {
      return ops.map((op) => {
        if (op.op === 'select') return { rows: tables[op.table] as never }
        if (op.op === 'mutate') return { count: 1 }
        throw new OvsdbError('not supported', `fake OVSDB: ${op.op}`)
      })
    },
    async monitor() {
      return { id: 'm', initial: { Open_vSwitch: { [u('o1')[1]]: { new: { cur_cfg: 1 } } } }, cancel: async () => {} }
    },
    echo: async () => [],
    close() { client.closedCount++ },
    isOpen: true,
    closed: new Promise<OvsdbError>(() => {}),
  }
  return client
}

function recordingProgrammer(): FlowProgrammer & { calls: string[]; changes: FlowChange[]; failNext: boolean } {
  const p = {
    calls: [] as string[], changes: [] as FlowChange[], failNext: false,
    async replaceAll(flows: readonly Flow[]) { p.calls.push(`replace ${flows.length}`) },
    async apply(c: FlowChange) {
      if (p.failNext) { p.failNext = false; throw new Error('bundle refused') }
      p.calls.push('apply'); p.changes.push(c)
    },
    async dump() { return [] },
    async removeAll() { p.calls.push('removeAll') },
  }
  return p
}

test('driver: one full sync at start, then only the diff of each change; a failed bundle is retried as part of the next diff', async () => {
  const db = fakeOvsdb()
  const prog = recordingProgrammer()
  const fdp = createFastdp({ ovsdbTarget: 'unix:/x/db.sock', datapathType: 'netdev', self: A }, {
    clock: new FakeClock(), connect: async () => db, programmer: () => prog,
  })
  const info = await fdp.start()
  assert.equal(info.ports, { bridge: 1, vxlan: 2 })
  assert.equal(prog.calls, ['replace 3'], 'flood (drop), tunnel-in, default drop')
  await fdp.setPeer(B, { ip: '10.0.0.2', macs: [macB] })
  await fdp.setPeer(C, { ip: '10.0.0.3', macs: [macC] })
  prog.changes.length = 0
  await fdp.setPeer(C, { macs: [macC, '02:00:00:00:01:0c'] }) // keeps its address
  assert.equal(prog.changes.map((c) => [c.add.map((f) => f.match), c.modify.length, c.delete.length]),
    [[['in_port=1,dl_dst=02:00:00:00:01:0c'], 0, 0]])
  prog.failNext = true
  const err = await fdp.removePeer(B).then(() => undefined, (e) => e)
  assert.match(String(err), 'bundle refused')
  await fdp.learnLocal(macA)
  const last = prog.changes[prog.changes.length - 1]
  assert.equal(last.delete.map((f) => f.match).sort(), [
    `in_port=1,dl_dst=${macB}`, 'in_port=2,tun_id=0x2/0xfff', 'in_port=2,tun_id=0x2/0xfff,tun_src=10.0.0.2', 'in_port=2,tun_src=10.0.0.2,tun_id=0x1/0xfff',
  ].sort(), 'B\'s removal went out with the next change')
  assert.equal(last.add.map((f) => f.match), [`in_port=1,dl_dst=${macA}`])
  assert.equal(fdp.installed(), computeFlows({ self: A, ports, peers: [{ shortId: C, ip: '10.0.0.3', macs: [macC, '02:00:00:00:01:0c'] }], localMacs: [macA] }))
  await fdp.stop()
  assert.is(prog.calls[prog.calls.length - 1], 'removeAll')
  assert.is(db.closedCount, 1)
})

test('driver with learning: learnt flows go in the same bundle as a path change (via either way, a route), never otherwise', async () => {
  const prog = recordingProgrammer()
  const fdp = createFastdp({ ovsdbTarget: 'unix:/x/db.sock', datapathType: 'netdev', self: A, learn: true }, {
    clock: new FakeClock(), connect: async () => fakeOvsdb(), programmer: () => prog,
  })
  await fdp.start()
  await fdp.setPeer(B, { ip: '10.0.0.2' })
  await fdp.setPeer(C, { ip: '10.0.0.3' })
  const forgets = () => prog.changes.map((c) => c.forgetLearnt === true)
  prog.changes.length = 0
  await fdp.setPeer(C, { via: 'sleeve' })
  await fdp.setPeer(C, { via: 'sleeve' }) // no change: no bundle at all
  await fdp.setPeer(C, { via: 'fastdp' })
  assert.equal(forgets(), [true, true], 'leaving and entering fastdp')
  assert.match(changeScript(prog.changes[0]), /^delete cookie=0x7765616c\/-1\n/, 'first line of the bundle')
  prog.changes.length = 0
  await fdp.setRoutes((d) => d) // same answers as no routes: nothing changes
  assert.equal(forgets(), [])
  await fdp.setRoutes((d) => (d === C ? B : d)) // C now through B: its relay flow and MAC routes change
  assert.equal(forgets(), [true])
  const relay = fdp.installed().find((f) => f.match === 'in_port=2,tun_id=0x3/0xfff')
  assert.ok(relay && relay.actions.includes('set_field:10.0.0.2->tun_dst'), JSON.stringify(relay))
  await fdp.stop()
})

test('driver: a burst of changes becomes one bundle; a change during a running bundle gets the next one', async () => {
  const prog = recordingProgrammer()
  const fdp = createFastdp({ ovsdbTarget: 'unix:/x/db.sock', datapathType: 'netdev', self: A }, {
    clock: new FakeClock(), connect: async () => fakeOvsdb(), programmer: () => prog,
  })
  await fdp.start()
  await Promise.all([B, C, D].map((id) => fdp.setPeer(id, { ip: `10.0.0.${id}` })))
  assert.is(prog.changes.length, 1, 'three peers, one bundle')
  assert.ok(fdp.installed().some((f) => f.match === 'in_port=2,tun_id=0x4/0xfff'))
  const first = fdp.setPeer(B, { ip: '10.0.0.22' })
  await Promise.resolve(); await Promise.resolve() // the first bundle is under way
  const second = fdp.setPeer(C, { ip: '10.0.0.33' })
  const third = fdp.setPeer(D, { ip: '10.0.0.44' })
  await Promise.all([first, second, third])
  assert.ok(prog.changes.length <= 3 && prog.changes.length >= 2, `${prog.changes.length} bundles`)
  assert.ok(fdp.installed().some((f) => f.actions.includes('10.0.0.44->tun_dst')), 'the last change is in')
  await fdp.stop()
})

test('driver: a port ovs-vswitchd never attaches makes start() refuse with the reason', async () => {
  const clock = new FakeClock()
  const db = fakeOvsdb({ vxlanOfport: -1 })
  const fdp = createFastdp({ ovsdbTarget: 'unix:/x/db.sock', datapathType: 'netdev', self: A, attachTimeoutMs: 500 }, {
    clock, connect: async () => db, programmer: () => recordingProgrammer(),
  })
  const started = fdp.start().then(() => undefined, (e) => e)
  for (let i = 0; i < 20; i++) { await new Promise((r) => setImmediate(r)); clock.advance(100) }
  const err = await started
  assert.instance(err, FastdpUnavailableError)
  assert.match(err.message, 'no OVS datapath on this host: vxlan-6784: failed to attach')
})

test.run()
