/**
 * Kept-alive client connections through the proxy: small framed calls (the docker client's
 * `HEAD /_ping` + its call) share one client connection and one engine connection; anything
 * else on that connection is still intercepted and closes it. Plus the pure framing helpers.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { createProxy, type Proxy } from '../../proxy'
import { responseFrame } from '../../proxy/http-head'
import { keepAliveSafe } from '../../proxy/routes'
import { memoryLogger, systemClock } from '../../router/deps'

const pure = suite('keep-alive framing')

pure('responseFrame: Content-Length, chunked, bodiless, unframed', () => {
  const b = (s: string) => Buffer.from(s, 'latin1')
  const cl = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello'
  assert.equal(responseFrame(b(cl), 'GET'), { kind: 'done', length: cl.length, close: false })
  assert.equal(responseFrame(b(cl.slice(0, -1)), 'GET'), { kind: 'more' })
  assert.equal(responseFrame(b('HTTP/1.1 200 OK\r\nContent-Len'), 'GET'), { kind: 'more' })
  // HEAD: a Content-Length but no body.
  const head = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n'
  assert.equal(responseFrame(b(head), 'HEAD'), { kind: 'done', length: head.length, close: true })
  assert.equal(responseFrame(b('HTTP/1.1 204 No Content\r\n\r\n'), 'GET'), { kind: 'done', length: 27, close: false })
  const ch = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'
  assert.equal(responseFrame(b(ch), 'GET'), { kind: 'done', length: ch.length, close: false })
  assert.equal(responseFrame(b(ch.slice(0, -2)), 'GET'), { kind: 'more' })
  assert.equal(responseFrame(b('HTTP/1.1 200 OK\r\n\r\nstream...'), 'GET'), { kind: 'unframed' })
  assert.equal(responseFrame(b('HTTP/1.1 101 UPGRADED\r\nUpgrade: tcp\r\n\r\n'), 'POST'), { kind: 'unframed' })
  assert.equal(responseFrame(b('HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n'), 'GET'), { kind: 'unframed' })
})

pure('keepAliveSafe: listed GET/HEAD calls only, any version prefix', () => {
  for (const [m, t] of [['HEAD', '/_ping'], ['GET', '/_ping'], ['GET', '/v1.41/version'], ['GET', '/v1.24/containers/json?all=1'], ['GET', '/containers/abc/json'], ['GET', '/images/busybox:latest/json']]) {
    assert.ok(keepAliveSafe(m, t), `${m} ${t}`)
  }
  for (const [m, t] of [['POST', '/containers/create'], ['POST', '/v1.41/containers/abc/start'], ['GET', '/events'], ['GET', '/containers/abc/logs?follow=1'],
    ['GET', '/containers/abc/stats'], ['POST', '/containers/abc/attach'], ['GET', '/containers/abc/archive?path=/'], ['DELETE', '/containers/abc']]) {
    assert.not.ok(keepAliveSafe(m, t), `${m} ${t}`)
  }
})

pure.run()

const it = suite('proxy keep-alive')

interface Env { dir: string; engine: http.Server; engineConns: number; seen: string[]; proxy: Proxy; sock: string }

async function setup(): Promise<Env> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wproxy-ka-'))
  const env = { dir, engineConns: 0, seen: [] as string[], sock: path.join(dir, 'weave.sock') } as Env
  env.engine = http.createServer((req, res) => {
    const parts: Buffer[] = []
    req.on('data', (d) => parts.push(d))
    req.on('end', () => {
      env.seen.push(`${req.method} ${req.url} ${Buffer.concat(parts).toString()}`)
      const p = req.url!.replace(/^\/v[\d.]+/, '').split('?')[0]
      const json = (status: number, o: unknown) => {
        const b = JSON.stringify(o)
        res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(b) }).end(b)
      }
      if (p === '/_ping') { res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 2 }).end('OK'); return }
      if (p === '/version') return json(200, { ApiVersion: '1.41' })
      if (p === '/containers/json') {
        // Chunked, as Go sends larger answers.
        res.writeHead(200, { 'Content-Type': 'application/json' })
        res.write('[{"Id":')
        res.end('"abc"}]')
        return
      }
      if (p === '/images/busybox/json') return json(200, { Config: { Cmd: ['sh'], Entrypoint: null } })
      if (p === '/containers/create') return json(201, { Id: 'c1', Warnings: [] })
      json(404, { message: `fake engine: ${p}` })
    })
  })
  env.engine.on('connection', () => { env.engineConns++ })
  await new Promise<void>((r) => env.engine.listen(path.join(dir, 'docker.sock'), r))
  env.proxy = createProxy(
    { socketPath: env.sock, docker: { socketPath: path.join(dir, 'docker.sock') }, weavewaitDir: '/opt/w', defaultIpalloc: true, attachTimeoutMs: 2000 },
    { clock: systemClock(), logger: memoryLogger(), hooks: {} },
  )
  await env.proxy.start()
  return env
}

async function teardown(e: Env) {
  await e.proxy.stop()
  e.engine.closeAllConnections()
  await new Promise<void>((r) => e.engine.close(() => r()))
  fs.rmSync(e.dir, { recursive: true, force: true })
}

/** A raw client on one connection: send each request after the previous answer is complete. */
async function session(sock: string, requests: Array<{ text: string; method: string }>): Promise<{ answers: string[]; closedByProxy: boolean }> {
  const s = net.connect({ path: sock, allowHalfOpen: true })
  let buf = Buffer.alloc(0)
  let ended = false
  let wake: (() => void) | undefined
  s.on('data', (d) => { buf = Buffer.concat([buf, d]); wake?.() })
  s.on('end', () => { ended = true; wake?.() })
  const answers: string[] = []
  try {
    for (const r of requests) {
      s.write(r.text)
      for (;;) {
        const f = responseFrame(buf, r.method)
        if (f.kind === 'done') { answers.push(buf.subarray(0, f.length).toString()); buf = buf.subarray(f.length); break }
        if (ended) { answers.push(buf.toString()); buf = Buffer.alloc(0); break }
        await new Promise<void>((res, rej) => { wake = res; setTimeout(() => rej(new Error(`no answer to ${r.text.split('\r\n')[0]}`)), 2000) })
      }
    }
    // Wait briefly for a close the proxy may send after the last answer.
    if (!ended) await new Promise<void>((res) => { wake = res; setTimeout(res, 200) })
    return { answers, closedByProxy: ended }
  } finally {
    s.destroy()
  }
}

