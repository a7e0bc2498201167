/**
 * The overlay seam: NullOverlay (never carries a peer, says why), TunnelHeartbeats (fast timings
 * with heartbeats heard as they arrive, slow with counters), and OVS fastdp as an Overlay (its
 * per-peer connection maps onto the datapath driver; a failed start is a reason, not a throw).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { FakeClock, nullLogger } from '../../router/deps'
import {
  NullOverlay, TunnelHeartbeats, createOvsOverlay, type Fastdp, type FastdpPeerInfo, type HeartbeatSender,
} from '../../router/overlay'

test('NullOverlay: unavailable with its reason, a connection that never forwards', async () => {
  const n = new NullOverlay('no OVS datapath (x)')
  assert.is(n.unavailable(), 'no OVS datapath (x)')
  assert.is(n.statusLine(), 'off: no OVS datapath (x)')
  const c = n.connect()
  await c.start()
  assert.equal(c.health(0), { ok: false, why: 'no OVS datapath (x)' })
  await c.forward(false)
  try { await c.forward(true); assert.unreachable('forward(true) must refuse') } catch (e) { assert.match((e as Error).message, /no OVS datapath/) }
  n.setWhy('stopped')
  assert.equal(n.report(), { Unavailable: 'stopped' })
})

test('TunnelHeartbeats: heard as they arrive → 100 ms / 400 ms; counters → 1 s, fed each tick', async () => {
  const clock = new FakeClock(1_000)
  const sent: number[] = []
  let hear: ((src: number, full: boolean) => void) | undefined
  const fast = new TunnelHeartbeats({ send: async (p) => { sent.push(p.shortId) }, onReceive: (fn) => { hear = fn } }, clock, undefined, 'packet socket')
  assert.is(fast.intervalMs, 100)
  assert.is(fast.via, 'packet socket')
  fast.health.add(2, clock.now())
  await fast.tick([{ shortId: 2, ip: '10.0.0.2', peer: 'p2' }, { shortId: 3, ip: '10.0.0.3', peer: 'p3' }], () => assert.unreachable())
  assert.equal(sent, [2, 3])
  hear!(2, true)
  assert.ok(fast.health.rxOk(2, clock.now()))
  clock.advance(500)
  assert.not.ok(fast.health.rxOk(2, clock.now()), 'no heartbeat for 500 ms: down')

  let count = 0
  const errors: string[] = []
  const slow = new TunnelHeartbeats({ send: async () => { throw new Error('blocked') } }, clock, async () => new Map([[2, count]]))
  assert.is(slow.intervalMs, 1_000)
  assert.is(slow.via, 'flow counters')
  slow.health.add(2, clock.now())
  await slow.tick([{ shortId: 2, ip: '10.0.0.2', peer: 'p2' }], (peer, err) => errors.push(`${peer}: ${err.message}`))
  count = 1
  await slow.tick([], () => undefined)
  assert.equal(errors, ['p2: blocked'])
  assert.ok(slow.health.rxOk(2, clock.now()), 'the counter grew: a heartbeat arrived')
})

function fakeFastdp(calls: string[]): Fastdp {
  return {
    async start() { return undefined as never },
    async setPeer(id: number, p: FastdpPeerInfo) { calls.push(`set ${id} ${JSON.stringify(p)}`) },
    async removePeer(id: number) { calls.push(`remove ${id}`) },
    async learnLocal(mac: string) { calls.push(`local ${mac}`) },
    async forgetLocal() {},
    async setRoutes() { calls.push('routes') },
    async refresh() {},
    async verify() { return false },
    installed: () => [],
    stats: async () => [],
    traffic: async (keep) => new Map([['10.0.0.2', { txBytes: 1042, txPackets: 1, rxBytes: 0, rxPackets: 0 }]].filter(([ip]) => !keep || keep.has(ip as string)) as never),
    info: () => ({ bridge: 'datapath', datapathType: 'netdev', ports: { bridge: 1, vxlan: 2, router: 3 }, portNames: {}, flows: 7, peers: 1, localMacs: 1 }),
    async stop() { calls.push('stop') },
  }
}

test('OVS fastdp as an Overlay: connection start/forward/stop drive the datapath; failure is a reason', async () => {
  const calls: string[] = []
  const sender: HeartbeatSender = { send: async () => undefined, onReceive: () => undefined }
  const o = createOvsOverlay({ ovsdb: 'unix:/x/db.sock', mtu: 1376 }, {
    clock: new FakeClock(), logger: nullLogger,
    startFastdp: async () => ({ ok: true, fastdp: fakeFastdp(calls), info: {} as never }),
    heartbeatSender: () => sender,
  })
  assert.is(o.unavailable(), 'not started')
  await o.start(1)
  assert.is(o.unavailable(), 'not started', 'no datapath type chosen: nothing starts')
  o.datapathType = 'netdev'
  o.useRouterPort('vethwe-ovsrtr', 'aa:bb:cc:dd:ee:01')
  await o.start(1)
  assert.is(o.unavailable(), undefined)
  assert.equal(calls, ['local aa:bb:cc:dd:ee:01'])
  assert.is(o.heartbeats?.()?.intervalMs, 100)
  const c = o.connect({ shortId: 2, peer: 'p2', ip: '10.0.0.2', localIp: '10.0.0.1' })
  await c.start()
  await c.forward(true)
  assert.equal(await o.traffic!(), [{ peer: 'p2', txBytes: 1042, txPackets: 1, rxBytes: 0, rxPackets: 0 }], 'the datapath\'s counters by peer name')
  await c.forward(false)
  await c.stop()
  assert.equal(await o.traffic!(), [], 'a peer gone is not reported')
  assert.equal(calls.slice(1), [
    'set 2 {"ip":"10.0.0.2","via":"sleeve","heartbeat":true,"localIp":"10.0.0.1"}',
    'set 2 {"via":"fastdp"}', 'set 2 {"via":"sleeve"}', 'remove 2',
  ])
  assert.equal(c.health(0), { ok: false, why: 'no fastdp heartbeats' }, 'the switch adds a peer to the health, not connect()')
  assert.match(o.statusLine(), /^datapath \(netdev\) 7 flows, 1 peers, ovsdb unix:\/x\/db.sock$/)
  await o.stop()
  assert.is(o.unavailable(), 'stopped')

  const bad = createOvsOverlay({ ovsdb: 'unix:/x/db.sock', mtu: 1376 }, {
    clock: new FakeClock(), logger: nullLogger, startFastdp: async () => ({ ok: false, reason: 'no OVS datapath on this host: ports not attached' }),
  })
  bad.datapathType = 'system'
  bad.useRouterPort('vethwe-ovsrtr', undefined)
  await bad.start(1)
  assert.is(bad.unavailable(), 'no OVS datapath: ports not attached')
  assert.is(bad.statusLine(), 'off: no OVS datapath: ports not attached')
})

test.run()
