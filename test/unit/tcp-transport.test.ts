// The TCP transport on 127.0.0.1 with ephemeral ports: handshakes plain and encrypted, refusals,
// garbage on the port, heartbeat timeout through a proxy that silently stops forwarding, the
// accept rate limit.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as net from 'node:net'
import { cryptoRng, FakeClock, memoryLogger, systemClock, type Clock } from '../../router/deps'
import {
  createTcpTransport, derivePasswordKey, HandshakeError, parsePeerName,
  type HandshakeFailure, type LocalIdentity, type MeshMessage, type PasswordKey, type PeerConnection, type PeerName, type TcpTransport,
} from '../../router/mesh'

function identity(n: number): LocalIdentity {
  return {
    name: parsePeerName(`aa:bb:cc:00:00:${n.toString(16).padStart(2, '0')}`) as PeerName, nickname: `h${n}`,
    uid: BigInt(n), shortId: () => n, overlays: ['sleeve'],
  }
}

const open: TcpTransport[] = []
const rawSockets: net.Socket[] = []
let pw1: PasswordKey, pw2: PasswordKey
test.before(async () => {
  pw1 = await derivePasswordKey('one')
  pw2 = await derivePasswordKey('two')
})
test.after.each(async () => {
  for (const s of rawSockets.splice(0)) s.destroy()
  for (const t of open.splice(0)) await t.close()
})

function transport(n: number, extra: { password?: PasswordKey; clock?: Clock; heartbeatIntervalMs?: number; heartbeatTimeoutMs?: number; acceptBurst?: number; acceptRefillMs?: number } = {}) {
  const logger = memoryLogger()
  const t = createTcpTransport({ local: identity(n), listenAddr: '127.0.0.1', listenPort: 0, ...extra },
    { clock: extra.clock ?? systemClock(), rng: cryptoRng(), logger })
  open.push(t)
  return { t, logger }
}

async function listening(n: number, extra: Parameters<typeof transport>[1] = {}) {
  const x = transport(n, extra)
  const accepted: PeerConnection[] = []
  const refused: { addr: string; why: HandshakeFailure }[] = []
  await x.t.listen((c) => accepted.push(c), (addr, why) => refused.push({ addr, why }))
  return { ...x, accepted, refused, addr: `127.0.0.1:${x.t.address()!.port}` }
}

/** Polls until `cond`; the default leaves room for a loaded machine (a wait, not a timing bound). */
async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  const until = Date.now() + ms
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 10))
  }
}

function collect(c: PeerConnection): MeshMessage[] {
  const got: MeshMessage[] = []
  c.onMessage((m) => got.push(m))
  return got
}

test('plain: two transports connect and exchange messages both ways', async () => {
  const a = await listening(1)
  const b = transport(2)
  const conn = await b.t.dial(a.addr)
  await waitFor(() => a.accepted.length === 1)
  const inb = a.accepted[0]
  assert.is(conn.remote.name, identity(1).name)
  assert.is(inb.remote.name, identity(2).name)
  assert.is(conn.connUid, inb.connUid)
  assert.is(conn.encrypted, false)
  assert.match(inb.remoteAddr, /^127\.0\.0\.1:\d+$/)
  assert.is(conn.remoteAddr, a.addr)
  const gotA = collect(inb), gotB = collect(conn)
  for (let i = 0; i < 50; i++) conn.send({ type: 'gossip', channel: 'topology', src: identity(2).name, payload: new Uint8Array([i]) })
  inb.send({ type: 'overlay', payload: new Uint8Array([7]) })
  await waitFor(() => gotA.length === 50 && gotB.length === 1)
  assert.equal(gotA.map((m) => (m as { payload: Uint8Array }).payload[0]), [...Array(50).keys()])
})

test('encrypted: same password connects and carries a 1 MiB payload', async () => {
  const a = await listening(1, { password: pw1 })
  const b = transport(2, { password: pw1 })
  const conn = await b.t.dial(a.addr)
  assert.is(conn.encrypted, true)
  await waitFor(() => a.accepted.length === 1)
  const got = collect(a.accepted[0])
  const big = new Uint8Array(1 << 20).map((_, i) => i & 0xff)
  conn.send({ type: 'gossip-broadcast', channel: 'ipam', src: identity(2).name, payload: big })
  await waitFor(() => got.length === 1)
  const p = (got[0] as { payload: Uint8Array }).payload
  assert.is(p.length, big.length)
  assert.is(p[12345], big[12345])
})

test('wrong password: refused as password-mismatch at both ends, one log line on the listener', async () => {
  const a = await listening(1, { password: pw1 })
  const b = transport(2, { password: pw2 })
  const err = await b.t.dial(a.addr).catch((e) => e)
  assert.instance(err, HandshakeError)
  assert.is((err as HandshakeError).failure.code, 'password-mismatch')
  await waitFor(() => a.refused.length === 1)
  assert.is(a.refused[0].why.code, 'password-mismatch')
  assert.is(a.accepted.length, 0)
  assert.is(a.logger.lines.filter((l) => l.includes('refused connection from')).length, 1)
  assert.ok(b.logger.lines.some((l) => /connection to 127\.0\.0\.1:\d+ refused: password-mismatch/.test(l)))
})

test('no password against a password: encryption-mismatch naming the side without one', async () => {
  const a = await listening(1, { password: pw1 })
  const b = transport(2)
  const err = (await b.t.dial(a.addr).catch((e) => e)) as HandshakeError
  assert.is(err.failure.code, 'encryption-mismatch')
  assert.match(err.failure.message, /remote has a password but we have none/)
  await waitFor(() => a.refused.length === 1)
  assert.match(a.refused[0].why.message, /we have a password but the remote has none/)
})

