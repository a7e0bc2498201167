// A connection over a fake byte stream after two pure Handshakes met: hostile bytes after the
// handshake, tampered and replayed ciphertext, unknown message types, early messages, close.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fc from 'fast-check'
import { FakeClock, memoryLogger, seededRng } from '../../router/deps'
import { derivePasswordKey, parsePeerName, type LocalIdentity, type MeshMessage, type PasswordKey, type PeerName } from '../../router/mesh'
import { Handshake, type HandshakeSuccess } from '../../router/mesh/handshake'
import { attachByteStream, type ByteIO } from '../../router/mesh/connection'
import { encodeFrame } from '../../router/mesh/framing'
import { encode } from '@msgpack/msgpack'

const id = (n: number): LocalIdentity => ({
  name: parsePeerName(`02:00:00:00:00:0${n}`) as PeerName, nickname: `n${n}`, uid: BigInt(n), shortId: () => n, overlays: ['sleeve'],
})

let pw: PasswordKey
test.before(async () => { pw = await derivePasswordKey('s3cret') })

/** Run two pure handshakes against each other by hand; returns both successes. */
function meet(password?: PasswordKey): [HandshakeSuccess, HandshakeSuccess] {
  const a = new Handshake({ local: id(1), outbound: true, rng: seededRng(1), password })
  const b = new Handshake({ local: id(2), outbound: false, rng: seededRng(2), password })
  let toB = a.start().send, toA = b.start().send
  let doneA: HandshakeSuccess | undefined, doneB: HandshakeSuccess | undefined
  for (let round = 0; round < 5 && !(doneA && doneB); round++) {
    const nextB: Uint8Array[] = [], nextA: Uint8Array[] = []
    for (const x of toB) { const s = b.receive(x); nextA.push(...s.send); if (s.failed) throw new Error(s.failed.message); doneB ??= s.done }
    for (const x of toA) { const s = a.receive(x); nextB.push(...s.send); if (s.failed) throw new Error(s.failed.message); doneA ??= s.done }
    toA = nextA; toB = nextB
  }
  if (!doneA || !doneB) throw new Error('handshake did not finish')
  return [doneA, doneB]
}

/** A ByteIO that records writes and lets the test push bytes in. */
function fakeIO() {
  const written: Uint8Array[] = []
  let h: { data(b: Uint8Array): void; closed(why: string): void } | undefined
  let ended = false
  const io: ByteIO = {
    write: (b) => { written.push(b) },
    pendingWriteBytes: () => 0,
    end: () => { ended = true },
    setHandlers: (x) => { h = x },
  }
  return { io, written, feed: (b: Uint8Array) => h!.data(b), drop: (why: string) => h!.closed(why), ended: () => ended }
}

function connect(password?: PasswordKey) {
  const [sa, sb] = meet(password)
  const clock = new FakeClock()
  const logA = memoryLogger(), logB = memoryLogger()
  const ioA = fakeIO(), ioB = fakeIO()
  const a = attachByteStream(ioA.io, sa, { outbound: true, remoteAddr: '10.0.0.2:6783', localAddr: '10.0.0.1:5000' }, { clock, logger: logA })
  const b = attachByteStream(ioB.io, sb, { outbound: false, remoteAddr: '10.0.0.1:5000', localAddr: '10.0.0.2:6783' }, { clock, logger: logB })
  /** Deliver what A wrote to B and vice versa. */
  const pump = () => {
    for (let i = 0; i < 10; i++) {
      const wa = ioA.written.splice(0), wb = ioB.written.splice(0)
      if (!wa.length && !wb.length) return
      for (const x of wa) if (!b.isClosed) ioB.feed(x)
      for (const x of wb) if (!a.isClosed) ioA.feed(x)
    }
  }
  return { a, b, ioA, ioB, logA, logB, clock, pump, sa, sb }
}

const msg = (i: number): MeshMessage => ({ type: 'gossip', channel: 'c', src: id(1).name, payload: new Uint8Array([i]) })

test('two pure handshakes agree on the connection UID and identities', () => {
  for (const p of [undefined, pw]) {
    const [sa, sb] = meet(p)
    assert.is(sa.connUid, sb.connUid)
    assert.is(sa.remote.name, id(2).name)
    assert.is(sb.remote.name, id(1).name)
    assert.is(!!sa.ciphers, !!p)
  }
})

