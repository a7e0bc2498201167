/**
 * fastdp on real Open vSwitch (userspace datapath) in three lab hosts: per host the weave bridge
 * (router/net, linked to the datapath), the OVS bridge `datapath` and its flows (our driver,
 * talking OVSDB to the host's ovsdb-server and OpenFlow through ovs-ofctl), and one "container"
 * (a namespace of its own, attached with router/net). The driver is told the other hosts'
 * addresses, short IDs and container MACs; containers then talk across hosts through vxlan-6784.
 */
import type { ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { createLab, labUnavailableReason, waitFor, delay, iperf, type Lab, type LabHost } from './index'
import { run } from './exec'
import { memoryLogger, systemClock } from '../../router/deps'
import { createNetHost } from '../../router/net'
import { createFastdp, tunnelKey, FastdpUnavailableError, LEARNT_COOKIE, type Fastdp, type FlowStat } from '../../router/overlay'
import { createOpenFlowConn } from '../../router/overlay/fastdp-openflow'
import { openflowHeartbeats } from '../../router/overlay/fastdp-health'
import { FLOW_COOKIE } from '../../router/overlay/fastdp-flows'
import { skipFile } from '../skip'

interface Node {
  host: LabHost
  id: number
  fdp: Fastdp
  sleeper: ChildProcess
  pid: number
  ip: string
  mac: string
  bridgeMac: string
}

const why = labUnavailableReason({ ovs: true })
const test = suite('fastdp lab')
let lab: Lab | undefined
const nodes: Node[] = []
const MTU = 1376

/** Run argv in a node's container namespace. */
const inContainer = (n: Node, argv: string[], allowFail = false) =>
  run(['nsenter', `--net=/proc/${n.pid}/ns/net`, '--', ...argv], { allowFail, timeoutMs: 30_000 })
const ping = async (from: Node, to: Node, count = 1) =>
  (await inContainer(from, ['busybox', 'ping', '-c', String(count), '-W', '2', to.ip.split('/')[0]], true)).code === 0

const flowFor = (stats: FlowStat[], needle: string) => stats.find((s) => s.match.includes(needle))
/** ovs-vswitchd pulls datapath counters into the flow table every so often: poll for the value. */
const packetsAtLeast = (n: Node, pick: (s: FlowStat[]) => FlowStat | undefined, min: number, what: string) =>
  waitFor(what, async () => { const f = pick(await n.fdp.stats()); return f && f.packets >= min ? f : undefined }, 10_000, 200)
const floodFlow = (s: FlowStat[]) => s.find((f) => f.priority === 10)

async function setup(): Promise<void> {
  lab = await createLab({ hosts: 3, ovs: true })
  for (const [i, host] of lab.hosts.entries()) {
    const id = i + 1
    const net = createNetHost({ netns: host.ns })
    const br = await net.ensureBridge({ mtu: MTU, routerLink: 'datapath', controlPort: null })
    assert.is(br.datapathPort, 'vethwe-datapath')
    // a "container": a namespace of its own, held by a sleep that the lab kills at teardown
    // (the lab dir in its command line lets the lab's sweep find it: it is in no host namespace)
    const sleeper = host.spawn(['unshare', '--net', 'sh', '-c', `sleep 900; : ${host.dir}/`])
    const pid = sleeper.pid!
    await waitFor(`container ns of ${host.name}`, () => {
      try { return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sh' } catch { return false }
    }, 10_000, 20)
    const ip = `10.40.0.${id}/24`
    const att = await net.attach({ netns: { pid }, containerId: `fdp${id}`, addresses: [ip] })
    const fdp = createFastdp({
      ovsdbTarget: `unix:${host.ovsSocket}`, datapathType: 'netdev', self: id, selfIp: host.underlayIp, mtu: MTU,
    }, {
      clock: systemClock(),
      // The userspace datapath reads no virtio headers: the veth feeding it must send whole frames.
      // (The daemon does this itself; this test runs fastdp outside the host's namespace.)
      wholeFrames: async (port) => {
        await host.exec(['ethtool', '-K', port === 'vethwe-datapath' ? 'vethwe-bridge' : port, 'tx', 'off'], { allowFail: true })
        return undefined
      },
    })
    nodes.push({ host, id, fdp, sleeper, pid, ip, mac: att.mac, bridgeMac: br.mac })
    const info = await fdp.start()
    assert.ok(info.ports.bridge > 0 && info.ports.vxlan > 0, JSON.stringify(info))
    await fdp.learnLocal(att.mac)
    await fdp.learnLocal(br.mac)
  }
  for (const a of nodes) {
    for (const b of nodes) if (a !== b) await a.fdp.setPeer(b.id, { ip: b.host.underlayIp, macs: [b.mac, b.bridgeMac] })
  }
}

if (why) {
  skipFile('fastdp through Open vSwitch', why, test)
} else {
  test.before(async () => {
    try { await setup() } catch (err) { await lab?.teardown(); lab = undefined; throw err }
  })
  test.after(async () => {
    try {
      for (const n of nodes) await n.fdp.stop({ removeBridge: true }).catch(() => {})
    } finally {
      for (const n of nodes) { try { process.kill(-n.sleeper.pid!, 'SIGKILL') } catch { /* gone */ } }
      await lab?.teardown()
    }
  })

  test('ovs-vsctl shows datapath with vethwe-datapath and vxlan-6784; weave has vethwe-bridge; our flows are in', async () => {
    const h = nodes[0].host
    const show = (await h.ovsVsctl(['show'])).stdout
    assert.match(show, /Bridge datapath/)
    assert.match(show, /Port vethwe-datapath/)
    assert.match(show, /Port vxlan-6784/)
    assert.match(show, /fail_mode: secure/)
    const master = JSON.parse((await h.exec(['ip', '-j', 'link', 'show', 'dev', 'vethwe-bridge'])).stdout)[0].master
    assert.is(master, 'weave')
    const stats = await nodes[0].fdp.stats()
    assert.is(stats.length, nodes[0].fdp.installed().length, 'the switch holds exactly the table we computed')
  })

  test('containers ping across hosts through the vxlan tunnel (flow counters, UDP 6784 on the underlay)', async () => {
    const [n1, n2, n3] = nodes
    // userspace tunnels resolve the remote underlay address first: allow a few tries
    await waitFor('c1 → c2', () => ping(n1, n2), 20_000, 200)
    await waitFor('c1 → c3', () => ping(n1, n3), 20_000, 200)
    await waitFor('c2 → c3', () => ping(n2, n3), 20_000, 200)
    // the userspace datapath puts tunnel packets straight onto br-phy's port eth0 (not through br-phy's own device)
    const cap = run(['timeout', '10', ...['ip', 'netns', 'exec', n1.host.ns], 'tcpdump', '-n', '-c', '3', '-i', 'eth0',
      'udp', 'dst', 'port', '6784', 'and', 'dst', 'host', n2.host.underlayIp], { allowFail: true, timeoutMs: 15_000 })
    await delay(1000) // tcpdump is listening
    const before = flowFor(await n1.fdp.stats(), `dl_dst=${n2.mac}`)!
    assert.ok(await ping(n1, n2, 3))
    const out = await cap
    // (tcpdump may decode port 6784 as BFD: only the addresses and port matter here)
    assert.match(out.stdout, new RegExp(`${n1.host.underlayIp.replace(/\./g, '\\.')}\\.\\d+ > ${n2.host.underlayIp.replace(/\./g, '\\.')}\\.6784: `), out.stdout + out.stderr)
    const after = await packetsAtLeast(n1, (s) => flowFor(s, `dl_dst=${n2.mac}`), before.packets + 3, 'unicast flow counter')
    assert.match(after.actions, `set_field:0x${tunnelKey(1, 2).toString(16)}->tun_id`)
    assert.ok(after.packets >= before.packets + 3, `unicast flow to c2: ${before.packets} → ${after.packets}`)
    await packetsAtLeast(n2, (s) => flowFor(s, 'tun_id=0x2/0xfff'), 1, 'c2\'s host delivered tunnel frames addressed to it')
  })

  test('TCP across the tunnel at the bridge MTU (room left for vxlan overhead)', async () => {
    const [n1, n2] = nodes
    // a full-size frame with DF gets through (1376 inner + 50 vxlan overhead fits the 1500 underlay)
    // (OVS does not fragment: a frame too big for the underlay would simply vanish)
    const big = await inContainer(n1, ['busybox', 'ping', '-c', '2', '-W', '2', '-s', String(MTU - 28), n2.ip.split('/')[0]], true)
    assert.is(big.code, 0, big.stdout + big.stderr)
    const srv = n2.host.spawn(['nsenter', `--net=/proc/${n2.pid}/ns/net`, '--', 'iperf3', '-s', '-1', '-p', '5201'])
    try {
      await waitFor('iperf3 server in c2', async () => (await inContainer(n2, ['ss', '-Hltn', 'sport = :5201'], true)).stdout.trim().length > 0, 10_000, 50)
      const r = await inContainer(n1, ['iperf3', '-c', n2.ip.split('/')[0], '-p', '5201', '-t', '2', '-J'], true)
      const j = JSON.parse(r.stdout || '{}') as { error?: string; end?: { sum_received?: { bytes: number; bits_per_second: number }; sum_sent?: { retransmits?: number } } }
      assert.not.ok(j.error, j.error)
      const got = j.end?.sum_received
      assert.ok(got && got.bytes > 1_000_000, `TCP moved ${got?.bytes} bytes`)
      // for the record, not asserted: the same hosts' underlay (through br-phy) in the same run
      const under = await iperf(n2.host, n1.host, n2.host.underlayIp, { seconds: 2, port: 5202 })
      console.log(`fastdp (userspace OVS) TCP c1 → c2: ${(got.bits_per_second / 1e9).toFixed(2)} Gbit/s, ${j.end?.sum_sent?.retransmits} retransmits;` +
        ` underlay h1 → h2 through br-phy: ${under.gbps.toFixed(2)} Gbit/s, ${under.retransmits} retransmits`)
    } finally {
      srv.kill('SIGKILL')
    }
  })

  test('broadcast: ARP resolves across hosts through the flood flow', async () => {
    const [n1, , n3] = nodes
    await inContainer(n1, ['ip', 'neigh', 'flush', 'dev', 'ethwe'])
    await delay(1500) // counters settle
    const flood = floodFlow(await n1.fdp.stats())!
    assert.ok(await ping(n1, n3))
    const neigh = (await inContainer(n1, ['ip', 'neigh', 'show', n3.ip.split('/')[0], 'dev', 'ethwe'])).stdout
    assert.match(neigh, n3.mac, `c1 learnt c3's MAC by ARP: ${neigh}`)
    const floodAfter = await packetsAtLeast(n1, floodFlow, flood.packets + 1, 'the ARP request went through the flood flow')
    // one copy per peer, each with its own key
    assert.match(floodAfter.actions, `0x${tunnelKey(1, 2).toString(16)}->tun_id`)
    assert.match(floodAfter.actions, `0x${tunnelKey(1, 3).toString(16)}->tun_id`)
  })

  test('a change for one peer leaves the other peers\' flows (and counters) alone', async () => {
    const [n1, n2, n3] = nodes
    assert.ok(await ping(n1, n2, 2))
    const before = await n1.fdp.stats()
    const c2Before = flowFor(before, `dl_dst=${n2.mac}`)!
    assert.ok(c2Before.packets > 0)
    // peer 3 gets another MAC, then is removed and re-added: peer 2's flows must survive all of it
    await n1.fdp.setPeer(3, { macs: [n3.mac, n3.bridgeMac, '02:00:00:00:33:33'] })
    let mid = await n1.fdp.stats()
    assert.ok(flowFor(mid, 'dl_dst=02:00:00:00:33:33'), 'new MAC flow added')
    await n1.fdp.removePeer(3)
    mid = await n1.fdp.stats()
    assert.not.ok(flowFor(mid, `dl_dst=${n3.mac}`), 'peer 3\'s flows deleted')
    assert.not.ok(await ping(n1, n3), 'no path to a removed peer')
    await n1.fdp.setPeer(3, { ip: n3.host.underlayIp, macs: [n3.mac, n3.bridgeMac] })
    const after = await n1.fdp.stats()
    const c2After = flowFor(after, `dl_dst=${n2.mac}`)!
    assert.ok(c2After.packets >= c2Before.packets, `counter survived: ${c2Before.packets} → ${c2After.packets}`)
    assert.ok(c2After.packets > 0)
    const floodAfter = after.find((s) => s.priority === 10)!
    const floodBefore = before.find((s) => s.priority === 10)!
    assert.ok(floodAfter.packets >= floodBefore.packets, 'the flood flow was modified, not re-added')
    assert.is(after.length, n1.fdp.installed().length)
    await waitFor('c1 → c3 again', () => ping(n1, n3), 10_000, 200)
  })

  test('verify: flows lost in the switch (as after an ovs-vswitchd restart) are put back', async () => {
    const [n1, n2] = nodes
    assert.is(await n1.fdp.verify(), false, 'nothing to do while the table is intact')
    await n1.host.ovsOfctl(['del-flows', 'datapath'])
    assert.not.ok(await ping(n1, n2), 'no flows, no traffic')
    assert.is(await n1.fdp.verify(), true)
    assert.is((await n1.fdp.stats()).length, n1.fdp.installed().length)
    await waitFor('c1 → c2 after verify', () => ping(n1, n2), 10_000, 200)
  })

  test('relay: with the direct path h1 ⇄ h3 cut, frames go through h2 with their keys intact', async () => {
    const [n1, n2, n3] = nodes
    const block = (h: LabHost, other: LabHost) => h.exec(['nft', '-f', '-'], {
      // OVS's userspace datapath sends through a packet socket on eth0: only the device's egress hook sees it
      input: `table netdev fdptest {\n chain out {\n  type filter hook egress device "eth0" priority 0;\n  ip daddr ${other.underlayIp} udp dport 6784 drop\n }\n}\n`,
    })
    try {
      await block(n1.host, n3.host)
      await block(n3.host, n1.host)
      await delay(200)
      assert.not.ok(await ping(n1, n3), 'direct path is cut')
      await n1.fdp.setRoutes((d) => (d === 3 ? 2 : d))
      await n3.fdp.setRoutes((d) => (d === 1 ? 2 : d))
      // the relay flow, not its loop guard (which names tun_src too; the dump's order is the switch's)
      const relay = (stats: FlowStat[]) => stats.find((s) => s.match.includes('tun_id=0x3/0xfff') && !s.match.includes('tun_src'))
      const relayBefore = relay(await n2.fdp.stats())?.packets ?? 0
      await waitFor('c1 → c3 through h2', () => ping(n1, n3), 15_000, 200)
      const relayAfter = relay(await n2.fdp.stats())!.packets
      assert.ok(relayAfter > relayBefore, `h2 relayed frames for h3: ${relayBefore} → ${relayAfter}`)
    } finally {
      for (const n of [n1, n3]) await n.host.exec(['nft', 'delete', 'table', 'netdev', 'fdptest'], { allowFail: true })
      await n1.fdp.setRoutes(undefined)
      await n3.fdp.setRoutes(undefined)
    }
    await waitFor('c1 → c3 direct again', () => ping(n1, n3), 10_000, 200)
  })

  test('MAC learning in the datapath: with no MAC lists, the first exchange floods and the replies are learnt', async () => {
    const [n1, n2] = nodes
    for (const n of [n1, n2]) {
      await n.fdp.stop()
      n.fdp = createFastdp({
        ovsdbTarget: `unix:${n.host.ovsSocket}`, datapathType: 'netdev', self: n.id, selfIp: n.host.underlayIp, mtu: MTU, learn: true,
      }, { clock: systemClock() })
      await n.fdp.start()
      await n.fdp.learnLocal(n.mac)
      await n.fdp.learnLocal(n.bridgeMac)
    }
    await n1.fdp.setPeer(2, { ip: n2.host.underlayIp })
    await n2.fdp.setPeer(1, { ip: n1.host.underlayIp })
    assert.not.ok(flowFor(await n1.fdp.stats(), `dl_dst=${n2.mac}`), 'no flow for c2 before learning')
    await inContainer(n1, ['ip', 'neigh', 'flush', 'dev', 'ethwe'])
    await waitFor('c1 → c2 with learning', () => ping(n1, n2, 2), 15_000, 200)
    const learnt = await waitFor('a learnt flow toward c2 on h1', async () =>
      (await n1.fdp.stats()).find((f) => f.cookie === LEARNT_COOKIE && f.match.includes(n2.mac)), 10_000, 200)
    assert.is(learnt.priority, 150)
    // toward h2's address, with the swapped key 1 → 2 (OVS shows the learnt actions as loads)
    const ipHex = '0x' + n2.host.underlayIp.split('.').map((o) => Number(o).toString(16).padStart(2, '0')).join('')
    assert.ok(learnt.actions.includes(`load:${ipHex}->NXM_NX_TUN_IPV4_DST[]`), learnt.actions)
    assert.ok(learnt.actions.includes('load:0x2->NXM_NX_TUN_ID[0..11]') && learnt.actions.includes('load:0x1->NXM_NX_TUN_ID[12..23]'), learnt.actions)
    assert.ok(await ping(n1, n2, 3))
    await packetsAtLeast(n1, (st) => st.find((f) => f.cookie === LEARNT_COOKIE && f.match.includes(n2.mac)), 1, 'unicast through the learnt flow')
  })

  test('heartbeats over one OpenFlow connection: a packet-out on h1 is a packet-in on h2; delete by cookie at once', async () => {
    const [n1, n2] = nodes
    await n2.fdp.setPeer(1, { heartbeat: true })
    const mgmt = (n: Node) => path.join(path.dirname(n.host.ovsSocket!), 'datapath.mgmt')
    const ofLog = memoryLogger()
    const c1 = createOpenFlowConn(mgmt(n1), { clock: systemClock(), logger: ofLog })
    const c2 = createOpenFlowConn(mgmt(n2), { clock: systemClock() })
    const hb1 = openflowHeartbeats(c1, { self: 1, ports: () => n1.fdp.info()?.ports, frameBytes: MTU + 14, cookie: FLOW_COOKIE })
    const hb2 = openflowHeartbeats(c2, { self: 2, ports: () => n2.fdp.info()?.ports, frameBytes: MTU + 14, cookie: FLOW_COOKIE })
    const got: number[] = []
    hb2.onReceive!((src) => got.push(src))
    try {
      await waitFor('OpenFlow connections', () => c1.connected() && c2.connected(), 10_000, 50)
      await waitFor('a full-size heartbeat h1 → h2 arrives as a packet-in', async () => {
        await hb1.send({ shortId: 2, ip: n2.host.underlayIp })
        return got.length > 0
      }, 10_000, 100)
      const n = got.length
      for (let i = 0; i < 10; i++) { await hb1.send({ shortId: 2, ip: n2.host.underlayIp }); await delay(20) }
      await waitFor('ten more', () => got.length >= n + 10, 5_000, 50)
      assert.equal([...new Set(got)], [1], 'from h1 only')
      // the same heartbeat flow counts them too (what a counter-reading sender would use)
      await packetsAtLeast(n2, (st) => st.find((f) => f.priority === 120), n + 10, 'heartbeat flow counter')
      // learnt flows (from the MAC learning test) go with one FLOW_MOD
      await inContainer(n1, ['ip', 'neigh', 'flush', 'dev', 'ethwe'])
      assert.ok(await ping(n1, n2, 2))
      await waitFor('a learnt flow on h1', async () => (await n1.fdp.stats()).some((f) => f.cookie === LEARNT_COOKIE), 10_000, 100)
      // (stray frames from h2, e.g. IPv6 neighbour discovery, may teach a flow again right after:
      // a flow learnt before the delete is one older than the delete)
      const learntAges = async () => ((await n1.host.ovsOfctl(['dump-flows', 'datapath', `cookie=0x${LEARNT_COOKIE.toString(16)}/-1`])).stdout
        .match(/duration=([\d.]+)s/g) ?? []).map((d) => Number(d.slice('duration='.length, -1)))
      await delay(1000)
      assert.ok(c1.deleteByCookie(LEARNT_COOKIE))
      const t0 = Date.now()
      await waitFor('learnt flows gone', async () => (await learntAges()).every((age) => age * 1000 < Date.now() - t0 + 100), 5_000, 50)
        .catch(async (err) => { throw new Error(`${(err as Error).message}\n${ofLog.lines.join('\n')}\n${(await n1.host.ovsOfctl(['dump-flows', 'datapath'])).stdout}`) })
      assert.is((await n1.fdp.stats()).filter((f) => f.cookie !== LEARNT_COOKIE).length, n1.fdp.installed().length, 'our own flows stay')
    } finally {
      hb1.close?.()
      hb2.close?.()
      await n2.fdp.setPeer(1, { heartbeat: false })
    }
  })

  test('stop removes our flows and, when asked, the bridge; a system datapath that cannot exist is refused with a reason', async () => {
    const n3 = nodes[2]
    await n3.fdp.stop({ removeBridge: true })
    const exists = await n3.host.ovsVsctl(['br-exists', 'datapath'], { allowFail: true })
    assert.is(exists.code, 2, 'bridge gone')
    // this kernel has no openvswitch module: the kernel datapath cannot attach any port
    const bad = createFastdp({
      ovsdbTarget: `unix:${n3.host.ovsSocket}`, datapathType: 'system', self: 3, attachTimeoutMs: 3000,
    }, { clock: systemClock() })
    const err = await bad.start().then(() => undefined, (e) => e)
    assert.instance(err, FastdpUnavailableError)
    assert.match(err.message, /^no OVS datapath on this host: /)
    const gone = await n3.host.ovsVsctl(['br-exists', 'datapath'], { allowFail: true })
    assert.is(gone.code, 2, 'a refused start leaves no bridge behind')
  })
}

test.run()
