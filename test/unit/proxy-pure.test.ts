import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fc from 'fast-check'
import { rewriteCreate, needsImageCommand } from '../../proxy/create-rewrite'
import { decodeChunked, parseHead, serializeHead, setHeader, getHeader, withConnectionClose, findHeadEnd } from '../../proxy/http-head'
import { routeRequest, stripVersion } from '../../proxy/routes'
import { decideAttach } from '../../proxy/qualify'
import { parseDockerHost } from '../../proxy/docker-host'

const W = '/run/weave/w'

test('create: /w/w goes in front of the request entrypoint, exactly once', () => {
  const r = rewriteCreate({ Image: 'x', Entrypoint: ['/app'], Cmd: ['--flag'] }, W)
  assert.ok(r.ok)
  if (!r.ok) return
  assert.equal(r.body.Entrypoint, ['/w/w', '/app'])
  assert.equal(r.body.Cmd, ['--flag'])
  const again = rewriteCreate(r.body, W)
  assert.ok(again.ok)
  if (again.ok) assert.equal(again.body.Entrypoint, ['/w/w', '/app'])
})

test('create: without an entrypoint, Entrypoint and Cmd come from the image', () => {
  const body = { Image: 'busybox', Cmd: null }
  assert.ok(needsImageCommand(body))
  const r = rewriteCreate(body, W, { Entrypoint: null, Cmd: ['sh'] })
  assert.ok(r.ok)
  if (r.ok) { assert.equal(r.body.Entrypoint, ['/w/w']); assert.equal(r.body.Cmd, ['sh']) }
  // The request's own Cmd wins over the image's; the image's entrypoint is kept.
  const r2 = rewriteCreate({ Image: 'i', Cmd: ['echo', 'hi'] }, W, { Entrypoint: ['/entry.sh'], Cmd: ['serve'] })
  if (r2.ok) { assert.equal(r2.body.Entrypoint, ['/w/w', '/entry.sh']); assert.equal(r2.body.Cmd, ['echo', 'hi']) } else assert.unreachable()
  // A committed weave image already starts with /w/w.
  const r3 = rewriteCreate({ Image: 'i' }, W, { Entrypoint: ['/w/w', '/entry.sh'], Cmd: null })
  if (r3.ok) assert.equal(r3.body.Entrypoint, ['/w/w', '/entry.sh']); else assert.unreachable()
  // A string entrypoint is one element (Docker's strslice).
  const r4 = rewriteCreate({ Image: 'i', Entrypoint: '/bin/run' }, W)
  if (r4.ok) assert.equal(r4.body.Entrypoint, ['/w/w', '/bin/run']); else assert.unreachable()
})

test('create: --entrypoint "" clears the image entrypoint; no command at all is refused', () => {
  assert.not.ok(needsImageCommand({ Entrypoint: [''] }))
  const r = rewriteCreate({ Image: 'i', Entrypoint: [''], Cmd: ['ls'] }, W)
  if (r.ok) { assert.equal(r.body.Entrypoint, ['/w/w']); assert.equal(r.body.Cmd, ['ls']) } else assert.unreachable()
  const none = rewriteCreate({ Image: 'i' }, W, { Entrypoint: null, Cmd: null })
  assert.equal(none, { ok: false, status: 400, message: 'No command specified' })
})

test('create: weavewait is bound read-only at /w, replacing any other /w', () => {
  const r = rewriteCreate({ Image: 'i', Cmd: ['x'], Entrypoint: ['y'], HostConfig: { Binds: ['/data:/data', '/evil:/w'], Mounts: [{ Target: '/w' }, { Target: '/m' }], Memory: 5 } }, W)
  if (!r.ok) return assert.unreachable()
  const hc = r.body.HostConfig as Record<string, unknown>
  assert.equal(hc.Binds, ['/data:/data', `${W}:/w:ro`])
  assert.equal(hc.Mounts, [{ Target: '/m' }])
  assert.is(hc.Memory, 5)
  const r2 = rewriteCreate({ Image: 'i', Cmd: ['x'], Entrypoint: ['y'] }, W)
  if (r2.ok) assert.equal((r2.body.HostConfig as Record<string, unknown>).Binds, [`${W}:/w:ro`]); else assert.unreachable()
})

test('routes: any version prefix, only POST create/start/restart are intercepted', () => {
  assert.is(stripVersion('/v1.41/containers/json?all=1'), '/containers/json')
  assert.is(stripVersion('/v1.24/version'), '/version')
  assert.is(stripVersion('/version'), '/version')
  assert.equal(routeRequest('POST', '/v1.24/containers/create?name=a'), { kind: 'create' })
  assert.equal(routeRequest('POST', '/containers/create'), { kind: 'create' })
  assert.equal(routeRequest('POST', '/v1.43/containers/abc/start'), { kind: 'start', container: 'abc', action: 'start' })
  assert.equal(routeRequest('POST', '/v1.43/containers/abc/restart?t=1'), { kind: 'start', container: 'abc', action: 'restart' })
  assert.equal(routeRequest('GET', '/containers/create'), { kind: 'pass' })
  assert.equal(routeRequest('GET', '/v1.41/containers/abc/json'), { kind: 'inspect', container: 'abc' })
  assert.equal(routeRequest('GET', '/v1.41/containers/json?all=1'), { kind: 'pass' })
  assert.equal(routeRequest('POST', '/containers/abc/attach?stream=1'), { kind: 'pass' })
  assert.equal(routeRequest('POST', '/exec/abc/start'), { kind: 'pass' })
})

