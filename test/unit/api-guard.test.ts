// The control API refuses what a web page could send it (router/api/local-guard.ts): the pure
// check, then the real server on an ephemeral loopback port driven by curl (Host, Origin, simple
// content types, WebSocket upgrades), the unix socket, and the CLI's own requests.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile } from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { promisify } from 'node:util'
import { ApiRouter, createApiServer, listenerPolicy, refuseForeign, type ApiServer } from '../../router/api'
import { memoryLogger } from '../../router/deps'
import { callApi } from '../../cli/context'

const run = promisify(execFile)
const P = listenerPolicy('127.0.0.1', 6784, { writesNeedNonSimpleType: true })

test('Host: the listener\'s own names pass, anything else (DNS rebinding) is refused', () => {
  for (const host of ['127.0.0.1:6784', 'localhost:6784', 'LOCALHOST:6784', '[::1]:6784', undefined]) {
    assert.is(refuseForeign('GET', { host }, P), undefined, String(host))
  }
  for (const host of ['evil.example:6784', '127.0.0.1:80', '127.0.0.1', 'localhost', '10.0.0.1:6784', '127.0.0.1:6784.evil.example', '']) {
    assert.match(refuseForeign('GET', { host }, P) ?? '', /Host/, host)
  }
})

test('Origin: none or the listener\'s own; a foreign, null or https origin is refused', () => {
  assert.is(refuseForeign('GET', { host: '127.0.0.1:6784', origin: 'http://127.0.0.1:6784' }, P), undefined)
  assert.is(refuseForeign('GET', { host: '127.0.0.1:6784', origin: 'http://localhost:6784' }, P), undefined)
  for (const origin of ['http://evil.example', 'null', 'https://127.0.0.1:6784', 'http://127.0.0.1:8080', 'file://']) {
    assert.match(refuseForeign('GET', { host: '127.0.0.1:6784', origin }, P) ?? '', /Origin/, origin)
  }
})

test('writes need a non-simple Content-Type; GET and HEAD do not', () => {
  const h = (t?: string) => ({ host: '127.0.0.1:6784', 'content-type': t })
  for (const m of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
    for (const t of [undefined, '', 'text/plain', 'text/plain;charset=UTF-8', 'application/x-www-form-urlencoded', 'Multipart/Form-Data; boundary=x']) {
      assert.match(refuseForeign(m, h(t), P) ?? '', /Content-Type/, `${m} ${t}`)
    }
    assert.is(refuseForeign(m, h('application/json'), P), undefined)
    assert.is(refuseForeign(m, h('application/vnd.docker.plugins.v1.2+json'), P), undefined)
  }
  assert.is(refuseForeign('GET', h(), P), undefined)
  assert.is(refuseForeign('HEAD', h(), P), undefined)
})

test('a wildcard listener accepts IP literals with its port, still no names', () => {
  const w = listenerPolicy('0.0.0.0', 6784, { writesNeedNonSimpleType: true })
  assert.is(refuseForeign('GET', { host: '192.168.1.5:6784' }, w), undefined)
  assert.is(refuseForeign('GET', { host: '[fe80::1]:6784' }, w), undefined)
  assert.ok(refuseForeign('GET', { host: '192.168.1.5:6785' }, w))
  assert.ok(refuseForeign('GET', { host: 'rebind.example:6784' }, w))
  const own = listenerPolicy('192.168.1.5', 6784, { writesNeedNonSimpleType: true })
  assert.is(refuseForeign('GET', { host: '192.168.1.5:6784' }, own), undefined)
  assert.ok(refuseForeign('GET', { host: '192.168.1.6:6784' }, own))
})

// ---- the real server ----

interface Running { server: ApiServer; port: number; sock: string; dir: string; acted: string[]; log: ReturnType<typeof memoryLogger> }

async function freePort(): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as net.AddressInfo).port
  await new Promise((r) => s.close(r))
  return port
}

async function start(): Promise<Running> {
  const router = new ApiRouter()
  const acted: string[] = []
  router.route('POST', '/connect', (req) => { acted.push(`connect ${req.query.get('peer')}`); return { text: '' } })
  router.route('DELETE', '/peer', () => { acted.push('reset'); return { text: '' } })
  router.route('GET', '/status', () => ({ text: 'ok' }))
  router.upgrade('/ui/ws', (_req, socket) => {
    acted.push('upgraded')
    socket.end('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n')
  })
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'api-guard-'))
  const sock = path.join(dir, 'api.sock')
  const port = await freePort()
  const log = memoryLogger()
  const server = createApiServer(router, { tcp: { host: '127.0.0.1', port }, unixPath: sock }, log)
  await server.start()
  return { server, port, sock, dir, acted, log }
}