test('dial to a closed port rejects with io-error', async () => {
  const a = await listening(1)
  const port = a.t.address()!.port
  await a.t.close()
  const b = transport(2)
  const err = (await b.t.dial(`127.0.0.1:${port}`).catch((e) => e)) as HandshakeError
  assert.instance(err, HandshakeError)
  assert.is(err.failure.code, 'io-error')
})

test('garbage, truncated frames and a huge length prefix are refused; other connections stay up', async () => {
  const a = await listening(1)
  const b = transport(2)
  const conn = await b.t.dial(a.addr)
  await waitFor(() => a.accepted.length === 1)
  const inputs = [
    Buffer.from('GET / HTTP/1.1\r\n\r\n'),
    Buffer.from([0x77, 0x76, 0x74, 0x73, 1, 1, 0xff, 0xff, 0xff, 0xff]), // huge length
    Buffer.from([0x77, 0x76, 0x74, 0x73, 1, 1, 0, 0, 0, 3, 0xc1, 0xc1, 0xc1]), // bad MessagePack
    Buffer.from([0x77, 0x76, 0x74, 0x73, 1, 1, 0, 0, 0, 40, 1, 2]), // truncated, then closed
  ]
  for (const bytes of inputs) {
    const s = net.connect(Number(a.addr.split(':')[1]), '127.0.0.1')
    rawSockets.push(s)
    s.on('error', () => {})
    await new Promise((r) => s.once('connect', r))
    s.write(bytes)
    s.end()
  }
  await waitFor(() => a.refused.length === inputs.length)
  assert.equal(a.refused.map((r) => r.why.code).sort(), ['bad-message', 'bad-message', 'bad-message', 'io-error'])
  assert.is(a.logger.lines.filter((l) => l.includes('refused connection from')).length, inputs.length)
  const got = collect(a.accepted[0])
  conn.send({ type: 'overlay', payload: new Uint8Array([1]) })
  await waitFor(() => got.length === 1)
})

// Time is a FakeClock shared by both ends (no real-clock bound to flake on a loaded machine): each
// 100 ms step fires both ends' heartbeat timers, and the next step waits until both heartbeats went
// through the proxy, so the only silence the ends see is the one the test makes.
test('heartbeat timeout notices a silently dead peer within the timeout (injected clock)', async () => {
  const clock = new FakeClock(0)
  const hb = { clock, heartbeatIntervalMs: 100, heartbeatTimeoutMs: 500 }
  const a = await listening(1, hb)
  const b = transport(2, hb)
  // A proxy between them that can stop forwarding without closing anything.
  let frozen = false
  const seen = { toA: 0, toB: 0 }
  const proxySockets: net.Socket[] = []
  const proxy = net.createServer((inb) => {
    const out = net.connect(Number(a.addr.split(':')[1]), '127.0.0.1')
    proxySockets.push(inb, out)
    inb.on('error', () => {}); out.on('error', () => {})
    inb.on('data', (d) => { seen.toA++; if (!frozen) out.write(d) })
    out.on('data', (d) => { seen.toB++; if (!frozen) inb.write(d) })
  })
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r))
  const step = async () => {
    const before = { ...seen }
    clock.advance(100)
    if (!frozen) await waitFor(() => seen.toA > before.toA && seen.toB > before.toB)
  }
  try {
    const conn = await b.t.dial(`127.0.0.1:${(proxy.address() as net.AddressInfo).port}`)
    await waitFor(() => a.accepted.length === 1)
    const reasons: string[] = []
    conn.onClose((r) => reasons.push(`b: ${r}`))
    a.accepted[0].onClose((r) => reasons.push(`a: ${r}`))
    for (let i = 0; i < 20; i++) await step()
    assert.equal(reasons, [], 'healthy for 2 s (clock) while heartbeats flow')
    frozen = true
    const t0 = clock.now()
    while (reasons.length < 2 && clock.now() - t0 < 5000) await step()
    const took = clock.now() - t0
    assert.ok(took >= 500 && took <= 600, `both ends noticed after ${took} ms of silence (timeout 500, heartbeat every 100)`)
    assert.ok(reasons.every((r) => /heartbeat timeout/.test(r)), reasons.join('; '))
  } finally {
    for (const s of proxySockets) s.destroy()
    await new Promise((r) => proxy.close(r))
  }
})

test('closing a transport closes its connections and tells the remote why', async () => {
  const a = await listening(1)
  const b = transport(2)
  const conn = await b.t.dial(a.addr)
  const reasons: string[] = []
  conn.onClose((r) => reasons.push(r))
  await waitFor(() => a.accepted.length === 1)
  await a.t.close()
  await waitFor(() => reasons.length === 1)
  assert.is(reasons[0], 'remote closed: transport closed')
})

test('accepts are rate-limited by the token bucket on the injected clock', async () => {
  const clock = new FakeClock(0)
  const a = await listening(1, { clock, acceptBurst: 1, acceptRefillMs: 1000 })
  const port = Number(a.addr.split(':')[1])
  const heard = [false, false]
  for (let i = 0; i < 2; i++) {
    const s = net.connect(port, '127.0.0.1')
    rawSockets.push(s)
    s.on('error', () => {})
    s.on('data', () => { heard[i] = true })
  }
  await waitFor(() => heard[0])
  await new Promise((r) => setTimeout(r, 100))
  assert.is(heard[1], false, 'the second connection waits for a token')
  clock.advance(1000)
  await waitFor(() => heard[1])
})

test.run()
