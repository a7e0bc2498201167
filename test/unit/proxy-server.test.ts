/**
 * The proxy between a client and a fake Docker engine, both on unix sockets in a temp dir:
 * passthrough, streaming, hijacks with half-close, and the create/start interceptors.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile, spawnSync } from 'node:child_process'
import { promisify } from 'node:util'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { createProxy, type Proxy, type ProxyHooks, type StartedContainer, type ContainerEvent } from '../../proxy'
import { memoryLogger, systemClock } from '../../router/deps'
import { latencyMetrics } from '../../router/metrics'

interface Seen { method: string; url: string; headers: http.IncomingHttpHeaders; body: string }

/** A fake engine: enough of the Docker API for the proxy's interceptors, plus stream endpoints. */
class FakeEngine {
  seen: Seen[] = []
  containers = new Map<string, Record<string, unknown>>()
  killed: string[] = []
  streamGate: (() => void) | undefined
  events: http.ServerResponse | undefined
  server: http.Server
  constructor(readonly socketPath: string) {
    this.server = http.createServer((req, res) => {
      const parts: Buffer[] = []
      req.on('data', (d) => parts.push(d))
      req.on('end', () => this.handle(req, res, Buffer.concat(parts).toString()))
    })
    // Upgrade: tcp (what docker clients send for attach and exec start): 101, then echo upper-cased.
    this.server.on('upgrade', (req, socket: net.Socket) => {
      this.seen.push({ method: req.method!, url: req.url!, headers: req.headers, body: '' })
      socket.write('HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n')
      socket.on('data', (d) => socket.write(d.toString().toUpperCase()))
      socket.on('end', () => socket.end('[stdin closed]'))
    })
  }
  listen() { return new Promise<void>((r) => this.server.listen(this.socketPath, r)) }
  close() { this.events?.destroy(); this.server.closeAllConnections(); return new Promise<void>((r) => this.server.close(() => r())) }
  private json(res: http.ServerResponse, status: number, obj: unknown) {
    const b = JSON.stringify(obj)
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(b) }).end(b)
  }
  private handle(req: http.IncomingMessage, res: http.ServerResponse, body: string) {
    const url = req.url!
    this.seen.push({ method: req.method!, url, headers: req.headers, body })
    const p = url.split('?')[0].replace(/^\/v[\d.]+/, '')
    let m: RegExpExecArray | null
    if (p === '/version') return this.json(res, 200, { ApiVersion: '1.41', url })
    if (p === '/images/busybox/json' || p === '/images/busybox:latest/json') return this.json(res, 200, { Config: { Cmd: ['sh'], Entrypoint: null } })
    if (p === '/images/noweave/json') return this.json(res, 200, { Config: { Cmd: ['sh'], Env: ['PATH=/bin', 'WEAVE_CIDR=none'] } })
    if (p === '/images/badweave/json') return this.json(res, 200, { Config: { Cmd: ['sh'], Env: ['WEAVE_CIDR=bogus'] } })
    if ((m = /^\/images\/(.+)\/json$/.exec(p))) return this.json(res, 404, { message: `no such image: ${m[1]}` })
    if (p === '/containers/create') {
      const id = `c${this.containers.size + 1}`.padEnd(64, '0')
      this.containers.set(id, JSON.parse(body))
      return this.json(res, 201, { Id: id, Warnings: [] })
    }
    if ((m = /^\/containers\/(\w+)\/start$/.exec(p))) {
      if (!this.containers.has(m[1])) return this.json(res, 404, { message: `No such container: ${m[1]}` })
      res.writeHead(204).end(); return
    }
    if ((m = /^\/containers\/(\w+)\/kill$/.exec(p))) { this.killed.push(m[1]); res.writeHead(204).end(); return }
    if ((m = /^\/containers\/(\w+)\/json$/.exec(p))) {
      const c = this.containers.get(m[1])
      if (!c) return this.json(res, 404, { message: 'No such container' })
      // Chunked, as Go sends larger answers without a Content-Length.
      const b = JSON.stringify({
        Id: m[1], Name: '/test', State: { Running: true, Pid: 4242 },
        Config: { Env: c.Env ?? ['PATH=/bin'], Entrypoint: c.Entrypoint, Cmd: c.Cmd, Hostname: 'h' }, HostConfig: c.HostConfig ?? {},
        NetworkSettings: { IPAddress: '', IPPrefixLen: 0, MacAddress: '', Networks: {} },
      })
      res.writeHead(200, { 'Content-Type': 'application/json' })
      res.write(b.slice(0, 20))
      res.end(b.slice(20))
      return
    }
    if (p === '/logs') {
      // Chunked stream: the second chunk is sent only once the test has seen the first.
      res.writeHead(200, { 'Content-Type': 'text/plain' })
      res.write('first\n')
      this.streamGate = () => res.end('second\n')
      return
    }
    if (p === '/events') {
      res.writeHead(200, { 'Content-Type': 'application/json' })
      this.events = res
      res.write(JSON.stringify({ Type: 'container', Action: 'die', Actor: { ID: 'abc', Attributes: { name: 'x', exitCode: '0' } }, time: 1700000000 }) + '\n')
      res.write(JSON.stringify({ Type: 'network', Action: 'connect', Actor: { ID: 'n' } }) + '\n')
      res.write(JSON.stringify({ Type: 'container', Action: 'destroy', Actor: { ID: 'abc' }, time: 1700000001 }) + '\n')
      return
    }
    this.json(res, 404, { message: `fake engine: ${p}` })
  }
}