async function stop(r: Running): Promise<void> {
  await r.server.stop()
  fs.rmSync(r.dir, { recursive: true, force: true })
}

/** curl's status code and body for one request (`args` are extra curl arguments). */
async function curl(args: string[]): Promise<{ code: number; body: string }> {
  const { stdout } = await run('curl', ['-sS', '--max-time', '10', '-w', '\n%{http_code}', ...args])
  const i = stdout.lastIndexOf('\n')
  return { code: Number(stdout.slice(i + 1)), body: stdout.slice(0, i) }
}

test('curl against the TCP listener: page-like requests get 403 and act on nothing; real clients pass', async () => {
  const r = await start()
  const url = (p: string) => `http://127.0.0.1:${r.port}${p}`
  try {
    const refused: Array<[string, string[]]> = [
      ['POST without a content type', ['-X', 'POST', url('/connect?peer=10.9.9.1')]],
      ['form POST', ['-d', 'x=1', url('/connect?peer=10.9.9.2')]],
      ['text/plain POST', ['-H', 'content-type: text/plain', '--data-binary', '{}', url('/connect?peer=10.9.9.3')]],
      ['foreign Origin', ['-H', 'origin: http://evil.example', '-H', 'content-type: application/json', '-d', '{}', url('/connect?peer=10.9.9.4')]],
      ['foreign Host (rebinding)', ['-H', `host: rebind.example:${r.port}`, '-H', 'content-type: application/json', '-d', '{}', url('/connect?peer=10.9.9.5')]],
      ['DELETE without a content type', ['-X', 'DELETE', url('/peer')]],
      ['GET with a foreign Host', ['-H', 'host: rebind.example', url('/status')]],
    ]
    for (const [what, args] of refused) {
      const a = await curl(args)
      assert.is(a.code, 403, `${what}: ${a.body}`)
      assert.match(a.body, /^refused: /, what)
    }
    assert.equal(r.acted, [], 'no handler ran')
    assert.is((await curl([url('/status')])).code, 200)
    assert.is((await curl(['-H', `origin: http://localhost:${r.port}`, url('/status')])).code, 200, 'own origin')
    const ok = await curl(['-H', 'content-type: application/json', '-X', 'POST', url('/connect?peer=10.9.9.9')])
    assert.is(ok.code, 200, ok.body)
    assert.equal(r.acted, ['connect 10.9.9.9'])
    assert.ok(r.log.lines.some((l) => /API POST \/connect\?peer=10\.9\.9\.1: refused/.test(l)), r.log.lines.join('\n'))
  } finally { await stop(r) }
})

test('WebSocket upgrades pass the same check: a foreign Origin is refused before the handler', async () => {
  const r = await start()
  const ws = (origin: string) => curl(['-H', 'connection: Upgrade', '-H', 'upgrade: websocket', '-H', 'sec-websocket-version: 13',
    '-H', 'sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==', '-H', `origin: ${origin}`, `http://127.0.0.1:${r.port}/ui/ws`])
  try {
    const bad = await ws('http://evil.example')
    assert.is(bad.code, 403, bad.body)
    assert.equal(r.acted, [])
    // curl does not speak WebSocket after a 101: the accepted handshake goes over a raw socket
    const c = net.connect(r.port, '127.0.0.1')
    c.write(`GET /ui/ws HTTP/1.1\r\nHost: 127.0.0.1:${r.port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
      `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://127.0.0.1:${r.port}\r\n\r\n`)
    let got = ''
    c.on('data', (d: Buffer) => { got += d.toString() })
    await new Promise((res) => c.on('close', res))
    assert.match(got, /^HTTP\/1\.1 101 /, got)
    assert.equal(r.acted, ['upgraded'])
  } finally { await stop(r) }
})

test('the unix socket is not checked (no browser reaches it); the CLI\'s requests pass on both', async () => {
  const r = await start()
  try {
    const a = await curl(['--unix-socket', r.sock, '-X', 'POST', 'http://x/connect?peer=10.9.8.1'])
    assert.is(a.code, 200, a.body)
    // the CLI's client (cli/context.ts) over the unix socket, and its headers on TCP
    assert.is((await callApi(r.sock, 'DELETE', '/peer')).status, 200)
    assert.is((await callApi(r.sock, 'POST', '/connect?peer=10.9.8.2', '{}')).status, 200)
    assert.equal(r.acted, ['connect 10.9.8.1', 'reset', 'connect 10.9.8.2'])
  } finally { await stop(r) }
})

test.run()
