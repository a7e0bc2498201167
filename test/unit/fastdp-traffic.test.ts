/**
 * OVS fastdp's per-peer traffic from flow counters: which flows count for whom (tunnel flows by
 * their tun_dst, learnt ones by their loaded address, the per-peer tunnel-in flow by tun_src;
 * heartbeats not at all), totals that only grow across modified, re-made and vanished flows,
 * bounded by the peers kept; and the driver dumping before a change that deletes counting flows
 * once someone reads the counters (never before, and never before a path change).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { FlowTraffic, flowPeers } from '../../router/overlay/fastdp-traffic'
import { computeFlows, FLOW_COOKIE, LEARNT_COOKIE, PRIORITY, type Flow, type FlowChange } from '../../router/overlay/fastdp-flows'
import { parseDumpFlows, type FlowProgrammer, type FlowStat } from '../../router/overlay/ofctl'
import { createFastdp } from '../../router/overlay/fastdp'
import { FakeClock } from '../../router/deps'
import type { OvsdbClient } from '../../router/ovsdb'

const stat = (o: Partial<FlowStat>): FlowStat => ({ cookie: FLOW_COOKIE, table: 0, priority: 200, match: '', actions: 'drop', packets: 0, bytes: 0, ...o })

test('flowPeers: tunnel flows by tun_dst (the flood once per peer), learnt flows by the loaded address, tunnel-in by tun_src', () => {
  const flows = computeFlows({
    self: 1, ports: { bridge: 1, vxlan: 2, router: 3 }, localMacs: ['02:00:00:00:00:0a'], learn: true,
    peers: [{ shortId: 2, ip: '10.0.0.2', macs: ['02:00:00:00:00:0b'], heartbeat: true }, { shortId: 3, ip: '10.0.0.3', macs: [] }],
  })
  const who = new Map(flows.map((f) => [`${f.priority} ${f.match}`, flowPeers(f)]))
  assert.equal(who.get(`${PRIORITY.mac} in_port=1,dl_dst=02:00:00:00:00:0b`), { tx: ['10.0.0.2'] })
  assert.equal(who.get(`${PRIORITY.mac} in_port=1,dl_dst=02:00:00:00:00:0a`), undefined, 'a local MAC: dropped, nobody\'s')
  assert.equal(who.get(`${PRIORITY.flood} in_port=1`), { tx: ['10.0.0.2', '10.0.0.3'] })
  assert.equal(who.get(`${PRIORITY.peerRx} in_port=2,tun_src=10.0.0.3,tun_id=0x1/0xfff`), { rx: '10.0.0.3' })
  assert.equal(who.get(`${PRIORITY.heartbeat} in_port=2,tun_id=0x2001,dl_type=0x88b5`), undefined, 'heartbeats are not traffic')
  assert.equal(who.get(`${PRIORITY.toBridge} in_port=2,tun_id=0x1/0xfff`), undefined, 'from nobody in particular')
  assert.equal(who.get(`${PRIORITY.relay} in_port=2,tun_id=0x3/0xfff`), { tx: ['10.0.0.3'] }, 'a relayed frame is sent to the hop')
  // as ovs-ofctl prints a flow the datapath learnt, and our own tunnel-in flow with its fields reordered
  const dump = parseDumpFlows([
    ` cookie=0x${LEARNT_COOKIE.toString(16)}, duration=3.1s, table=0, n_packets=4, n_bytes=4168, idle_timeout=300, idle_age=0, priority=150,in_port=1,dl_dst=02:00:00:00:00:0b actions=load:0xa000002->NXM_NX_TUN_IPV4_DST[],load:0x1002->NXM_NX_TUN_ID[],output:2`,
    ` cookie=0x${FLOW_COOKIE.toString(16)}, duration=9.0s, table=0, n_packets=5, n_bytes=5210, idle_age=0, priority=105,tun_src=10.0.0.2,tun_id=0x1/0xfff,in_port=2 actions=output:1`,
  ].join('\n'))
  assert.equal(dump.map(flowPeers), [{ tx: ['10.0.0.2'] }, { rx: '10.0.0.2' }])
})

test('FlowTraffic: totals grow by each flow\'s delta, credited to whom it tunnels to now; re-made flows; bounded by retain', () => {
  const t = new FlowTraffic()
  const toB = (packets: number, ip = '10.0.0.2') => stat({ match: 'in_port=1,dl_dst=b', actions: `set_field:${ip}->tun_dst,output:2`, packets, bytes: packets * 100 })
  const flood = (packets: number) => stat({ priority: 10, match: 'in_port=1', actions: 'set_field:10.0.0.2->tun_dst,set_field:10.0.0.3->tun_dst,output:2', packets, bytes: packets * 60 })
  const fromB = (packets: number) => stat({ priority: PRIORITY.peerRx, match: 'in_port=2,tun_src=10.0.0.2,tun_id=0x1/0xfff', packets, bytes: packets * 100 })
  t.sample([toB(3), flood(1), fromB(2)])
  assert.equal(Object.fromEntries(t.byAddress()), {
    '10.0.0.2': { txPackets: 4, txBytes: 360, rxPackets: 2, rxBytes: 200 },
    '10.0.0.3': { txPackets: 1, txBytes: 60, rxPackets: 0, rxBytes: 0 },
  })
  // B's MAC now behind C (a modify keeps the flow's counters): only the growth goes to C
  t.sample([toB(5, '10.0.0.3'), flood(1), fromB(2)])
  assert.equal(t.byAddress().get('10.0.0.2')?.txPackets, 4)
  assert.equal(t.byAddress().get('10.0.0.3')?.txPackets, 3)
  // a flow gone and made again between two dumps: its counter restarted, all it holds is new
  t.sample([toB(1, '10.0.0.3'), flood(1)])
  assert.equal(t.byAddress().get('10.0.0.3')?.txPackets, 4)
  t.sample([])
  assert.equal(t.byAddress().get('10.0.0.2')?.rxPackets, 2, 'totals outlive the flows')
  t.retain(new Set(['10.0.0.3']))
  assert.equal([...t.byAddress().keys()], ['10.0.0.3'], 'a peer gone: its totals go')
})

function fakeDb(): OvsdbClient {
  const u = (i: number): ['uuid', string] => ['uuid', `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`]
  const tables: Record<string, unknown[]> = {
    Open_vSwitch: [{ _uuid: u(0), next_cfg: 1 }],
    Bridge: [{ _uuid: u(1), name: 'datapath', ports: ['set', [u(2), u(3), u(4)]], datapath_type: 'netdev', fail_mode: 'secure' }],
    Port: [{ _uuid: u(2), name: 'datapath', interfaces: u(5) }, { _uuid: u(3), name: 'vxlan-6784', interfaces: u(6) }, { _uuid: u(4), name: 'vethwe-datapath', interfaces: u(7) }],
    Interface: [
      { _uuid: u(5), name: 'datapath', type: 'internal', options: ['map', []], ofport: 65534, error: ['set', []] },
      { _uuid: u(6), name: 'vxlan-6784', type: 'vxlan', options: ['map', [['dst_port', '6784'], ['key', 'flow'], ['remote_ip', 'flow']]], ofport: 2, error: ['set', []] },
      { _uuid: u(7), name: 'vethwe-datapath', type: '', options: ['map', []], ofport: 1, error: ['set', []] },
    ],
  }
  return {
    listDbs: async () => ['Open_vSwitch'], getSchema: async () => ({}),
    async transact(_db: string, ops: Array<{ op: string; table: string }>) { return ops.map((op) => (op.op === 'select' ? { rows: tables[op.table] } : { count: 1 })) },
    async monitor() { return { id: 'm', initial: { Open_vSwitch: { [u(0)[1]]: { new: { cur_cfg: 1 } } } }, cancel: async () => {} } },
    echo: async () => [], close() {}, isOpen: true, closed: new Promise(() => {}),
  } as unknown as OvsdbClient
}

test('driver: counts only once read; then a change deleting tunnel flows dumps their counters first', async () => {
  const calls: string[] = []
  let table: Flow[] = []
  const counts = new Map<string, number>()
  const prog: FlowProgrammer = {
    async replaceAll(flows) { calls.push('replace'); table = [...flows] },
    async apply(c: FlowChange) {
      calls.push('apply')
      const gone = new Set(c.delete.map((f) => `${f.priority} ${f.match}`))
      table = [...table.filter((f) => !gone.has(`${f.priority} ${f.match}`)), ...c.add]
    },
    async dump() {
      calls.push('dump')
      return table.map((f) => stat({ priority: f.priority, match: f.match, actions: f.actions, packets: counts.get(f.match) ?? 0, bytes: (counts.get(f.match) ?? 0) * 100 }))
    },
    async removeAll() {},
  }
  const fdp = createFastdp({ ovsdbTarget: 'unix:/x/db.sock', datapathType: 'netdev', self: 1 }, { clock: new FakeClock(), connect: async () => fakeDb(), programmer: () => prog })
  await fdp.start()
  await fdp.setPeer(2, { ip: '10.0.0.2', macs: ['02:00:00:00:00:0b'] })
  await fdp.removePeer(2)
  await fdp.setPeer(2, { ip: '10.0.0.2', macs: ['02:00:00:00:00:0b'] })
  assert.not.ok(calls.includes('dump'), 'nobody reads the counters: no change costs a dump')
  counts.set('in_port=1,dl_dst=02:00:00:00:00:0b', 7)
  counts.set('in_port=2,tun_src=10.0.0.2,tun_id=0x1/0xfff', 3)
  assert.equal(Object.fromEntries(await fdp.traffic(new Set(['10.0.0.2']))), { '10.0.0.2': { txPackets: 7, txBytes: 700, rxPackets: 3, rxBytes: 300 } })
  counts.set('in_port=1,dl_dst=02:00:00:00:00:0b', 9) // two more frames, then the MAC moves away from the peer
  calls.length = 0
  await fdp.setPeer(2, { macs: [] })
  assert.equal(calls, ['dump', 'apply'], 'the counters of the flows about to go are read first')
  assert.equal(Object.fromEntries(await fdp.traffic(new Set(['10.0.0.2']))), { '10.0.0.2': { txPackets: 9, txBytes: 900, rxPackets: 3, rxBytes: 300 } })
  calls.length = 0
  await fdp.removePeer(2)
  assert.equal(calls, ['apply'], 'a path change (the peer leaves fastdp) does not wait for a dump')
  assert.equal(Object.fromEntries(await fdp.traffic(new Set())), {}, 'and the peer\'s totals are forgotten once it is not kept')
  await fdp.stop()
})

test.run()
