import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fc from 'fast-check'
import { encode } from '@msgpack/msgpack'
import { parsePeerName, type PeerName } from '../../router/mesh'
import { decodeEnvelope, encodeEnvelope, ENVELOPE_VERSION, type WireMessage } from '../../router/mesh/envelope'

const A = parsePeerName('02:00:00:00:00:01') as PeerName
const B = parsePeerName('02:00:00:00:00:02') as PeerName

const samples: WireMessage[] = [
  { type: 'kx', publicKey: new Uint8Array(32).fill(3) },
  { type: 'kx', publicKey: null },
  { type: 'hello', name: A, nickname: 'host-a', uid: 0xfedcba9876543210n, shortId: 4095, overlays: ['fastdp', 'sleeve'], connId: 1n },
  { type: 'refuse', code: 'password-mismatch', message: 'no' },
  { type: 'heartbeat' },
  { type: 'bye', reason: 'shutting down' },
  { type: 'gossip', channel: 'topology', src: A, payload: new Uint8Array([1, 2]) },
  { type: 'gossip-unicast', channel: 'ipam', src: A, dst: B, payload: new Uint8Array(0) },
  { type: 'gossip-broadcast', channel: 'ipam', src: B, payload: new Uint8Array([255]) },
  { type: 'overlay', payload: new Uint8Array([7, 7]) },
]

for (const msg of samples) {
  test(`round trip: ${msg.type}`, () => {
    const r = decodeEnvelope(encodeEnvelope(msg))
    assert.ok(r.ok, r.ok ? "" : r.detail)
    if (r.ok) assert.equal(r.msg, msg)
  })
}

test('every envelope carries the version and a type tag', () => {
  const raw = encodeEnvelope({ type: 'heartbeat' })
  assert.equal(raw, encode({ v: ENVELOPE_VERSION, t: 'hb' }))
})

test('unknown type is its own reason, with the tag for a log line', () => {
  const r = decodeEnvelope(encode({ v: ENVELOPE_VERSION, t: 'future-thing', x: 1 }))
  assert.is(r.ok, false)
  if (!r.ok) { assert.is(r.reason, 'unknown-type'); assert.is(r.type, 'future-thing') }
})

test('another envelope version is bad-version', () => {
  const r = decodeEnvelope(encode({ v: 2, t: 'hb' }))
  assert.is(!r.ok && r.reason, 'bad-version')
})

test('malformed MessagePack, non-maps and wrong fields are values, not throws', () => {
  const cases: [Uint8Array, string][] = [
    [new Uint8Array([0xc1]), 'bad-msgpack'],
    [new Uint8Array([0x92]), 'bad-msgpack'], // truncated array
    [new Uint8Array([]), 'bad-msgpack'],
    [encode([1, 2]), 'bad-envelope'],
    [encode('text'), 'bad-envelope'],
    [encode({ v: 1 }), 'bad-envelope'],
    [encode({ v: 1, t: 'g', ch: 'x', src: 'not-a-name', p: new Uint8Array(1) }), 'bad-envelope'],
    [encode({ v: 1, t: 'gu', ch: 'x', src: A, p: new Uint8Array(1) }), 'bad-envelope'],
    [encode({ v: 1, t: 'kx', pub: new Uint8Array(31) }), 'bad-envelope'],
    [encode({ v: 1, t: 'hello', name: A, nick: 'n', uid: new Uint8Array(8), cid: new Uint8Array(8), sid: 5000, ov: [] }), 'bad-envelope'],
    [encode({ v: 1, t: 'refuse', code: 'made-up', msg: 'x' }), 'bad-envelope'],
    [encode({ v: 1, t: 'ov', p: 'not bytes' }), 'bad-envelope'],
  ]
  for (const [bytes, reason] of cases) {
    const r = decodeEnvelope(bytes)
    assert.is(r.ok, false, [...bytes].join(','))
    if (!r.ok) assert.is(r.reason, reason, r.detail)
  }
})

test('a __proto__ key is rejected, not merged into Object.prototype', () => {
  const bytes = new Uint8Array([0x83, 0xa1, 0x76, 0x01, 0xa1, 0x74, 0xa2, 0x68, 0x62, 0xa9, ...Buffer.from('__proto__'), 0x81, 0xa1, 0x78, 0x01])
  const r = decodeEnvelope(bytes)
  assert.is(r.ok, false)
  assert.is(({} as Record<string, unknown>).x, undefined)
})

test('property: random bytes never throw and fail with a known reason', () => {
  const reasons = ['bad-msgpack', 'bad-envelope', 'bad-version', 'unknown-type']
  fc.assert(fc.property(fc.uint8Array({ maxLength: 80 }), (b) => {
    const r = decodeEnvelope(b)
    return r.ok || reasons.includes(r.reason)
  }), { numRuns: 2000, seed: 21 })
})

test('property: random maps with a valid header never throw', () => {
  const tags = fc.constantFrom('kx', 'hello', 'refuse', 'hb', 'bye', 'g', 'gu', 'gb', 'ov', 'zz')
  fc.assert(fc.property(tags, fc.dictionary(fc.constantFrom('ch', 'src', 'dst', 'p', 'pub', 'name', 'nick', 'uid', 'cid', 'sid', 'ov', 'code', 'msg', 'why'),
    fc.oneof(fc.string(), fc.integer(), fc.uint8Array({ maxLength: 40 }), fc.constant(null), fc.array(fc.string(), { maxLength: 3 }))), (t, fields) => {
    const r = decodeEnvelope(encode({ ...fields, v: 1, t }))
    return typeof r.ok === 'boolean'
  }), { numRuns: 2000, seed: 22 })
})

test.run()