interface Ctx { dir: string; engine: FakeEngine; proxy: Proxy; sock: string; started: StartedContainer[]; events: ContainerEvent[]; log: ReturnType<typeof memoryLogger> }

async function setup(hooks: Partial<ProxyHooks> = {}, opts: { defaultIpalloc?: boolean; engineUp?: boolean; rewriteInspect?: boolean } = {}): Promise<Ctx> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wproxy-'))
  const engine = new FakeEngine(path.join(dir, 'docker.sock'))
  if (opts.engineUp !== false) { await engine.listen(); fs.chmodSync(engine.socketPath, 0o660) }
  const started: StartedContainer[] = []
  const events: ContainerEvent[] = []
  const log = memoryLogger()
  const sock = path.join(dir, 'weave.sock')
  const proxy = createProxy(
    { socketPath: sock, docker: { socketPath: engine.socketPath }, weavewaitDir: '/opt/w', defaultIpalloc: opts.defaultIpalloc ?? true, attachTimeoutMs: 2000, rewriteInspect: opts.rewriteInspect },
    { clock: systemClock(), logger: log, hooks: { onStarted: async (c) => { started.push(c) }, ...hooks } },
  )
  await proxy.start()
  return { dir, engine, proxy, sock, started, events, log }
}

async function teardown(c: Ctx) {
  await c.proxy.stop()
  await c.engine.close()
  fs.rmSync(c.dir, { recursive: true, force: true })
}

/** One HTTP call through the proxy; resolves with status, headers and body. */
function call(sock: string, method: string, url: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: sock, method, path: url, headers: { Host: 'docker', ...headers }, agent: false }, (res) => {
      const parts: Buffer[] = []
      res.on('data', (d) => parts.push(d))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(parts).toString() }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** A raw client: write `request`, optionally half-close after `stdin`, collect everything until EOF. */
function rawExchange(sock: string, request: string, stdin: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ path: sock, allowHalfOpen: true })
    let out = ''
    s.on('data', (d) => {
      out += d.toString()
      // Write stdin only once the hijack is established, as docker does.
      if (/\r\n\r\n/.test(out) && stdin) { s.write(stdin); stdin = ''; s.end() }
    })
    s.on('end', () => { s.end(); resolve(out) })
    s.on('error', reject)
    s.write(request)
  })
}

const it = suite('proxy server')

it('passthrough keeps the version prefix and forces one request per connection', async () => {
  const c = await setup()
  try {
    for (const v of ['/v1.24', '/v1.41', '']) {
      const r = await call(c.sock, 'GET', `${v}/version`)
      assert.is(r.status, 200)
      assert.is(JSON.parse(r.body).url, `${v}/version`)
      assert.is(r.headers.connection, 'close')
      const seen = c.engine.seen[c.engine.seen.length - 1]
      assert.is(seen.headers.connection, 'close')
    }
    // An old client's socket-path Host header is repaired.
    const r = await call(c.sock, 'GET', '/version', undefined, { Host: '/var/run/docker.sock' })
    assert.is(r.status, 200)
    assert.is(c.engine.seen[c.engine.seen.length - 1].headers.host, 'docker')
  } finally { await teardown(c) }
})

