// Handshake, both ends over the in-memory pipe (bytes mode: the real handshake, framing and
// crypto code), plus the same refusals in the simulator's direct mode, and the pure state
// machine fed truncated, garbage and oversized input.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fc from 'fast-check'
import { FakeClock, memoryLogger, seededRng } from '../../router/deps'
import {
  createMemoryNetwork, derivePasswordKey, HandshakeError, parsePeerName,
  type LocalIdentity, type MeshMessage, type PeerConnection, type PasswordKey, type HandshakeFailure, type PeerName,
} from '../../router/mesh'
import { Handshake, HEADER_BYTES, PROTOCOL_MAGIC } from '../../router/mesh/handshake'
import { encodeFrame } from '../../router/mesh/framing'
import { encodeEnvelope } from '../../router/mesh/envelope'
import { sodiumReady } from '../../router/mesh/crypto'

function identity(n: number, nick = `host${n}`): LocalIdentity {
  const hex = n.toString(16).padStart(2, '0')
  return {
    name: parsePeerName(`aa:bb:cc:dd:ee:${hex}`) as PeerName, nickname: nick, uid: BigInt(1000 + n),
    shortId: () => n, overlays: ['fastdp', 'sleeve'],
  }
}

let pwA: PasswordKey, pwB: PasswordKey
test.before(async () => {
  await sodiumReady()
  pwA = await derivePasswordKey('correct horse')
  pwB = await derivePasswordKey('battery staple')
})

type Opts = { password?: PasswordKey; minVersion?: number; maxVersion?: number }

/** Two transports on one network; returns the dial outcome and what the listener saw. */
async function pair(mode: 'bytes' | 'direct', a: Opts, b: Opts, idB = identity(2)) {
  const clock = new FakeClock()
  const logger = memoryLogger()
  const net = createMemoryNetwork({ clock, rng: seededRng(7), logger }, { mode })
  const ta = net.transport('10.0.0.1:6783', identity(1), a)
  const tb = net.transport('10.0.0.2:6783', idB, b)
  const accepted: PeerConnection[] = []
  const refused: { addr: string; why: HandshakeFailure }[] = []
  await ta.listen((c) => accepted.push(c), (addr, why) => refused.push({ addr, why }))
  let conn: PeerConnection | undefined
  let error: HandshakeError | undefined
  try { conn = await tb.dial('10.0.0.1:6783') } catch (e) { error = e as HandshakeError }
  net.flush()
  return { net, clock, logger, ta, tb, accepted, refused, conn, error }
}

