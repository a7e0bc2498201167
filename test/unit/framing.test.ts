import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fc from 'fast-check'
import { encodeFrame, FrameDecoder, MAX_FRAME_BYTES } from '../../router/mesh/framing'

const bytes = (...xs: number[]) => new Uint8Array(xs)

test('round trip: several frames in one chunk', () => {
  const wire = new Uint8Array([...encodeFrame(bytes(1, 2)), ...encodeFrame(bytes(3)), ...encodeFrame(bytes(4, 5, 6))])
  const r = new FrameDecoder().push(wire)
  assert.ok(r.ok)
  if (r.ok) assert.equal(r.frames.map((f) => [...f]), [[1, 2], [3], [4, 5, 6]])
})

test('a frame split at every byte boundary is reassembled', () => {
  const wire = encodeFrame(bytes(9, 8, 7, 6, 5))
  const d = new FrameDecoder()
  const out: number[][] = []
  for (const b of wire) {
    const r = d.push(bytes(b))
    assert.ok(r.ok)
    if (r.ok) out.push(...r.frames.map((f) => [...f]))
  }
  assert.equal(out, [[9, 8, 7, 6, 5]])
  assert.is(d.pendingBytes, 0)
})

test('a truncated frame is held, not failed', () => {
  const d = new FrameDecoder()
  const r = d.push(encodeFrame(bytes(1, 2, 3)).subarray(0, 5))
  assert.equal(r, { ok: true, frames: [] })
  assert.is(d.pendingBytes, 5)
})

test('a length over the cap fails as too-large as soon as the prefix is in, and stays failed', () => {
  const d = new FrameDecoder()
  const r = d.push(bytes(0x00, 0xa0, 0x00, 0x01))
  assert.is(r.ok, false)
  if (!r.ok) assert.is(r.reason, 'too-large')
  const again = d.push(encodeFrame(bytes(1)))
  assert.is(again.ok, false)
  assert.is(d.pendingBytes, 0, 'nothing is kept buffered after a failure')
})

test('exactly the cap is accepted by the encoder and the length check', () => {
  const d = new FrameDecoder()
  const head = new Uint8Array(4)
  new DataView(head.buffer).setUint32(0, MAX_FRAME_BYTES)
  assert.ok(d.push(head).ok)
  assert.throws(() => encodeFrame(new Uint8Array(MAX_FRAME_BYTES + 1)), /exceeds/)
})

test('a zero-length frame is a failure', () => {
  const r = new FrameDecoder().push(bytes(0, 0, 0, 0))
  assert.is(r.ok, false)
  if (!r.ok) assert.is(r.reason, 'empty-frame')
})

test('drain hands over what is buffered', () => {
  const d = new FrameDecoder()
  d.push(bytes(0, 0))
  d.push(bytes(0, 9, 1))
  assert.equal([...d.drain()], [0, 0, 0, 9, 1])
  assert.is(d.pendingBytes, 0)
})

test('property: any chunking of valid frames yields the same frames', () => {
  fc.assert(fc.property(
    fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { maxLength: 10 }),
    fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 20 }),
    (bodies, cuts) => {
      const wire = Buffer.concat(bodies.map(encodeFrame))
      const d = new FrameDecoder()
      const out: Uint8Array[] = []
      let at = 0, i = 0
      while (at < wire.length) {
        const n = cuts[i++ % cuts.length]
        const r = d.push(wire.subarray(at, at + n))
        if (!r.ok) return false
        out.push(...r.frames)
        at += n
      }
      return out.length === bodies.length && out.every((f, k) => Buffer.from(f).equals(Buffer.from(bodies[k])))
    }), { numRuns: 300, seed: 11 })
})

test('property: random bytes never throw', () => {
  fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 10 }), (chunks) => {
    const d = new FrameDecoder()
    for (const c of chunks) {
      const r = d.push(c)
      if (!r.ok && !['too-large', 'empty-frame'].includes(r.reason)) return false
    }
    return true
  }), { numRuns: 1000, seed: 12 })
})

test.run()