it('the unix socket copies the Docker socket mode', async () => {
  const c = await setup()
  try {
    assert.is(fs.statSync(c.sock).mode & 0o777, 0o660)
    assert.equal(c.proxy.addresses(), [`unix://${c.sock}`])
  } finally { await teardown(c) }
})

it('chunked streams are forwarded as they come, not buffered', async () => {
  const c = await setup()
  try {
    const got = await new Promise<string[]>((resolve, reject) => {
      const lines: string[] = []
      http.get({ socketPath: c.sock, path: '/v1.41/logs?follow=1', agent: false }, (res) => {
        assert.is(res.headers['transfer-encoding'], 'chunked')
        res.on('data', (d) => {
          lines.push(d.toString())
          if (lines.length === 1) c.engine.streamGate!() // only now does the engine send the rest
        })
        res.on('end', () => resolve(lines))
      }).on('error', reject)
    })
    assert.is(got.join(''), 'first\nsecond\n')
    assert.is(got[0], 'first\n')
  } finally { await teardown(c) }
})

it('Upgrade: tcp hijack pipes both ways and relays the half-close', async () => {
  const c = await setup()
  try {
    const out = await rawExchange(c.sock, 'POST /v1.41/containers/abc/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n', 'hello')
    assert.ok(out.startsWith('HTTP/1.1 101'), out)
    assert.ok(out.endsWith('\r\n\r\nHELLO[stdin closed]'), out)
    assert.is(c.engine.seen[0].headers.connection, 'Upgrade, close')
  } finally { await teardown(c) }
})

