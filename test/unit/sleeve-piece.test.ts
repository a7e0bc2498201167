/**
 * Super-frames and pieces (router/overlay/sleeve-frame.ts): a GSO super-frame becomes one
 * "super" datagram, cut into equal-sized "piece" datagrams that fit the path; decoding the
 * pieces and putting their bytes together gives the super datagram back.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fc from 'fast-check'
import {
  encodeSuper, encodePieces, encodeSuperPieces, decodeDatagram, HEADER_BYTES, PIECE_HEADER_BYTES, MAX_SUPER_FRAME_BYTES,
} from '../../router/overlay/sleeve-frame'
import { createSleeveCipher, sleeveCryptoReady } from '../../router/overlay/sleeve-crypto'

/** Splits a run of back-to-back pieces at `segment` bytes, as UDP GSO does. */
function split(data: Uint8Array, segment: number): Uint8Array[] {
  const out: Uint8Array[] = []
  for (let o = 0; o < data.length; o += segment) out.push(data.subarray(o, Math.min(o + segment, data.length)))
  return out
}

/** Decodes pieces and concatenates their bytes in order; throws on any inconsistency. */
function join(pieces: Uint8Array[]): Uint8Array {
  let whole: Uint8Array | undefined
  let got = 0
  for (const p of pieces) {
    const r = decodeDatagram(p)
    if (!r.ok || r.datagram.kind !== 'piece') throw new Error(`not a piece: ${JSON.stringify(r)}`)
    const d = r.datagram
    whole ??= new Uint8Array(d.total)
    if (d.offset !== got) throw new Error(`gap at ${got}`)
    whole.set(d.data, d.offset)
    got += d.data.length
  }
  if (!whole || got !== whole.length) throw new Error('incomplete')
  return whole
}

/** Byte equality whatever the view type (Buffer or Uint8Array), without big diffs on failure. */
const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0

const gso = Uint8Array.from([1, 1, 66, 0, 0x2c, 5, 34, 0, 16, 0])

test('a super-frame cut into pieces comes back whole, with its GSO header', () => {
  fc.assert(fc.property(fc.integer({ min: 14, max: 66_000 }), fc.integer({ min: 200, max: 9000 }), fc.integer({ min: 0, max: 0xffffffff }), (len, mtu, id) => {
    const frame = Uint8Array.from({ length: len }, (_, i) => (i * 7 + len) & 255)
    const { data, segment, count } = encodeSuperPieces({ src: 3, dst: 9 }, id, frame, gso, mtu - 28)
    const pieces = split(data, segment)
    assert.is(pieces.length, count)
    for (const p of pieces) assert.ok(p.length <= mtu - 28, 'every piece fits the path')
    const whole = join(pieces)
    assert.ok(same(whole, encodeSuper({ src: 3, dst: 9 }, frame, gso)), 'same bytes as the two-step encoding')
    const r = decodeDatagram(whole)
    assert.ok(r.ok && r.datagram.kind === 'super')
    if (r.ok && r.datagram.kind === 'super') {
      assert.equal(Array.from(r.datagram.gso), Array.from(gso))
      assert.ok(same(r.datagram.frame, frame), 'the frame')
      assert.is(r.datagram.src, 3)
      assert.is(r.datagram.dst, 9)
    }
  }), { numRuns: 40, endOnFailure: true })
})

test('encodePieces carries any oversized datagram; equal sizes but the last', () => {
  const dg = new Uint8Array(100_000).fill(0x5a)
  dg.set(encodeSuper({ src: 1, dst: 2 }, new Uint8Array(20), gso).subarray(0, HEADER_BYTES))
  const { data, segment } = encodePieces({ src: 1, dst: 2 }, 7, dg, 1472)
  const pieces = split(data, segment)
  assert.ok(pieces.slice(0, -1).every((p) => p.length === 1472))
  assert.ok(pieces[pieces.length - 1].length <= 1472)
  assert.ok(same(join(pieces), dg))
})

test('bad pieces are refused with a reason, never thrown', () => {
  const { data, segment } = encodeSuperPieces({ src: 1, dst: 2 }, 1, new Uint8Array(5000), gso, 1400)
  const first = Uint8Array.from(split(data, segment)[0])
  // offset + length beyond the total
  const bad = Uint8Array.from(first)
  bad[HEADER_BYTES + 8] = 0xff
  const r = decodeDatagram(bad)
  assert.equal(r, { ok: false, reason: 'bad-piece' })
  // no data at all
  assert.equal(decodeDatagram(first.subarray(0, HEADER_BYTES + PIECE_HEADER_BYTES)), { ok: false, reason: 'truncated' })
  // a super-frame too big to carry
  assert.throws(() => encodeSuperPieces({ src: 1, dst: 2 }, 1, new Uint8Array(MAX_SUPER_FRAME_BYTES + 1), gso, 1400))
  // fuzz: random bytes behind a piece header never throw
  fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 64 }), (tail) => {
    const b = new Uint8Array(HEADER_BYTES + tail.length)
    b.set(first.subarray(0, HEADER_BYTES))
    b.set(tail, HEADER_BYTES)
    decodeDatagram(b)
  }))
})

test('sealParts seals a super datagram from its parts; it opens to the frame, put together from pieces', async () => {
  await sleeveCryptoReady()
  for (const impl of ['native', 'wasm'] as const) {
    let tx
    try { tx = createSleeveCipher(new Uint8Array(32).fill(4), true, { impl }) } catch { continue } // native AEAD missing here
    const rx = createSleeveCipher(new Uint8Array(32).fill(4), false, { impl })
    const frame = Uint8Array.from({ length: 60_000 }, (_, i) => (i * 13) & 255)
    const plain = encodeSuper({ src: 5, dst: 6 }, frame, gso)
    const sealed = tx.sealParts!(plain.subarray(0, HEADER_BYTES), [plain.subarray(HEADER_BYTES, HEADER_BYTES + 10), frame])
    assert.is(sealed.length, plain.length + 24)
    const tampered = Uint8Array.from(sealed)
    tampered[5000] ^= 1
    assert.equal(rx.open(tampered), { ok: false, reason: 'bad-mac' }, `${impl}: tampering is caught`)
    const { data, segment } = encodePieces({ src: 5, dst: 6 }, 1, sealed, 1400)
    const r = rx.open(join(split(data, segment)))
    assert.ok(r.ok && r.datagram.kind === 'super', `${impl}: opens to a super datagram`)
    if (r.ok && r.datagram.kind === 'super') assert.ok(same(r.datagram.frame, frame), `${impl}: the frame`)
  }
})

test.run()
