// A dockerd that accepts and never answers (a real unix-socket server) must not hang the engine
// client or the proxy: calls fail with ENGINE_TIMEOUT at the deadline, the events stream too,
// and a docker client's create through the proxy gets a 504 instead of waiting forever.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { createEngineClient, createProxy } from '../../proxy'
import { memoryLogger, systemClock } from '../../router/deps'

interface Hung { sock: string; dir: string; close(): Promise<void>; conns: number }

/** A unix-socket "dockerd" that reads requests and answers nothing (or only headers with `headersOnly`). */
async function hungEngine(headersOnly = false): Promise<Hung> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hung-engine-'))
  const sock = path.join(dir, 'docker.sock')
  const held: net.Socket[] = []
  const h: Hung = { sock, dir, conns: 0, close: async () => {
    for (const s of held) s.destroy()
    await new Promise((r) => server.close(r))
    fs.rmSync(dir, { recursive: true, force: true })
  } }
  const server = net.createServer((s) => {
    h.conns++
    held.push(s)
    s.on('error', () => {})
    if (headersOnly) s.once('data', () => s.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"Id":'))
  })
  await new Promise<void>((r) => server.listen(sock, r))
  return h
}

async function timed<T>(p: Promise<T>): Promise<{ ms: number; err?: Error & { code?: string } }> {
  const t0 = performance.now()
  try { await p; return { ms: performance.now() - t0 } } catch (err) { return { ms: performance.now() - t0, err: err as Error & { code?: string } } }
}

test('request and stream to a silent engine fail with ENGINE_TIMEOUT at the deadline', async () => {
  const e = await hungEngine()
  try {
    const c = createEngineClient({ socketPath: e.sock }, { timeoutMs: 300 })
    const calls: Array<Promise<unknown>> = [c.request('GET', '/containers/abc/json'), c.request('POST', '/containers/abc/kill', {}), c.stream('/events')]
    for (const r of await Promise.all(calls.map((p) => timed(p)))) {
      assert.is(r.err?.code, 'ENGINE_TIMEOUT', String(r.err))
      assert.match(r.err!.message, /did not answer .* within 0\.3 s/)
      assert.ok(r.ms >= 250 && r.ms < 5000, `${r.ms.toFixed(0)} ms`)
    }
    assert.is(e.conns, 3, 'each call reached the engine')
  } finally { await e.close() }
})

test('an engine that sends headers and stalls the body: the call still ends at the deadline', async () => {
  const e = await hungEngine(true)
  try {
    const r = await timed(createEngineClient({ socketPath: e.sock }, { timeoutMs: 300 }).request('GET', '/images/busybox/json'))
    assert.is(r.err?.code, 'ENGINE_TIMEOUT', String(r.err))
  } finally { await e.close() }
})

test('docker create through the proxy while dockerd hangs: a 504 naming the engine, not a hang', async () => {
  const e = await hungEngine()
  const proxySock = path.join(e.dir, 'weave.sock')
  const proxy = createProxy({ socketPath: proxySock, docker: { socketPath: e.sock }, weavewaitDir: '/w', defaultIpalloc: true, engineTimeoutMs: 300 },
    { clock: systemClock(), logger: memoryLogger(), hooks: {} })
  await proxy.start()
  try {
    // no Cmd/Entrypoint: the proxy asks the engine for the image's command first
    const body = JSON.stringify({ Image: 'busybox' })
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ socketPath: proxySock, method: 'POST', path: '/v1.41/containers/create', headers: { Host: 'docker', 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
        let b = ''
        res.on('data', (d: Buffer) => { b += d.toString() })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }))
      })
      req.setTimeout(10_000, () => req.destroy(new Error('the proxy hung')))
      req.on('error', reject)
      req.end(body)
    })
    assert.is(answer.status, 504, answer.body)
    assert.match(answer.body, /did not answer GET \/images\/busybox\/json/)
  } finally {
    await proxy.stop()
    await e.close()
  }
})

test.run()