const get = (m: string, p: string) => ({ method: m, text: `${m} ${p} HTTP/1.1\r\nHost: docker\r\n\r\n` })

it('ping, version and a chunked list share one client and one engine connection', async () => {
  const e = await setup()
  try {
    const r = await session(e.sock, [get('HEAD', '/_ping'), get('GET', '/v1.41/version'), get('GET', '/v1.41/containers/json?all=1')])
    assert.is(r.answers.length, 3)
    assert.match(r.answers[0], /^HTTP\/1\.1 200/)
    assert.match(r.answers[1], '"ApiVersion":"1.41"')
    assert.match(r.answers[2], /\r\n\r\n7\r\n\[\{"Id":\r\n7\r\n"abc"\}\]\r\n0\r\n\r\n$/)
    assert.not.ok(r.closedByProxy, 'the connection stays open for a next call')
    assert.is(e.engineConns, 1)
    assert.equal(e.seen.map((s) => s.split(' ').slice(0, 2).join(' ')), ['HEAD /_ping', 'GET /v1.41/version', 'GET /v1.41/containers/json?all=1'])
  } finally { await teardown(e) }
})

it('a create after kept-alive calls on the same connection is still intercepted, then the connection closes', async () => {
  const e = await setup()
  try {
    const body = JSON.stringify({ Image: 'busybox' })
    const create = { method: 'POST', text: `POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}` }
    const r = await session(e.sock, [get('HEAD', '/_ping'), create])
    assert.match(r.answers[1], /^HTTP\/1\.1 201/)
    const seenCreate = e.seen.find((s) => s.startsWith('POST /v1.41/containers/create'))!
    assert.match(seenCreate, '"Entrypoint":["/w/w"]', 'rewritten by the create interceptor')
    assert.ok(r.closedByProxy, 'one intercepted call per connection')
  } finally { await teardown(e) }
})

it('a client saying Connection: close, or a streaming call, gets the connection closed after it', async () => {
  const e = await setup()
  try {
    const r = await session(e.sock, [{ method: 'GET', text: 'GET /version HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n' }])
    assert.match(r.answers[0], /^HTTP\/1\.1 200/)
    assert.ok(r.closedByProxy)
    const r2 = await session(e.sock, [get('GET', '/nonexistent')])
    assert.match(r2.answers[0], /^HTTP\/1\.1 404/)
    assert.ok(r2.closedByProxy)
  } finally { await teardown(e) }
})

it('a client closing between calls frees both connections', async () => {
  const e = await setup()
  try {
    await session(e.sock, [get('HEAD', '/_ping')])
    const deadline = Date.now() + 10_000 // a wait, not a bound: long enough for a loaded machine
    while (e.proxy.openConnections() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    assert.is(e.proxy.openConnections(), 0)
  } finally { await teardown(e) }
})

it('a kept engine connection closed as the next call goes out: the call is sent again on a fresh one', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wproxy-ka-'))
  const engineSock = path.join(dir, 'docker.sock')
  let conns = 0
  let requests = 0
  // Answers the first request on each connection; drops the connection at the second, unanswered.
  const raw = net.createServer((s) => {
    conns++
    let n = 0
    let head = ''
    s.on('data', (d) => {
      head += d.toString()
      while (head.includes('\r\n\r\n')) {
        head = head.slice(head.indexOf('\r\n\r\n') + 4)
        requests++
        if (++n > 1) { s.destroy(); return }
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK')
      }
    })
  })
  await new Promise<void>((r) => raw.listen(engineSock, r))
  const sock = path.join(dir, 'weave.sock')
  const proxy = createProxy({ socketPath: sock, docker: { socketPath: engineSock }, weavewaitDir: '/w', defaultIpalloc: true }, { clock: systemClock(), logger: memoryLogger(), hooks: {} })
  await proxy.start()
  try {
    const r = await session(sock, [get('GET', '/version'), get('GET', '/version')])
    assert.is(r.answers.length, 2)
    for (const a of r.answers) assert.match(a, /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nOK$/)
    assert.is(requests, 3, 'the second call twice: lost once, then answered')
    assert.is(conns, 2)
  } finally {
    await proxy.stop()
    await new Promise<void>((r) => raw.close(() => r()))
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

it.run()
