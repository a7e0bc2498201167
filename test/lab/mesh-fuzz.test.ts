// Bad input at a live daemon's mesh port. Lab host h1 runs `weave launch`, h2 runs one too and
// connects to h1 (the legit connection), h3 runs a small Node fuzzer inside its namespace that
// throws random bytes, truncated frames, huge length prefixes and malformed MessagePack at
// h1:6783 for a bounded time and count. Then: h1's daemon still answers, the h2 connection is the
// same one as before (same remote port) and still established, and h1's log has exactly one
// "refused connection from <h3>" line per fuzz connection.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { labUnavailableReason, waitFor, withLab, type LabHost } from '../lab'
import { skipFile } from '../skip'

const FUZZ_MS = 10_000
const FUZZ_MAX_CONNECTIONS = 150
const MESH_PORT = 6783

/**
 * The fuzzer, run with `node -e` inside h3: argv = host, port, seed, durationMs, maxConnections.
 * Each connection gets one kind of bad input, then half-closes; it prints `{"connections":N}`
 * (connections that were accepted by the kernel, each of which the daemon must refuse once).
 */
const FUZZER = String.raw`
const net = require('node:net')
const [host, port, seed, durMs, maxConn] = process.argv.slice(1).map((x, i) => i === 0 ? x : Number(x))
let a = seed >>> 0
const rnd = () => { a = (a + 0x6d2b79f5) >>> 0; let t = a; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296 }
const bytes = (n) => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)))
const header = Buffer.from([0x77, 0x76, 0x74, 0x73, 1, 1])
const frame = (body) => { const h = Buffer.alloc(4); h.writeUInt32BE(body.length); return Buffer.concat([h, body]) }
// kx envelope {v:1, t:'kx', pub:nil} in MessagePack
const kx = frame(Buffer.from([0x83, 0xa1, 0x76, 0x01, 0xa1, 0x74, 0xa2, 0x6b, 0x78, 0xa3, 0x70, 0x75, 0x62, 0xc0]))
const kinds = [
  () => bytes(1 + Math.floor(rnd() * 200)),                                    // random bytes
  () => Buffer.concat([header, bytes(Math.floor(rnd() * 40))]),                // header, then noise
  () => Buffer.concat([header, Buffer.from([0xff, 0xff, 0xff, 0xf0])]),        // huge length prefix
  () => Buffer.concat([header, Buffer.from([0, 0, 0, 100]), bytes(10)]),       // truncated frame
  () => Buffer.concat([header, frame(bytes(1 + Math.floor(rnd() * 30)))]),     // malformed MessagePack
  () => Buffer.concat([header, kx, frame(Buffer.from([0x81, 0xa1, 0x76]))]),   // valid offer, broken hello
  () => Buffer.concat([header, kx, frame(bytes(20))]),                          // valid offer, garbage hello
  () => header.subarray(0, Math.floor(rnd() * 6)),                             // truncated header
  () => Buffer.from([0x77, 0x76, 0x74, 0x73, 9, 9]),                           // unsupported versions
]
const until = Date.now() + durMs
let started = 0, connected = 0, running = 0
function one() {
  if (Date.now() > until || started >= maxConn) { if (running === 0) finish(); return }
  started++; running++
  const s = net.connect({ host, port })
  const kill = setTimeout(() => s.destroy(), 3000)
  s.on('connect', () => { connected++; s.write(kinds[Math.floor(rnd() * kinds.length)]()); s.end() })
  s.on('error', () => {})
  s.on('data', () => {})
  s.on('close', () => { clearTimeout(kill); running--; setTimeout(one, 20) })
}
let done = false
function finish() { if (done) return; done = true; console.log(JSON.stringify({ connections: connected })) }
for (let i = 0; i < 4; i++) one()
`


async function connectionsText(h: LabHost): Promise<string> {
  const r = await h.weave(['status', 'connections'], { allowFail: true, timeoutMs: 10_000 })
  return r.code === 0 ? r.stdout : ''
}

function logOf(h: LabHost): string {
  try { return fs.readFileSync(path.join(h.weaveRunDir, 'weaver.log'), 'utf8') } catch { return '' }
}

const why = labUnavailableReason({})
if (why) skipFile('mesh-fuzz', why)
else test('fuzzing the mesh port: the daemon stays up, keeps its peer, logs one line per refused connection', async () => {
  await withLab({ hosts: 3 }, async (lab) => {
    const [h1, h2, h3] = lab.hosts as [LabHost, LabHost, LabHost]
    try {
      await h1.launchWeave([])
      await waitFor(`h1 listening on the mesh port ${MESH_PORT}`, async () => {
        const ss = await h1.exec(['ss', '-ltnH', `sport = :${MESH_PORT}`], { allowFail: true })
        return ss.stdout.includes(`:${MESH_PORT}`)
      }, 10_000, 250).catch((err) => {
        throw new Error(`${String(err)}; h1 log tail:\n${logOf(h1).split('\n').slice(-10).join('\n')}`)
      })
      await h2.launchWeave([h1.underlayIp])
      // The legit connection, seen from h1: "<- 192.168.250.2:PORT  established ...".
      const legitRe = new RegExp(`(${h2.underlayIp.replace(/\./g, '\\.')}:\\d+)\\s+established`)
      const legit = await waitFor('h2 connected to h1', async () => legitRe.exec(await connectionsText(h1))?.[1], 30_000, 500)
        .catch(async (err) => {
          throw new Error(`${String(err)}; h1 connections:\n${await connectionsText(h1)}\nh1 log tail:\n${logOf(h1).split('\n').slice(-10).join('\n')}`)
        })
      const refusedFromH3 = () => logOf(h1).split('\n').filter((l) => l.includes(`refused connection from ${h3.underlayIp}:`)).length
      const before = refusedFromH3()

      const r = await h3.exec([process.execPath, '-e', FUZZER, h1.underlayIp, String(MESH_PORT), '20261123', String(FUZZ_MS), String(FUZZ_MAX_CONNECTIONS)],
        { timeoutMs: FUZZ_MS + 30_000 })
      const { connections } = JSON.parse(r.stdout.trim().split('\n').pop()!) as { connections: number }
      assert.ok(connections > 20, `the fuzzer got ${connections} connections through`)

      // Every fuzz connection is refused exactly once (stragglers hit the 10 s handshake timeout).
      await waitFor('one refusal line per fuzz connection', () => refusedFromH3() - before >= connections, 20_000, 250)
      await new Promise((res) => setTimeout(res, 500))
      assert.is(refusedFromH3() - before, connections, 'exactly one log line per refused connection')

      const st = await h1.api('/status')
      assert.is(st.status, 200, 'the daemon still answers')
      const after = legitRe.exec(await connectionsText(h1))?.[1]
      assert.is(after, legit, 'the connection from h2 stayed up (same remote address and port)')
      const codes: Record<string, number> = {}
      for (const l of logOf(h1).split('\n')) {
        const m = new RegExp(`refused connection from ${h3.underlayIp.replace(/\./g, '\\.')}:\\d+: ([a-z-]+)`).exec(l)
        if (m) codes[m[1]] = (codes[m[1]] ?? 0) + 1
      }
      console.log(`mesh-fuzz: ${connections} fuzz connections, each refused once (${JSON.stringify(codes)}); daemon up; ${legit} still established`)
    } finally {
      await h2.weave(['stop'], { allowFail: true, timeoutMs: 20_000 }).catch(() => {})
      await h1.weave(['stop'], { allowFail: true, timeoutMs: 20_000 }).catch(() => {})
    }
  })
})

test.run()