it("Docker's classic raw-stream hijack (200, no Upgrade) works too", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wproxy-'))
  // An engine that answers 200 raw-stream and then treats the connection as a raw pipe.
  const engineSock = path.join(dir, 'docker.sock')
  const raw = net.createServer({ allowHalfOpen: true }, (s) => {
    let head = ''
    const onData = (d: Buffer) => {
      head += d.toString()
      if (!head.includes('\r\n\r\n')) return
      s.off('data', onData)
      s.write('HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n')
      s.on('data', (x) => s.write(x.toString().toUpperCase()))
      s.on('end', () => s.end('[eof]'))
    }
    s.on('data', onData)
  })
  await new Promise<void>((r) => raw.listen(engineSock, r))
  const sock = path.join(dir, 'weave.sock')
  const proxy = createProxy({ socketPath: sock, docker: { socketPath: engineSock }, weavewaitDir: '/w', defaultIpalloc: true }, { clock: systemClock(), logger: memoryLogger(), hooks: {} })
  await proxy.start()
  try {
    const out = await rawExchange(sock, 'POST /v1.18/containers/abc/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: docker\r\n\r\n', 'abc')
    assert.ok(out.startsWith('HTTP/1.1 200 OK'), out)
    assert.ok(out.endsWith('\r\n\r\nABC[eof]'), out)
  } finally {
    await proxy.stop()
    await new Promise<void>((r) => raw.close(() => r()))
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

it('create: weavewait bound, /w/w prepended, image command filled in', async () => {
  const c = await setup()
  try {
    const r = await call(c.sock, 'POST', '/v1.41/containers/create?name=web', JSON.stringify({ Image: 'busybox', Env: ['A=1'], HostConfig: { Binds: ['/d:/d'] } }), { 'Content-Type': 'application/json' })
    assert.is(r.status, 201, r.body)
    const created = [...c.engine.containers.values()][0]
    assert.equal(created.Entrypoint, ['/w/w'])
    assert.equal(created.Cmd, ['sh'])
    assert.equal((created.HostConfig as { Binds: string[] }).Binds, ['/d:/d', '/opt/w:/w:ro'])
    const createCall = c.engine.seen.find((s) => s.url.includes('/containers/create'))!
    assert.is(createCall.url, '/v1.41/containers/create?name=web')
  } finally { await teardown(c) }
})

it('create: a chunked request body is read whole', async () => {
  const c = await setup()
  try {
    const json = JSON.stringify({ Image: 'busybox', Cmd: ['echo', 'hi'] })
    const chunked = `${(10).toString(16)}\r\n${json.slice(0, 10)}\r\n${(json.length - 10).toString(16)}\r\n${json.slice(10)}\r\n0\r\n\r\n`
    const out = await rawExchange(c.sock, `POST /containers/create HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\n\r\n${chunked}`, '')
    assert.ok(out.startsWith('HTTP/1.1 201'), out)
    const created = [...c.engine.containers.values()][0]
    assert.equal(created.Entrypoint, ['/w/w'])
    assert.equal(created.Cmd, ['echo', 'hi'])
  } finally { await teardown(c) }
})

it('create: a bad WEAVE_CIDR is refused with 400 before anything is created', async () => {
  const c = await setup()
  try {
    const r = await call(c.sock, 'POST', '/v1.41/containers/create', JSON.stringify({ Image: 'busybox', Env: ['WEAVE_CIDR=net:default ip:10.32.1.1'] }))
    assert.is(r.status, 400)
    assert.match(JSON.parse(r.body).message, '"ip:10.32.1.1"')
    assert.is(c.engine.containers.size, 0)
    assert.ok(c.engine.seen.every((s) => !s.url.includes('create')))
  } finally { await teardown(c) }
})

it('create: host network, container network, WEAVE_CIDR=none are left alone', async () => {
  const c = await setup()
  try {
    const bodies = [
      { Image: 'busybox', Cmd: ['true'], HostConfig: { NetworkMode: 'host' } },
      { Image: 'busybox', Cmd: ['true'], HostConfig: { NetworkMode: 'container:abc' } },
      { Image: 'busybox', Cmd: ['true'], Env: ['WEAVE_CIDR=none'] },
    ]
    for (const b of bodies) assert.is((await call(c.sock, 'POST', '/containers/create', JSON.stringify(b))).status, 201)
    for (const created of c.engine.containers.values()) {
      assert.is(created.Entrypoint, undefined)
      assert.equal(created.Cmd, ['true'])
    }
  } finally { await teardown(c) }
})

it("create: a WEAVE_CIDR in the image's env counts unless the request sets its own", async () => {
  const c = await setup()
  try {
    assert.is((await call(c.sock, 'POST', '/containers/create', JSON.stringify({ Image: 'noweave', Cmd: ['true'] }))).status, 201)
    assert.is([...c.engine.containers.values()][0].Entrypoint, undefined)
    assert.is((await call(c.sock, 'POST', '/containers/create', JSON.stringify({ Image: 'noweave', Cmd: ['true'], Env: ['WEAVE_CIDR=net:default'] }))).status, 201)
    assert.equal([...c.engine.containers.values()][1].Entrypoint, ['/w/w'])
    const bad = await call(c.sock, 'POST', '/containers/create', JSON.stringify({ Image: 'badweave', Cmd: ['true'] }))
    assert.is(bad.status, 400)
    assert.match(JSON.parse(bad.body).message, /"bogus".*image badweave/)
    assert.is(c.engine.containers.size, 2)
  } finally { await teardown(c) }
})

it('create: an unknown image gives 404 "No such image" (so the client pulls it)', async () => {
  const c = await setup()
  try {
    const r = await call(c.sock, 'POST', '/containers/create', JSON.stringify({ Image: 'nosuch:1' }))
    assert.is(r.status, 404)
    assert.is(JSON.parse(r.body).message, 'No such image: nosuch:1')
  } finally { await teardown(c) }
})

it('start: onStarted runs with pid and addresses before the response is returned', async () => {
  const order: string[] = []
  const c = await setup({ onStarted: async (s) => { order.push(`attach ${s.pid} ${s.items.map((i) => i.kind === 'net-default' ? 'default' : i.cidr).join(',')}`) } })
  try {
    await call(c.sock, 'POST', '/containers/create', JSON.stringify({ Image: 'busybox', Env: ['WEAVE_CIDR=ip:10.32.2.50/24'] }))
    const id = [...c.engine.containers.keys()][0]
    const r = await call(c.sock, 'POST', `/v1.41/containers/${id}/start`)
    order.push('response')
    assert.is(r.status, 204)
    assert.equal(order, ['attach 4242 10.32.2.50/24', 'response'])
  } finally { await teardown(c) }
})

it('start: a container not created through the proxy is not attached', async () => {
  const c = await setup()
  try {
    c.engine.containers.set('plain'.padEnd(64, '0'), { Image: 'busybox', Cmd: ['sh'] })
    const r = await call(c.sock, 'POST', `/containers/${'plain'.padEnd(64, '0')}/start`)
    assert.is(r.status, 204)
    assert.is(c.started.length, 0)
  } finally { await teardown(c) }
})

it('start: a failed attach kills the container and fails the start with the reason', async () => {
  const c = await setup({ onStarted: async () => { throw new Error('IPAM is not ready (awaiting consensus)') } })
  try {
    await call(c.sock, 'POST', '/containers/create', JSON.stringify({ Image: 'busybox' }))
    const id = [...c.engine.containers.keys()][0]
    const r = await call(c.sock, 'POST', `/containers/${id}/start`)
    assert.is(r.status, 500)
    const msg = JSON.parse(r.body).message as string
    assert.match(msg, 'IPAM is not ready (awaiting consensus)')
    assert.match(msg, 'the container was stopped')
    assert.equal(c.engine.killed, [id])
  } finally { await teardown(c) }
})

it('start: engine errors pass through unchanged, without attaching', async () => {
  const c = await setup()
  try {
    const r = await call(c.sock, 'POST', '/containers/nosuch/start')
    assert.is(r.status, 404)
    assert.match(JSON.parse(r.body).message, 'No such container')
    assert.is(c.started.length, 0)
  } finally { await teardown(c) }
})

it('--rewrite-inspect shows the weave address; without it inspect passes untouched', async () => {
  const c = await setup({ inspectAddress: (id) => id.startsWith('c1') ? { ip: '10.32.0.7', prefixLen: 12, mac: '02:00:00:00:00:07' } : undefined }, { rewriteInspect: true })
  try {
    await call(c.sock, 'POST', '/containers/create', JSON.stringify({ Image: 'busybox', Cmd: ['x'] }))
    await call(c.sock, 'POST', '/containers/create', JSON.stringify({ Image: 'busybox', Cmd: ['y'] }))
    const [id1, id2] = [...c.engine.containers.keys()]
    const r = await call(c.sock, 'GET', `/v1.41/containers/${id1}/json`)
    assert.is(r.status, 200)
    assert.is(r.headers['content-length'], String(Buffer.byteLength(r.body)))
    const ns = JSON.parse(r.body).NetworkSettings
    assert.equal([ns.IPAddress, ns.IPPrefixLen, ns.MacAddress], ['10.32.0.7', 12, '02:00:00:00:00:07'])
    assert.equal(ns.Networks, {})
    const r2 = await call(c.sock, 'GET', `/containers/${id2}/json`)
    assert.is(JSON.parse(r2.body).NetworkSettings.IPAddress, '')
    assert.is((await call(c.sock, 'GET', '/containers/nosuch/json')).status, 404)
  } finally { await teardown(c) }
  const plain = await setup({ inspectAddress: () => ({ ip: '10.32.0.7', prefixLen: 12 }) })
  try {
    await call(plain.sock, 'POST', '/containers/create', JSON.stringify({ Image: 'busybox', Cmd: ['x'] }))
    const r = await call(plain.sock, 'GET', `/containers/${[...plain.engine.containers.keys()][0]}/json`)
    assert.is(JSON.parse(r.body).NetworkSettings.IPAddress, '')
  } finally { await teardown(plain) }
})

it('TCP listener (loopback, ephemeral port) serves the same API', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wproxy-'))
  const engine = new FakeEngine(path.join(dir, 'docker.sock'))
  await engine.listen()
  const proxy = createProxy({ socketPath: path.join(dir, 'weave.sock'), tcp: { host: '127.0.0.1', port: 0 }, docker: { socketPath: engine.socketPath }, weavewaitDir: '/w', defaultIpalloc: true },
    { clock: systemClock(), logger: memoryLogger(), hooks: {} })
  await proxy.start()
  try {
    const tcp = proxy.addresses().find((a) => a.startsWith('tcp://'))!
    assert.match(tcp, /^tcp:\/\/127\.0\.0\.1:\d+$/)
    const port = Number(tcp.split(':')[2])
    const body = await new Promise<string>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: '/v1.41/version', agent: false }, (res) => {
        let b = ''
        res.on('data', (d) => { b += d })
        res.on('end', () => resolve(b))
      }).on('error', reject)
    })
    assert.is(JSON.parse(body).url, '/v1.41/version')
  } finally {
    await proxy.stop()
    await engine.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

it('TCP listener refuses what a web page sends (an Origin, a foreign Host) before the engine sees it', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wproxy-'))
  const engine = new FakeEngine(path.join(dir, 'docker.sock'))
  await engine.listen()
  const log = memoryLogger()
  const proxy = createProxy({ socketPath: path.join(dir, 'weave.sock'), tcp: { host: '127.0.0.1', port: 0 }, docker: { socketPath: engine.socketPath }, weavewaitDir: '/w', defaultIpalloc: true },
    { clock: systemClock(), logger: log, hooks: {} })
  await proxy.start()
  try {
    const port = Number(proxy.addresses().find((a) => a.startsWith('tcp://'))!.split(':')[2])
    const curl = async (args: string[]) => {
      const { stdout } = await promisify(execFile)('curl', ['-sS', '--max-time', '10', '-w', '\n%{http_code}', ...args, `http://127.0.0.1:${port}/containers/abc/kill`])
      return { code: Number(stdout.slice(stdout.lastIndexOf('\n') + 1)), body: stdout.slice(0, stdout.lastIndexOf('\n')) }
    }
    const seenBefore = engine.seen.length
    for (const args of [['-H', 'origin: http://evil.example'], ['-H', 'origin: null'], ['-H', `host: rebind.example:${port}`]]) {
      const r = await curl(['-X', 'POST', ...args])
      assert.is(r.code, 403, `${args.join(' ')}: ${r.body}`)
      assert.match(r.body, /weave proxy: refused/)
    }
    assert.is(engine.seen.length, seenBefore, 'the engine saw none of them')
    assert.equal(engine.killed, [])
    // what the docker CLI sends over TCP: Host = the address it was given, text/plain on a body-less POST
    const ok = await curl(['-X', 'POST', '-H', 'content-type: text/plain', '-H', 'user-agent: Docker-Client/24.0.7 (linux)'])
    assert.is(ok.code, 204, ok.body)
    assert.equal(engine.killed, ['abc'])
    assert.ok(log.lines.some((l) => /refused: a request from a web page/.test(l)), log.lines.join('\n'))
  } finally {
    await proxy.stop()
    await engine.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

it('onCreate sees the rewritten body and its changes reach the engine', async () => {
  const c = await setup({ onCreate: (body, ctx) => ({ ...body, Hostname: `${ctx.name}.weave.local`, Labels: { items: String(ctx.items.length) } }) })
  try {
    const r = await call(c.sock, 'POST', '/containers/create?name=db', JSON.stringify({ Image: 'busybox', Cmd: ['x'], Env: ['WEAVE_CIDR=net:default net:10.32.8.0/24'] }))
    assert.is(r.status, 201)
    const created = [...c.engine.containers.values()][0]
    assert.is(created.Hostname, 'db.weave.local')
    assert.equal(created.Labels, { items: '2' })
    assert.equal(created.Entrypoint, ['/w/w'])
  } finally { await teardown(c) }
})

it('stop() closes open streams and the socket file', async () => {
  const c = await setup()
  try {
    const ended = new Promise<void>((resolve) => {
      http.get({ socketPath: c.sock, path: '/logs?follow=1', agent: false }, (res) => {
        res.on('data', () => {})
        res.on('error', () => resolve())
        res.on('close', () => resolve())
      }).on('error', () => resolve())
    })
    await new Promise((r) => setTimeout(r, 50))
    await c.proxy.stop()
    await ended
    assert.not.ok(fs.existsSync(c.sock))
    assert.equal(c.proxy.addresses(), [])
  } finally { await c.engine.close(); fs.rmSync(c.dir, { recursive: true, force: true }) }
})

it('a stale socket file is replaced; a regular file is not', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wproxy-'))
  try {
    const file = path.join(dir, 'weave.sock')
    fs.writeFileSync(file, 'not a socket')
    const p = createProxy({ socketPath: file, docker: { socketPath: path.join(dir, 'docker.sock') }, weavewaitDir: '/w', defaultIpalloc: true }, { clock: systemClock(), logger: memoryLogger(), hooks: {} })
    let err: Error | undefined
    try { await p.start() } catch (e) { err = e as Error }
    assert.match(err?.message ?? '', 'is not a socket')
    fs.rmSync(file)
    // A crashed daemon leaves its socket file behind: listen in a child and SIGKILL it.
    spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(file)}, () => process.kill(process.pid, 'SIGKILL'))`])
    assert.ok(fs.existsSync(file))
    const p2 = createProxy({ socketPath: file, docker: { socketPath: path.join(dir, 'docker.sock') }, weavewaitDir: '/w', defaultIpalloc: true }, { clock: systemClock(), logger: memoryLogger(), hooks: {} })
    await p2.start()
    await p2.stop()
  } finally { fs.rmSync(dir, { recursive: true, force: true }) }
})

it('every kind of call leaves no connection open behind it', async () => {
  const c = await setup({ inspectAddress: () => ({ ip: '10.32.0.7', prefixLen: 12 }) }, { rewriteInspect: true })
  try {
    await call(c.sock, 'GET', '/version')
    await call(c.sock, 'POST', '/containers/create', JSON.stringify({ Image: 'busybox', Env: ['WEAVE_CIDR=bad'] }))
    await call(c.sock, 'POST', '/containers/create', JSON.stringify({ Image: 'busybox' }))
    const id = [...c.engine.containers.keys()][0]
    await call(c.sock, 'POST', `/containers/${id}/start`)
    await call(c.sock, 'GET', `/containers/${id}/json`)
    await rawExchange(c.sock, 'POST /containers/abc/attach HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n', 'x')
    const deadline = Date.now() + 10_000 // a wait, not a bound: long enough for a loaded machine
    while (c.proxy.openConnections() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    assert.is(c.proxy.openConnections(), 0)
  } finally { await teardown(c) }
})

it('an unreachable engine gives a 502 that names it', async () => {
  const c = await setup({}, { engineUp: false })
  try {
    const r = await call(c.sock, 'GET', '/version')
    assert.is(r.status, 502)
    assert.match(JSON.parse(r.body).message, 'cannot reach the Docker engine at unix://')
  } finally { await teardown(c) }
})

it('container events reach onEvent (other types filtered out)', async () => {
  const events: ContainerEvent[] = []
  let done: () => void
  const two = new Promise<void>((r) => { done = r })
  const c = await setup({ onEvent: (e) => { events.push(e); if (events.length === 2) done() } })
  try {
    await two
    assert.equal(events.map((e) => `${e.action} ${e.id}`), ['die abc', 'destroy abc'])
    assert.is(events[0].attributes.exitCode, '0')
    assert.match(c.engine.seen.find((s) => s.url.startsWith('/events'))!.url, 'filters=')
  } finally { await teardown(c) }
})

it('intercepted calls are timed: weave_request_duration_seconds{component="proxy"} by route and outcome', async () => {
  const c = await setup()
  try {
    const count = async (route: string, code: string) => {
      const m = new RegExp(`^weave_request_duration_seconds_count\\{component="proxy",route="${route}",code="${code}"\\} (\\d+)$`, 'm').exec(await latencyMetrics())
      return m ? Number(m[1]) : 0
    }
    const [ok0, bad0] = [await count('create', 'forwarded'), await count('create', '400')]
    assert.is((await call(c.sock, 'POST', '/containers/create', JSON.stringify({ Image: 'busybox', Cmd: ['true'] }))).status, 201)
    assert.is((await call(c.sock, 'POST', '/containers/create', JSON.stringify({ Image: 'badweave', Cmd: ['true'] }))).status, 400)
    await new Promise((r) => setTimeout(r, 50)) // the client connection's close ends the timing
    assert.is(await count('create', 'forwarded'), ok0 + 1)
    assert.is(await count('create', '400'), bad0 + 1)
  } finally { await teardown(c) }
})

it.run()
