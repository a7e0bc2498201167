import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { ApiError, ApiRouter, StatusModel, formatBlocks } from '../../router/api'

const req = (method: string, path: string) => ({ method, path, query: new URLSearchParams(), body: Buffer.alloc(0) })

test('routes match literal, :param and *rest segments', async () => {
  const r = new ApiRouter()
  r.route('GET', '/status', () => ({ text: 'all' }))
  r.route('GET', '/status/:view', (q) => ({ text: `view ${q.params.view}` }))
  r.route('POST', '/ip/:id/*cidr', (q) => ({ json: q.params }))
  assert.equal(await r.handle(req('GET', '/status')), { text: 'all' })
  assert.equal(await r.handle(req('GET', '/status/peers')), { text: 'view peers' })
  assert.equal(await r.handle(req('POST', '/ip/abc/10.32.2.0/24')), { json: { id: 'abc', cidr: '10.32.2.0/24' } })
})

test('unknown path is 404, known path with wrong method is 405', async () => {
  const r = new ApiRouter()
  r.route('GET', '/status', () => ({ text: 'x' }))
  assert.is((await r.handle(req('GET', '/nope'))).status, 404)
  assert.is((await r.handle(req('DELETE', '/status'))).status, 405)
  assert.is((await r.handle(req('GET', '/status/extra'))).status, 404)
})

test('ApiError becomes its status, other throws become 500, never a rejection', async () => {
  const r = new ApiRouter()
  r.route('GET', '/a', () => {
    throw new ApiError(409, 'conflict here')
  })
  r.route('GET', '/b', async () => {
    throw new Error('boom')
  })
  assert.equal(await r.handle(req('GET', '/a')), { status: 409, text: 'conflict here' })
  const b = await r.handle(req('GET', '/b'))
  assert.is(b.status, 500)
  assert.match(b.text!, /boom/)
})

test('registering a route twice is refused', () => {
  const r = new ApiRouter()
  r.route('GET', '/x/:a', () => ({}))
  assert.throws(() => r.route('get', '/x/:a', () => ({})), /registered twice/)
})

test('status text: sections in order, keys right-aligned like weave status', () => {
  const s = new StatusModel('1.2.3')
  s.addSection('ipam', { order: 20, lines: () => [['Service', 'ipam'], ['Status', 'idle']] })
  s.addSection('router', { order: 10, lines: () => [['Service', 'router'], ['PeerDiscovery', 'enabled']] })
  const text = s.text()
  assert.is(
    text,
    '        Version: 1.2.3 (version check update disabled)\n\n        Service: router\n  PeerDiscovery: enabled\n\n        Service: ipam\n         Status: idle\n',
  )
})

test('report collects every component key', () => {
  const s = new StatusModel('1.2.3')
  s.addReport('Router', () => ({ Name: 'x' }))
  assert.equal(s.report(), {
    Ready: false, Version: '1.2.3', VersionCheck: { Enabled: false, Success: false, NewVersion: '', NextCheckAt: '0001-01-01T00:00:00Z' }, Router: { Name: 'x' },
  })
  assert.throws(() => s.addReport('Router', () => 1), /twice/)
})

test('a long key widens the column for all blocks', () => {
  const t = formatBlocks([[['A', '1']], [['AVeryLongKeyIndeed', '2']]])
  // As Weave's " TrustedSubnets": the longest key keeps one space in front.
  assert.is(t, `${' '.repeat(18)}A: 1\n\n AVeryLongKeyIndeed: 2\n`)
})

test.run()