for (const mode of ['bytes', 'direct'] as const) {
  test(`${mode}: plain handshake connects and carries messages both ways`, async () => {
    const p = await pair(mode, {}, {})
    assert.ok(p.conn, String(p.error))
    assert.is(p.accepted.length, 1)
    const [inb] = p.accepted
    assert.is(p.conn.remote.name, identity(1).name)
    assert.is(inb.remote.name, identity(2).name)
    assert.is(inb.remote.nickname, 'host2')
    assert.is(inb.remote.uid, 1002n)
    assert.is(inb.remote.shortId, 2)
    assert.equal(inb.remote.overlays, ['fastdp', 'sleeve'])
    assert.is(p.conn.connUid, inb.connUid)
    assert.is(p.conn.outbound, true)
    assert.is(inb.outbound, false)
    assert.is(p.conn.encrypted, false)
    assert.is(inb.remoteAddr.split(':')[0], '10.0.0.2')
    const got: MeshMessage[] = []
    inb.onMessage((m) => got.push(m))
    const back: MeshMessage[] = []
    p.conn.onMessage((m) => back.push(m))
    const src = identity(2).name
    p.conn.send({ type: 'gossip', channel: 'topology', src, payload: new Uint8Array([1, 2, 3]) })
    p.conn.send({ type: 'gossip-unicast', channel: 'ipam', src, dst: identity(1).name, payload: new Uint8Array([4]) })
    inb.send({ type: 'overlay', payload: new Uint8Array([9]) })
    await Promise.resolve()
    p.net.flush()
    assert.is(got.length, 2)
    assert.is(got[0].type, 'gossip')
    assert.equal([...(got[0] as { payload: Uint8Array }).payload], [1, 2, 3])
    assert.is(got[1].type, 'gossip-unicast')
    assert.equal(back.map((m) => m.type), ['overlay'])
  })

  test(`${mode}: encrypted handshake with the same password`, async () => {
    const p = await pair(mode, { password: pwA }, { password: pwA })
    assert.ok(p.conn, String(p.error))
    assert.is(p.conn.encrypted, true)
    assert.is(p.accepted[0].encrypted, true)
    const got: MeshMessage[] = []
    p.accepted[0].onMessage((m) => got.push(m))
    p.conn.send({ type: 'gossip-broadcast', channel: 'c', src: identity(2).name, payload: new Uint8Array(1000).fill(5) })
    p.net.flush()
    await Promise.resolve()
    p.net.flush()
    assert.is(got.length, 1)
    assert.is((got[0] as { payload: Uint8Array }).payload.length, 1000)
  })

  test(`${mode}: wrong password is refused as password-mismatch at both ends`, async () => {
    const p = await pair(mode, { password: pwA }, { password: pwB })
    assert.not.ok(p.conn)
    assert.instance(p.error, HandshakeError)
    assert.is(p.error!.failure.code, 'password-mismatch')
    assert.is(p.refused.length, 1)
    assert.is(p.refused[0].why.code, 'password-mismatch')
    assert.is(p.accepted.length, 0)
    assert.ok(p.logger.lines.some((l) => /refused connection from 10\.0\.0\.2:\d+: password-mismatch/.test(l)), p.logger.lines.join('\n'))
  })

  test(`${mode}: one side without a password is encryption-mismatch, naming the side`, async () => {
    const p = await pair(mode, { password: pwA }, {})
    assert.is(p.error?.failure.code, 'encryption-mismatch')
    assert.match(p.error!.failure.message, /remote has a password but we have none/)
    assert.is(p.refused[0]?.why.code, 'encryption-mismatch')
    assert.match(p.refused[0].why.message, /we have a password but the remote has none/)
    const q = await pair(mode, {}, { password: pwA })
    assert.match(q.error!.failure.message, /we have a password but the remote has none/)
    assert.match(q.refused[0].why.message, /remote has a password but we have none/)
  })

  test(`${mode}: version mismatch is refused in both directions`, async () => {
    const p = await pair(mode, { minVersion: 2, maxVersion: 3 }, {})
    assert.is(p.error?.failure.code, 'version-mismatch')
    assert.match(p.error!.failure.message, /we speak 1\.\.1, the remote speaks 2\.\.3/)
    assert.is(p.refused[0]?.why.code, 'version-mismatch')
    const q = await pair(mode, {}, { minVersion: 2, maxVersion: 2 })
    assert.is(q.error?.failure.code, 'version-mismatch')
    assert.is(q.refused[0]?.why.code, 'version-mismatch')
    // Overlapping ranges agree.
    const r = await pair(mode, { minVersion: 1, maxVersion: 3 }, { minVersion: 0, maxVersion: 1 })
    assert.ok(r.conn, String(r.error))
  })

  test(`${mode}: a remote with our own name is a permanent self-connection refusal`, async () => {
    const p = await pair(mode, {}, {}, identity(1, 'other'))
    assert.is(p.error?.failure.code, 'self-connection')
    assert.is(p.error!.failure.permanent, true)
    assert.is(p.refused[0]?.why.code, 'self-connection')
  })

  test(`${mode}: close tells the remote why, onClose fires once; silent cut is noticed by heartbeats`, async () => {
    const p = await pair(mode, {}, {})
    const reasons: string[] = []
    p.accepted[0].onClose((r) => reasons.push(r))
    p.conn!.close('name-collision with a known peer')
    p.conn!.close('again')
    p.net.flush()
    assert.equal(reasons, [mode === 'bytes' ? 'remote closed: name-collision with a known peer' : 'remote closed: name-collision with a known peer'])
    const q = await pair(mode, {}, {})
    const closedA: string[] = [], closedB: string[] = []
    q.conn!.onClose((r) => closedA.push(r))
    q.accepted[0].onClose((r) => closedB.push(r))
    for (let i = 0; i < 3; i++) { q.clock.advance(1000); q.net.flush() }
    assert.equal(closedA, [], 'heartbeats keep a healthy link up')
    q.net.cut('10.0.0.1', '10.0.0.2')
    for (let i = 0; i < 6; i++) { q.clock.advance(1000); q.net.flush() }
    assert.is(closedA.length, 1)
    assert.is(closedB.length, 1)
    assert.match(closedA[0], /heartbeat timeout/)
  })
}