test('qualify: network modes, WEAVE_CIDR, --no-default-ipalloc', () => {
  const d = (env: string[] | null, networkMode: string | undefined, defaultIpalloc = true) => decideAttach({ env, networkMode, defaultIpalloc })
  assert.equal(d(null, undefined), { kind: 'attach', items: [{ kind: 'net-default' }] })
  assert.equal(d(['A=1'], 'bridge'), { kind: 'attach', items: [{ kind: 'net-default' }] })
  assert.equal(d(null, 'none').kind, 'attach')
  assert.equal(d(null, 'host').kind, 'skip')
  assert.equal(d(null, 'container:abc').kind, 'skip')
  assert.equal(d(null, 'mynet').kind, 'skip')
  assert.equal(d(['WEAVE_CIDR=none'], 'default').kind, 'skip')
  assert.equal(d(null, 'default', false).kind, 'skip')
  assert.equal(d(['WEAVE_CIDR='], 'default', false), { kind: 'attach', items: [{ kind: 'net-default' }] })
  assert.equal(d(['WEAVE_CIDR=ip:10.32.2.50/24'], ''), { kind: 'attach', items: [{ kind: 'ip', cidr: '10.32.2.50/24' }] })
  const bad = d(['WEAVE_CIDR=ip:x'], '')
  assert.is(bad.kind, 'invalid')
  // Last WEAVE_CIDR wins, as in Docker's env merge.
  assert.equal(d(['WEAVE_CIDR=ip:x', 'WEAVE_CIDR=none'], '').kind, 'skip')
})

test('http head: parse, edit, serialize', () => {
  const raw = Buffer.from('POST /v1.41/containers/x/attach HTTP/1.1\r\nHost: /var/run/docker.sock\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nBODY')
  const end = findHeadEnd(raw)
  assert.is(raw.subarray(end).toString(), 'BODY')
  const h = parseHead(raw.subarray(0, end))!
  assert.is(getHeader(h, 'upgrade'), 'tcp')
  const h2 = setHeader(h, 'connection', withConnectionClose(getHeader(h, 'Connection')))
  assert.is(serializeHead(h2).toString(), 'POST /v1.41/containers/x/attach HTTP/1.1\r\nHost: /var/run/docker.sock\r\nConnection: Upgrade, close\r\nUpgrade: tcp\r\n\r\n')
  assert.is(withConnectionClose(undefined), 'close')
  assert.is(withConnectionClose('keep-alive'), 'close')
  assert.is(withConnectionClose('close'), 'close')
  assert.is(findHeadEnd(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n')), -1)
})

/** Encode `parts` as a chunked body with optional extensions and trailers. */
function encodeChunked(parts: Buffer[], trailer = ''): Buffer {
  return Buffer.concat([...parts.filter((p) => p.length).map((p) => Buffer.concat([Buffer.from(`${p.length.toString(16)};x=1\r\n`), p, Buffer.from('\r\n')])), Buffer.from(`0\r\n${trailer}\r\n`)])
}

test('chunked: decodes any split, asks for more on any prefix', () => {
  fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 6 }), fc.boolean(), (arrays, withTrailer) => {
    const parts = arrays.map((a) => Buffer.from(a))
    const enc = encodeChunked(parts, withTrailer ? 'X-T: 1\r\n' : '')
    const r = decodeChunked(Buffer.concat([enc, Buffer.from('NEXT')]))
    assert.is(r.kind, 'done')
    if (r.kind !== 'done') return
    assert.ok(r.body.equals(Buffer.concat(parts)))
    assert.is(r.consumed, enc.length)
    for (let i = 0; i < enc.length; i++) assert.is(decodeChunked(enc.subarray(0, i)).kind, 'more')
  }), { numRuns: 300 })
  assert.is(decodeChunked(Buffer.from('zz\r\n')).kind, 'error')
  assert.is(decodeChunked(Buffer.from('2\r\nabX\r\n')).kind, 'error')
})

test('docker host addresses', () => {
  assert.equal(parseDockerHost('unix:///var/run/docker.sock'), { ok: true, endpoint: { socketPath: '/var/run/docker.sock' } })
  assert.equal(parseDockerHost('/run/docker.sock'), { ok: true, endpoint: { socketPath: '/run/docker.sock' } })
  assert.equal(parseDockerHost('tcp://10.0.0.1:2375'), { ok: true, endpoint: { host: '10.0.0.1', port: 2375 } })
  assert.equal(parseDockerHost('tcp://:12375'), { ok: true, endpoint: { host: '127.0.0.1', port: 12375 } })
  assert.equal(parseDockerHost('tcp://0.0.0.0', { defaultPort: 12375 }), { ok: true, endpoint: { host: '0.0.0.0', port: 12375 } })
  assert.equal(parseDockerHost('tcp://[::1]:2375/'), { ok: true, endpoint: { host: '::1', port: 2375 } })
  for (const bad of ['unix://relative.sock', 'tcp://host', 'tcp://host:99999', 'http://x:1', 'docker.sock', '']) {
    const r = parseDockerHost(bad)
    assert.is(r.ok, false, bad)
    if (!r.ok) assert.ok(r.error.includes(JSON.stringify(bad)))
  }
})

test.run()
