import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fc from 'fast-check'
import {
  decodeDatagram, encodeFrames, encodeHeartbeat, encodeProbe, packFrames, framesDatagramBytes, decodeBody,
  HEADER_BYTES, MAX_DATAGRAM_BYTES, MIN_FRAME_BYTES, maxFrameBytes, writeHeader, Kind,
} from '../../router/overlay/sleeve-frame'

const shortId = fc.integer({ min: 0, max: 0xfff })
const frame = fc.uint8Array({ minLength: MIN_FRAME_BYTES, maxLength: 1600 })
const eq = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b))

test('frames round-trip: src, dst and every frame in order', () => {
  fc.assert(fc.property(shortId, shortId, fc.array(frame, { minLength: 1, maxLength: 30 }), (src, dst, frames) => {
    const r = decodeDatagram(encodeFrames({ src, dst }, frames))
    assert.ok(r.ok)
    if (!r.ok || r.datagram.kind !== 'frames') throw new Error('wrong kind')
    assert.is(r.datagram.src, src)
    assert.is(r.datagram.dst, dst)
    assert.is(r.datagram.frames.length, frames.length)
    frames.forEach((f, i) => assert.ok(eq(r.datagram.kind === 'frames' ? r.datagram.frames[i] : new Uint8Array(), f)))
  }))
})

test('heartbeat and probe round-trip', () => {
  fc.assert(fc.property(shortId, shortId, fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.integer({ min: HEADER_BYTES, max: 9000 }), (src, dst, uid, size) => {
    const hb = decodeDatagram(encodeHeartbeat({ src, dst }, uid))
    assert.equal(hb, { ok: true, datagram: { kind: 'heartbeat', src, dst, connUid: uid } })
    const probe = encodeProbe({ src, dst }, size)
    assert.is(probe.length, size)
    assert.equal(decodeDatagram(probe), { ok: true, datagram: { kind: 'probe', src, dst, size } })
  }))
})

test('every truncation of a valid datagram is rejected with a reason, never a throw', () => {
  fc.assert(fc.property(shortId, shortId, fc.array(frame, { minLength: 1, maxLength: 8 }), fc.nat(), (src, dst, frames, cut) => {
    const bytes = encodeFrames({ src, dst }, frames)
    const short = bytes.subarray(0, cut % bytes.length)
    const r = decodeDatagram(short)
    assert.is(r.ok, false)
    if (!r.ok) assert.ok(['truncated', 'runt-frame'].includes(r.reason), r.reason)
  }))
})

test('garbage never throws; whatever decodes re-encodes to the same bytes', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 3000 }), (bytes) => {
    const r = decodeDatagram(bytes)
    if (r.ok && r.datagram.kind === 'frames') assert.ok(eq(encodeFrames(r.datagram, r.datagram.frames), bytes))
  }), { numRuns: 2000 })
  // garbage with a plausible header: version 1, frames, small count
  fc.assert(fc.property(fc.integer({ min: 0, max: 5 }), fc.uint8Array({ maxLength: 200 }), (count, rest) => {
    const b = new Uint8Array(HEADER_BYTES + rest.length)
    writeHeader(b, Kind.Frames, { src: 1, dst: 2 }, count)
    b.set(rest, HEADER_BYTES)
    decodeDatagram(b)
  }), { numRuns: 2000 })
})

test('specific bad inputs give specific reasons', () => {
  const good = encodeFrames({ src: 1, dst: 2 }, [new Uint8Array(20)])
  const mutate = (f: (b: Uint8Array) => void) => { const b = Uint8Array.from(good); f(b); return decodeDatagram(b) }
  assert.equal(decodeDatagram(new Uint8Array(0)), { ok: false, reason: 'truncated' })
  assert.equal(mutate((b) => { b[0] = 2 }), { ok: false, reason: 'bad-version' })
  assert.equal(mutate((b) => { b[1] = 9 }), { ok: false, reason: 'bad-kind' })
  assert.equal(mutate((b) => { b[2] = 0x10 }), { ok: false, reason: 'bad-short-id' })
  assert.equal(mutate((b) => { b[7] = 0 }), { ok: false, reason: 'bad-count' })
  assert.equal(mutate((b) => { b[7] = 2 }), { ok: false, reason: 'truncated' })
  assert.equal(mutate((b) => { b[HEADER_BYTES + 1] = 5 }), { ok: false, reason: 'runt-frame' })
  assert.equal(decodeDatagram(Buffer.concat([good, Buffer.from([0])])), { ok: false, reason: 'trailing-bytes' })
  assert.equal(decodeDatagram(new Uint8Array(MAX_DATAGRAM_BYTES + 1)), { ok: false, reason: 'too-large' })
  const hb = encodeHeartbeat({ src: 1, dst: 2 }, 5n)
  assert.equal(decodeDatagram(hb.subarray(0, hb.length - 1)), { ok: false, reason: 'truncated' })
  assert.equal(decodeBody('heartbeat', 1, 2, 0, new Uint8Array(9)), { ok: false, reason: 'trailing-bytes' })
})

test('sealed datagrams are handed over opaque with their header', () => {
  const b = new Uint8Array(HEADER_BYTES + 40)
  writeHeader(b, Kind.Frames, { src: 7, dst: 9 }, 3, true)
  const r = decodeDatagram(b)
  assert.ok(r.ok && r.datagram.kind === 'sealed')
  if (r.ok && r.datagram.kind === 'sealed') {
    assert.is(r.datagram.inner, 'frames')
    assert.is(r.datagram.count, 3)
    assert.is(r.datagram.body.length, 40)
    assert.ok(eq(r.datagram.header, b.subarray(0, HEADER_BYTES)))
  }
})

test('encoding refuses misuse loudly', () => {
  assert.throws(() => encodeFrames({ src: 4096, dst: 1 }, [new Uint8Array(14)]), /short ID/)
  assert.throws(() => encodeFrames({ src: 1, dst: 1 }, [new Uint8Array(13)]), /cannot be carried/)
  assert.throws(() => encodeFrames({ src: 1, dst: 1 }, [new Uint8Array(40_000), new Uint8Array(40_000)]), /more than a datagram/)
})

test('packing keeps order, never exceeds the limit, and sets aside frames that cannot fit', () => {
  fc.assert(fc.property(fc.array(fc.integer({ min: MIN_FRAME_BYTES, max: 3000 }), { maxLength: 60 }), fc.integer({ min: 100, max: 9000 }), (sizes, limit) => {
    const frames = sizes.map((n, i) => { const f = new Uint8Array(n); f[0] = i & 255; f[1] = i >> 8; return f })
    const { groups, tooBig } = packFrames(frames, limit)
    for (const g of groups) {
      assert.ok(g.length > 0)
      assert.ok(framesDatagramBytes(g) <= limit, 'within the limit')
    }
    // greedy: the first frame of each next group would not have fitted the previous one
    for (let i = 1; i < groups.length; i++) assert.ok(framesDatagramBytes([...groups[i - 1], groups[i][0]]) > limit)
    const fitting = frames.filter((f) => HEADER_BYTES + 2 + f.length <= limit)
    assert.equal(groups.flat(), fitting, 'in order, none lost')
    assert.is(tooBig.length, frames.length - fitting.length)
  }))
})

test('MTU arithmetic: a 1500-byte path carries 1462-byte frames in a single datagram', () => {
  assert.is(maxFrameBytes(1500), 1462)
  assert.is(framesDatagramBytes([new Uint8Array(maxFrameBytes(1500))]) + 28, 1500)
})

test.run()