for (const mode of ['bytes', 'direct'] as const) {
test(`${mode}: handshake timeout when the remote never answers`, async () => {
  const clock = new FakeClock()
  const net = createMemoryNetwork({ clock, rng: seededRng(1), logger: memoryLogger() }, { mode })
  const ta = net.transport('10.0.0.1:6783', identity(1))
  const tb = net.transport('10.0.0.2:6783', identity(2), { handshakeTimeoutMs: 10_000 })
  await ta.listen(() => {})
  net.cut('10.0.0.1', '10.0.0.2')
  // A dial over a cut link is refused at once...
  const err = await tb.dial('10.0.0.1:6783').catch((e) => e as HandshakeError)
  assert.is((err as HandshakeError).failure.code, 'io-error')
  net.heal('10.0.0.1', '10.0.0.2')
  const pending = tb.dial('10.0.0.1:6783').catch((e) => e as HandshakeError)
  // ...a link that dies right after the dial leaves the handshake hanging until the deadline.
  net.cut('10.0.0.1', '10.0.0.2')
  net.flush()
  clock.advance(10_000)
  const e2 = await pending
  assert.instance(e2, HandshakeError)
  assert.is((e2 as HandshakeError).failure.code, 'timeout')
})
}

// --- the pure state machine fed hostile bytes ---

function header(min = 1, max = 1): Uint8Array {
  const h = new Uint8Array(HEADER_BYTES)
  h.set(PROTOCOL_MAGIC); h[4] = min; h[5] = max
  return h
}

function newHs(password?: PasswordKey) {
  return new Handshake({ local: identity(1), outbound: false, rng: seededRng(3), password })
}

test('garbage instead of a header is bad-message (no magic)', () => {
  const hs = newHs()
  hs.start()
  const step = hs.receive(new TextEncoder().encode('GET / HTTP/1.1\r\n'))
  assert.is(step.failed?.code, 'bad-message')
  assert.match(step.failed!.message, /magic/)
})

test('a truncated header or frame waits for more; it is not a failure', () => {
  const hs = newHs()
  hs.start()
  assert.not.ok(hs.receive(header().subarray(0, 3)).failed)
  assert.not.ok(hs.receive(header().subarray(3)).failed)
  const kx = encodeFrame(encodeEnvelope({ type: 'kx', publicKey: null }))
  const step = hs.receive(kx.subarray(0, kx.length - 1))
  assert.equal(step.send, [])
  assert.not.ok(step.failed)
  const done = hs.receive(kx.subarray(kx.length - 1))
  assert.is(done.send.length, 1, 'our hello goes out once the offer is complete')
})

test('a huge length prefix is refused at once as bad-message', () => {
  const hs = newHs()
  hs.start()
  const step = hs.receive(new Uint8Array([...header(), 0xff, 0xff, 0xff, 0xff]))
  assert.is(step.failed?.code, 'bad-message')
  assert.match(step.failed!.message, /cap/)
  assert.is(step.send.length, 1, 'a refusal is sent')
})

test('malformed MessagePack in the crypto offer is bad-message', () => {
  const hs = newHs()
  hs.start()
  const step = hs.receive(new Uint8Array([...header(), 0, 0, 0, 2, 0xc1, 0xc1]))
  assert.is(step.failed?.code, 'bad-message')
})

test('a hello where the crypto offer belongs is refused', () => {
  const hs = newHs()
  hs.start()
  const hello = encodeEnvelope({ type: 'hello', name: identity(2).name, nickname: 'x', uid: 5n, shortId: 1, overlays: [], connId: 1n })
  const step = hs.receive(new Uint8Array([...header(), ...encodeFrame(hello)]))
  assert.is(step.failed?.code, 'bad-message')
})

test('property: any bytes fed to the handshake never throw', () => {
  fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), fc.boolean(), fc.boolean(), (chunks, withHeader, withPw) => {
    const hs = newHs(withPw ? pwA : undefined)
    hs.start()
    if (withHeader) hs.receive(header())
    for (const c of chunks) hs.receive(c)
  }), { numRuns: 500, seed: 42 })
})

test('property: valid frames holding random envelopes never throw', () => {
  fc.assert(fc.property(fc.array(fc.uint8Array({ minLength: 1, maxLength: 48 }), { maxLength: 4 }), (bodies) => {
    const hs = newHs()
    hs.start()
    hs.receive(header())
    for (const b of bodies) hs.receive(encodeFrame(b))
  }), { numRuns: 500, seed: 43 })
})

test.run()
