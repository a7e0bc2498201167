/**
 * The Docker plugin's protocol logic without a socket: answer() routing and refusals, the IPAM
 * driver on a real (single-peer) IPAM, the network driver on recorded plumbing, and the router-down
 * responder's routes, the start-up GC of endpoint leases.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { answer, collectOrphanedLeases, createDockerPlugin, downRoutes, endpointLeases, orphanedLeases, formatPoolId, parsePoolId, ROUTER_DOWN, weaveContainerOf } from '../../plugin'
import { createIpam, soloGossipHost, parseCidr } from '../../ipam'
import { memoryLogger, seededRng, systemClock } from '../../router/deps'
import type { PeerName } from '../../router/mesh'

const PEER = 'aa:bb:cc:dd:ee:01' as PeerName

async function setup() {
  const ipam = createIpam({ range: '10.32.0.0/12', defaultSubnet: '10.32.0.0/16', init: `seed=${PEER}` },
    { clock: systemClock(), rng: seededRng(1), logger: memoryLogger(), host: soloGossipHost(PEER, 'h1') })
  await ipam.start()
  const calls: string[] = []
  const net = {
    addEndpointVeth: async (r: { endpointId: string; mtu?: number }) => {
      calls.push(`add ${r.endpointId} mtu ${r.mtu}`)
      return { hostEnd: `vethwepl${r.endpointId.slice(0, 7)}`, containerEnd: `vethwepg${r.endpointId.slice(0, 7)}`, mac: '02:00:00:00:00:01', mtu: r.mtu ?? 1376 }
    },
    delEndpointVeth: async (id: string) => { calls.push(`del ${id}`); return true },
    announceIn: async () => {},
  }
  const plugin = createDockerPlugin({ socketPath: '/nonexistent/weave.sock', range: '10.32.0.0/12', defaultSubnet: '10.32.0.0/16', mtu: 1376, timeoutMs: 2000 },
    { allocator: ipam.allocator, net, clock: systemClock(), rng: seededRng(2), logger: memoryLogger() })
  const call = async (name: string, body: unknown) => answer(plugin.routes, 'POST', `/${name}`, JSON.stringify(body))
  return { ipam, plugin, call, calls }
}

test('answer: Activate names exactly what the routes serve; 404, 405, 400 with {Err}', async () => {
  const { plugin, call, ipam } = await setup()
  const act = await call('Plugin.Activate', null)
  assert.equal(act, { status: 200, body: { Implements: ['NetworkDriver', 'IpamDriver'] } })
  const served = new Set([...plugin.routes.keys()].map((k) => k.split('.')[0]))
  assert.equal([...served].sort(), ['IpamDriver', 'NetworkDriver', 'Plugin'])
  for (const n of ['NetworkDriver.GetCapabilities', 'NetworkDriver.CreateNetwork', 'NetworkDriver.DeleteNetwork', 'NetworkDriver.CreateEndpoint',
    'NetworkDriver.Join', 'NetworkDriver.Leave', 'NetworkDriver.DeleteEndpoint', 'NetworkDriver.EndpointOperInfo', 'NetworkDriver.DiscoverNew',
    'NetworkDriver.DiscoverDelete', 'IpamDriver.GetCapabilities', 'IpamDriver.GetDefaultAddressSpaces', 'IpamDriver.RequestPool',
    'IpamDriver.ReleasePool', 'IpamDriver.RequestAddress', 'IpamDriver.ReleaseAddress']) assert.ok(plugin.routes.has(n), n)
  assert.is((await answer(plugin.routes, 'POST', '/Nope.Call', '{}')).status, 404)
  assert.is((await answer(plugin.routes, 'GET', '/Plugin.Activate', '')).status, 405)
  const bad = await answer(plugin.routes, 'POST', '/IpamDriver.RequestPool', '{"Pool":')
  assert.is(bad.status, 400)
  assert.match(String(bad.body.Err), /not JSON/)
  assert.is((await answer(plugin.routes, 'POST', '/IpamDriver.RequestPool', '[1]')).status, 400)
  const missing = await call('IpamDriver.RequestAddress', {})
  assert.is(missing.status, 400)
  assert.match(String(missing.body.Err), /PoolID/)
  assert.equal((await call('NetworkDriver.GetCapabilities', null)).body, { Scope: 'local', ConnectivityScope: 'local' })
  await ipam.stop()
})

test('IPAM driver: pools inside the range, addresses from the mesh IPAM, --ip claims and clashes, release by address', async () => {
  const { call, ipam } = await setup()
  const def = await call('IpamDriver.RequestPool', { AddressSpace: 'weavelocal', Pool: '', V6: false })
  assert.equal(def.body, { PoolID: 'weave:10.32.0.0/16', Pool: '10.32.0.0/16', Data: { 'com.docker.network.gateway': '10.32.0.0/16' } })
  assert.match(String((await call('IpamDriver.RequestPool', { Pool: '192.168.1.0/24' })).body.Err), /outside weave's allocation range/)
  assert.match(String((await call('IpamDriver.RequestPool', { Pool: '10.40.0.1/16' })).body.Err), /not a network/)
  assert.match(String((await call('IpamDriver.RequestPool', { Pool: '10.40.0.0/16', V6: true })).body.Err), /IPv4/)
  const sub = await call('IpamDriver.RequestPool', { Pool: '10.40.0.0/16', SubPool: '10.40.8.0/24' })
  assert.is(sub.body.PoolID, 'weave:10.40.0.0/16:10.40.8.0/24')
  assert.equal(parsePoolId(String(sub.body.PoolID)), { subnet: parseCidr('10.40.0.0/16'), range: parseCidr('10.40.8.0/24') })
  assert.is(formatPoolId(parsePoolId('weave:10.32.0.0/16')), 'weave:10.32.0.0/16')

  const a = await call('IpamDriver.RequestAddress', { PoolID: 'weave:10.32.0.0/16' })
  const b = await call('IpamDriver.RequestAddress', { PoolID: 'weave:10.32.0.0/16' })
  assert.is(a.status, 200)
  assert.match(String(a.body.Address), /^10\.32\.\d+\.\d+\/16$/)
  assert.is.not(a.body.Address, b.body.Address)
  const inRange = await call('IpamDriver.RequestAddress', { PoolID: String(sub.body.PoolID) })
  assert.match(String(inRange.body.Address), /^10\.40\.8\.\d+\/16$/)
  const claimed = await call('IpamDriver.RequestAddress', { PoolID: 'weave:10.40.0.0/16', Address: '10.40.0.9' })
  assert.equal(claimed.body, { Address: '10.40.0.9/16', Data: {} })
  const clash = await call('IpamDriver.RequestAddress', { PoolID: 'weave:10.40.0.0/16', Address: '10.40.0.9' })
  assert.is(clash.status, 409)
  assert.match(String(clash.body.Err), /weave cannot give 10\.40\.0\.9/)
  assert.is((await call('IpamDriver.RequestAddress', { PoolID: 'weave:10.40.0.0/16', Address: '10.41.0.9' })).status, 400)
  // Release by address frees it for the next claim.
  const held = ipam.allocator.owned().length
  assert.equal((await call('IpamDriver.ReleaseAddress', { PoolID: 'weave:10.40.0.0/16', Address: '10.40.0.9' })).body, {})
  assert.is(ipam.allocator.owned().length, held - 1)
  assert.is((await call('IpamDriver.RequestAddress', { PoolID: 'weave:10.40.0.0/16', Address: '10.40.0.9' })).status, 200)
  assert.is((await call('IpamDriver.ReleaseAddress', { PoolID: 'weave:10.40.0.0/16', Address: '10.40.99.99' })).status, 200) // already free
  assert.is((await call('IpamDriver.ReleasePool', { PoolID: 'bogus' })).status, 400)
  await ipam.stop()
})

test('network driver: weave IPAM required, endpoint veth at the MTU, Join moves it in as ethwe0 with the multicast route', async () => {
  const { call, calls, ipam } = await setup()
  const foreign = await call('NetworkDriver.CreateNetwork', { NetworkID: 'n1', IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '172.18.0.0/16' }] })
  assert.is(foreign.status, 400)
  assert.match(String(foreign.body.Err), /--ipam-driver weave/)
  assert.equal((await call('NetworkDriver.CreateNetwork', { NetworkID: 'n1', IPv4Data: [{ AddressSpace: 'weavelocal', Pool: '10.32.0.0/16' }] })).body, {})
  const ep = 'e'.repeat(64)
  const created = await call('NetworkDriver.CreateEndpoint', { NetworkID: 'n1', EndpointID: ep, Interface: { Address: '10.32.0.5/16', MacAddress: '' } })
  assert.equal(created.body, { Interface: { MacAddress: '02:00:00:00:00:01' } })
  // A MAC the user chose is Docker's to keep: the driver must not answer one.
  assert.equal((await call('NetworkDriver.CreateEndpoint', { NetworkID: 'n1', EndpointID: ep, Interface: { Address: '10.32.0.5/16', MacAddress: '02:42:00:00:00:09' } })).body, {})
  const join = await call('NetworkDriver.Join', { NetworkID: 'n1', EndpointID: ep, SandboxKey: '/var/run/docker/netns/x' })
  assert.equal(join.body, {
    InterfaceName: { SrcName: 'vethwepgeeeeeee', DstPrefix: 'ethwe' },
    StaticRoutes: [{ Destination: '224.0.0.0/4', RouteType: 1 }],
    DisableGatewayService: true,
  })
  assert.equal((await call('NetworkDriver.Leave', { NetworkID: 'n1', EndpointID: ep })).body, {})
  assert.equal((await call('NetworkDriver.DeleteEndpoint', { NetworkID: 'n1', EndpointID: ep })).body, {})
  assert.ok(calls.includes(`add ${ep} mtu 1376`))
  assert.is(calls[calls.length - 1], `del ${ep}`)
  assert.is((await call('NetworkDriver.CreateEndpoint', { NetworkID: 'n1', EndpointID: ep, Interface: {} })).status, 400)
  await ipam.stop()
})

test('router-down responder: Activate still answers, every other call says why', async () => {
  const routes = downRoutes(['NetworkDriver.CreateEndpoint', 'IpamDriver.RequestAddress'])
  assert.equal((await answer(routes, 'POST', '/Plugin.Activate', 'null')).body, { Implements: ['NetworkDriver', 'IpamDriver'] })
  const r = await answer(routes, 'POST', '/IpamDriver.RequestAddress', '{}')
  assert.is(r.status, 503)
  assert.is(r.body.Err, ROUTER_DOWN)
  assert.match(ROUTER_DOWN, /weave launch/)
})

test('weaveContainerOf: only weave networks, Docker\'s short-id alias dropped', () => {
  const id = 'abcdef0123456789'.repeat(4)
  const c = weaveContainerOf({
    Id: id, Name: '/c1', State: { Running: true, Pid: 42 },
    NetworkSettings: { Networks: {
      weave: { NetworkID: 'w1', IPAddress: '10.32.0.1', IPPrefixLen: 16, Aliases: [id.slice(0, 12), 'db'], MacAddress: '02:00:00:00:00:07' },
      bridge: { NetworkID: 'b1', IPAddress: '172.17.0.2', IPPrefixLen: 16, Aliases: null },
    } },
  }, new Set(['w1']))
  assert.equal(c, { id, name: 'c1', pid: 42, networks: [{ network: 'weave', networkId: 'w1', address: '10.32.0.1/16', aliases: ['db'], mac: '02:00:00:00:00:07' }] })
  assert.is(weaveContainerOf({ Id: id, State: { Running: false } }, new Set(['w1'])), undefined)
})

test('start-up lease GC: endpoint leases no endpoint holds are released; unknown Docker state keeps all', async () => {
  const { ipam, call } = await setup()
  const pool = { PoolID: formatPoolId({ subnet: parseCidr('10.32.0.0/16')!, range: parseCidr('10.32.0.0/16')! }) }
  const a = String((await call('IpamDriver.RequestAddress', pool)).body.Address).split('/')[0]
  const b = String((await call('IpamDriver.RequestAddress', pool)).body.Address).split('/')[0]
  await ipam.allocator.allocate('f'.repeat(64)) // a proxied container's lease: never the plugin's business
  const restored = endpointLeases(ipam.allocator)
  assert.equal([...restored.values()].flat().sort(), [a, b].sort())
  assert.equal(orphanedLeases(restored, new Set([a])).map((id) => restored.get(id)), [[b]])
  assert.equal(await collectOrphanedLeases(ipam.allocator, restored, undefined, memoryLogger()), [], 'Docker not asked: nothing released')
  assert.is(endpointLeases(ipam.allocator).size, 2)
  const gone = await collectOrphanedLeases(ipam.allocator, restored, new Set([a]), memoryLogger())
  assert.is(gone.length, 1)
  assert.equal([...endpointLeases(ipam.allocator).values()].flat(), [a])
  assert.is(ipam.allocator.lookup('f'.repeat(64)).length, 1)
  await ipam.stop()
})

test.run()