for (const encrypted of [false, true]) {
  const label = encrypted ? 'encrypted' : 'plain'
  test(`${label}: messages flow; ones that arrive before onMessage wait for it`, async () => {
    const c = connect(encrypted ? pw : undefined)
    c.a.send(msg(1)); c.a.send(msg(2))
    c.pump()
    const got: number[] = []
    c.b.onMessage((m) => got.push((m as { payload: Uint8Array }).payload[0]))
    await Promise.resolve()
    c.a.send(msg(3))
    c.pump()
    assert.equal(got, [1, 2, 3])
  })

  test(`${label}: an unknown message type is logged once and skipped`, () => {
    const c = connect(encrypted ? pw : undefined)
    const got: MeshMessage[] = []
    c.b.onMessage((m) => got.push(m))
    const unknown = encode({ v: 1, t: 'from-the-future', x: 1 })
    for (let i = 0; i < 3; i++) {
      const body = c.sa.ciphers ? c.sa.ciphers.tx.seal(unknown) : unknown
      c.ioB.feed(encodeFrame(body))
    }
    c.a.send(msg(9))
    c.pump()
    assert.is(c.b.isClosed, false)
    assert.is(got.length, 1)
    assert.is(c.logB.lines.filter((l) => l.includes('unknown type')).length, 1)
  })

  test(`${label}: property: random bytes after the handshake never throw; a failure closes once`, () => {
    fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 6 }), (chunks) => {
      const c = connect(encrypted ? pw : undefined)
      const reasons: string[] = []
      c.b.onClose((r) => reasons.push(r))
      for (const x of chunks) c.ioB.feed(x)
      if (c.b.isClosed) {
        return reasons.length === 1 && /bad message/.test(reasons[0]) && c.ioB.ended() &&
          c.logB.lines.filter((l) => l.includes('connection closed')).length === 1
      }
      return reasons.length === 0
    }), { numRuns: 150, seed: 99 })
  })
}

test('encrypted: a tampered frame fails to authenticate and closes the connection', () => {
  const c = connect(pw)
  const reasons: string[] = []
  c.b.onClose((r) => reasons.push(r))
  c.a.send(msg(1))
  const frame = c.ioA.written.splice(0)[0]
  frame[frame.length - 1] ^= 1
  c.ioB.feed(frame)
  assert.equal(reasons, ['bad message: a frame failed to authenticate'])
})

test('encrypted: a replayed frame fails (counter nonces)', () => {
  const c = connect(pw)
  const got: MeshMessage[] = []
  c.b.onMessage((m) => got.push(m))
  c.a.send(msg(1))
  const frame = c.ioA.written.splice(0)[0]
  c.ioB.feed(frame)
  assert.is(got.length + (c.b.isClosed ? 1 : 0), 1)
  c.ioB.feed(frame)
  assert.ok(c.b.isClosed, 'the replay closed the connection')
})

test('the two directions use different keys: our own frame does not open at our end', () => {
  const c = connect(pw)
  c.a.send(msg(1))
  const frame = c.ioA.written.splice(0)[0]
  c.ioA.feed(frame) // A receiving what A sent, as a reflecting attacker would do
  assert.ok(c.a.isClosed)
})

test('close sends a bye, fires onClose once (also for late registrations), logs one line', async () => {
  const c = connect()
  const reasons: string[] = []
  c.a.onClose((r) => reasons.push(r))
  c.a.close('shutting down')
  c.a.close('twice')
  let late: string | undefined
  c.a.onClose((r) => { late = r })
  await Promise.resolve()
  assert.equal(reasons, ['shutting down'])
  assert.is(late, 'shutting down')
  const remote: string[] = []
  c.b.onClose((r) => remote.push(r))
  c.pump()
  assert.equal(remote, ['remote closed: shutting down'])
  assert.is(c.logA.lines.filter((l) => l.includes('connection closed')).length, 1)
  assert.match(c.logA.lines.find((l) => l.includes('connection closed'))!, /to n2\(02:00:00:00:00:02\) at 10\.0\.0\.2:6783/)
})

test('heartbeats: silence for the timeout closes; traffic keeps it open', () => {
  const c = connect()
  for (let i = 0; i < 10; i++) { c.clock.advance(1000); c.pump() }
  assert.is(c.a.isClosed, false)
  c.clock.advance(3000)
  assert.is(c.a.isClosed, false, '3 s of silence is tolerated')
  c.clock.advance(1000)
  assert.ok(c.a.isClosed, '4 s of silence is not')
})

test('the transport dropping the stream closes the connection with its reason', () => {
  const c = connect()
  const reasons: string[] = []
  c.a.onClose((r) => reasons.push(r))
  c.ioA.drop('connection error: ECONNRESET')
  assert.equal(reasons, ['connection error: ECONNRESET'])
})

test.run()
