import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { FakeClock, nullLogger } from '../../router/deps'
import { ApiRouter } from '../../router/api'
import { wireOverlay } from '../../router/overlay-wiring'
import type { WeaverConfig } from '../../router/config'
import type { ContainerNet, ContainerAttach } from '../../router/container-net'
import type { NetHost } from '../../router/net'
import type { Allocator } from '../../ipam'

const config = {
  meshHost: '0.0.0.0', meshPort: 6783, mtu: 1376, password: undefined,
  dockerApi: 'unix:///nonexistent/overlay-wiring-test/docker.sock',
} as unknown as WeaverConfig

function setup() {
  const calls: string[] = []
  const attaches: ContainerAttach[] = []
  const leases = new Map<string, string[]>()
  const containerNet: ContainerNet = {
    async attach(req) { attaches.push(req); return { mac: '02:00:00:00:00:01', addresses: ['10.32.0.5/12'] } },
    async detach(req) { calls.push(`detach ${req.id} ${JSON.stringify(req.addresses)}`); return { removed: req.addresses ?? ['10.32.0.5/12'] } },
    async release() {},
    addressesOf: () => [],
    died() {},
    started() {},
  }
  const net = {
    async expose(c: string) { calls.push(`expose ${c}`); return {} },
    async hide(c: string) { calls.push(`hide ${c}`); return {} },
    async listAttached(targets: Array<{ id: string }>) { return targets.map((t) => ({ id: t.id, mac: 'm', addresses: ['10.32.0.5/12'] })) },
  } as unknown as NetHost
  const allocator = {
    async allocate(id: string) { leases.set(id, ['10.32.0.254/12']); return { ip: (10 << 24 | 32 << 16 | 254) >>> 0, prefix: 12 } },
    async claim(id: string) { calls.push(`claim ${id}`) },
    async release(id: string, ip?: number) { calls.push(`release ${id} ${ip}`); return true },
    lookup: (id: string) => (leases.get(id) ?? []).map(() => ({ ip: (10 << 24 | 32 << 16 | 254) >>> 0, prefix: 12 })),
    owned: () => [],
  } as unknown as Allocator
  const router = new ApiRouter()
  const wiring = wireOverlay(config, { clock: new FakeClock(), logger: nullLogger, net, containerNet, allocator, router })
  const call = (method: string, path: string, body?: unknown) =>
    router.handle({ method, path, query: new URLSearchParams(), body: Buffer.from(body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body)) })
  return { calls, attaches, router, wiring, call }
}

test('attach: a netns path target, WEAVE_CIDR-style addresses parsed; answers with the addresses', async () => {
  const { call, attaches } = setup()
  const r = await call('POST', '/attach', { target: '/proc/self/ns/net', addresses: ['net:10.32.2.0/24', 'ip:10.32.0.9/24', '10.32.0.10/24'] })
  assert.is(r.status, undefined, JSON.stringify(r))
  assert.equal(r.json, { id: attaches[0].id, mac: '02:00:00:00:00:01', addresses: ['10.32.0.5/12'] })
  assert.equal(attaches[0].netns, { path: '/proc/self/ns/net' })
  assert.match(attaches[0].id, /^ns[0-9a-f]{14}$/)
  assert.equal(attaches[0].items, [{ kind: 'net', cidr: '10.32.2.0/24' }, { kind: 'ip', cidr: '10.32.0.9/24' }, { kind: 'ip', cidr: '10.32.0.10/24' }])
  const again = await call('POST', '/attach', { target: `/proc/${process.pid}/ns/net` })
  assert.equal(attaches[1].items, [], 'none given: ContainerNet makes it net:default')
  assert.ok(again.json)
})

test('attach: bad input is a 4xx with a message, never a crash', async () => {
  const { call } = setup()
  assert.is((await call('POST', '/attach', 'not json')).status, 400)
  assert.is((await call('POST', '/attach', {})).status, 400)
  assert.is((await call('POST', '/attach', { target: '/proc/self/ns/net', addresses: ['net:300.1.1.0/24'] })).status, 400)
  assert.is((await call('POST', '/attach', { target: '/proc/self/ns/net', addresses: 'net:default' })).status, 400)
  assert.is((await call('POST', '/attach', { target: '999999999' })).status, 404)
  assert.is((await call('POST', '/attach', { target: '/no/such/netns' })).status, 404)
  const r = await call('POST', '/attach', { target: 'no-such-container-or-netns' })
  assert.is(r.status, 404, 'no Docker here and no such named netns')
})

test('detach passes plain CIDRs (ip: prefix allowed); ps lists what was attached', async () => {
  const { call, calls } = setup()
  await call('POST', '/attach', { target: '/proc/self/ns/net' })
  const r = await call('POST', '/detach', { target: '/proc/self/ns/net', addresses: ['ip:10.32.0.5/12'] })
  assert.equal((r.json as { removed: string[] }).removed, ['10.32.0.5/12'])
  assert.match(calls[0], /^detach ns[0-9a-f]+ \["10\.32\.0\.5\/12"\]$/)
  assert.is((await call('POST', '/detach', { target: '/proc/self/ns/net', addresses: ['bogus'] })).status, 400)
  await call('POST', '/attach', { target: '/proc/self/ns/net' })
  const ps = await call('GET', '/ps')
  assert.match(ps.text!, /^ns[0-9a-f]{14} m 10\.32\.0\.5\/12$/)
})

test('expose allocates for weave:expose and adds the address; hide removes it and releases', async () => {
  const { call, calls } = setup()
  const e = await call('POST', '/expose', {})
  assert.equal(e.json, { addresses: ['10.32.0.254/12'] })
  assert.ok(calls.includes('expose 10.32.0.254/12'))
  const h = await call('POST', '/hide', {})
  assert.equal(h.json, { removed: ['10.32.0.254/12'] })
  assert.ok(calls.includes('hide 10.32.0.254/12'))
  assert.ok(calls.some((c) => c.startsWith('release weave:expose')))
})

test('without a mesh the overlay refuses to start and says why in status', async () => {
  const { wiring, call } = setup()
  await wiring.start()
  const lines = wiring.statusLines()
  assert.equal(lines[0], ['Service', 'overlay'])
  assert.equal(lines[1], ['Sleeve', 'no mesh in this daemon'])
  assert.is((wiring.report() as { Unavailable: string }).Unavailable, 'no mesh in this daemon')
  assert.is((await call('GET', '/status/overlay')).text, '')
  await wiring.stop()
})

test.run()
