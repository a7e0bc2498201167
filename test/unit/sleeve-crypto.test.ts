import { test as baseTest } from 'uvu'
import * as assert from 'uvu/assert'
import * as fc from 'fast-check'
import { encodeFrames, encodeHeartbeat, decodeDatagram } from '../../router/overlay/sleeve-frame'
import { createSleeveCipher, sleeveCryptoReady, ReplayWindow, SEAL_OVERHEAD_BYTES, type SleeveCipherName } from '../../router/overlay/sleeve-crypto'
import { nativeAead, nativeAeadKey, nativeCiphers } from '../../router/native'
import { skipTest } from '../skip'

const secret = new Uint8Array(32).map((_, i) => i * 7)
const frame = (tag: number, len = 60) => { const f = new Uint8Array(len); f.fill(tag & 255); return f }
type Impl = 'native' | 'wasm'
const impls: Impl[] = nativeAead() ? ['wasm', 'native'] : ['wasm']
if (impls.length === 1) console.log('note: native AEAD unavailable (addon not built or no libsodium23); testing the wasm one only')
const hasAes = nativeCiphers().includes('aes-256-gcm')
if (!hasAes) console.log('note: native AES-256-GCM unavailable (no libcrypto or no AES-NI); not testing it')
const variants: Array<{ impl: Impl; cipher: SleeveCipherName }> = [
  ...impls.map((impl) => ({ impl, cipher: 'chacha20-poly1305' as const })),
  ...(hasAes ? [{ impl: 'native' as const, cipher: 'aes-256-gcm' as const }] : []),
]

baseTest.before(async () => { await sleeveCryptoReady() })

for (const { impl, cipher } of variants) {
const pair = () => ({ dialer: createSleeveCipher(secret, true, { impl, cipher }), listener: createSleeveCipher(secret, false, { impl, cipher }) })
const test = (name: string, fn: () => void | Promise<void>) => baseTest(`[${impl} ${cipher}] ${name}`, fn)

test('the cipher is the one asked for', () => {
  const { dialer } = pair()
  assert.is(dialer.name, cipher)
  assert.is(dialer.impl, impl)
})

test('sealParts (into a reused buffer or not) gives the bytes seal gives for the joined plaintext', () => {
  const plain = encodeFrames({ src: 1, dst: 2 }, [frame(6, 9000), frame(7, 100)])
  const head = plain.subarray(0, 8)
  const parts = [plain.subarray(8, 11), plain.subarray(11, 5000), plain.subarray(5000)]
  const want = Buffer.from(pair().dialer.seal(plain))
  const into = new Uint8Array(20_000).fill(0xee)
  const a = pair().dialer.sealParts!(head, parts, into)
  assert.ok(Buffer.from(a).equals(want), 'into a buffer')
  if (impl === 'native') assert.is(a.buffer, into.buffer, 'a view of it')
  assert.ok(Buffer.from(pair().dialer.sealParts!(head, parts)).equals(want), 'allocated')
  assert.ok(Buffer.from(pair().dialer.sealParts!(head, parts, new Uint8Array(10))).equals(want), 'too small a buffer is not used')
  assert.equal(pair().listener.open(a), decodeDatagram(plain))
})

test('opening piece by piece: same result as open; tampering, a gap or a replay is refused', () => {
  const { dialer, listener } = pair()
  if (impl === 'wasm') { assert.is(listener.pieces, undefined, 'no streaming without the native AEAD'); return }
  const op = listener.pieces!
  assert.ok(op, 'native ciphers stream')
  const plain = encodeFrames({ src: 1, dst: 2 }, [frame(9, 1400), frame(10, 7000)])
  const feed = (sealed: Uint8Array, cut: number[], dest = new Uint8Array(sealed.length + 100)) => {
    let at = 0
    for (const to of [...cut, sealed.length]) {
      if (!op.piece(dest, sealed.subarray(at, to), at, sealed.length)) return undefined
      at = to
    }
    return dest.subarray(0, sealed.length)
  }
  // cuts inside the associated data, the ciphertext and the tag
  const s1 = dialer.seal(plain)
  const whole = feed(s1, [5, 16, 17, 1000, s1.length - 10])!
  assert.equal(op.done(whole), decodeDatagram(plain))
  assert.equal(op.done(whole), { ok: false, reason: 'replayed' })
  // a datagram streamed whole, then another begun: the first no longer gets a verdict
  const s3 = dialer.seal(plain), s4 = dialer.seal(plain)
  const w3 = feed(s3, [900])!
  assert.ok(op.piece(new Uint8Array(s4.length), s4.subarray(0, 50), 0, s4.length))
  assert.equal(op.done(w3), { ok: false, reason: 'bad-mac' }, 'only a completed stream authenticates')
  assert.equal(op.done(feed(Uint8Array.from(s1), [3000])!), { ok: false, reason: 'replayed' })
  const s2 = dialer.seal(plain)
  const t = Uint8Array.from(s2); t[2000] ^= 4
  assert.equal(op.done(feed(t, [1500])!), { ok: false, reason: 'bad-mac' })
  const d = new Uint8Array(s2.length)
  assert.ok(op.piece(d, s2.subarray(0, 100), 0, s2.length))
  assert.is(op.piece(d, s2.subarray(200, 300), 200, s2.length), false, 'a gap')
  assert.equal(op.done(feed(s2, [700, 701])!), decodeDatagram(plain), 'offset 0 starts over; the forged copy did not move the window')
})

test('a datagram that fails to open leaves its bytes as they were (also in place, with libcrypto)', () => {
  const { dialer, listener } = pair()
  if (impl === 'native' && !listener.pieces) return // libsodium alone zeroes them
  const sealed = dialer.seal(encodeFrames({ src: 1, dst: 2 }, [frame(5, 3000)]))
  sealed[sealed.length - 1] ^= 1
  const before = Uint8Array.from(sealed)
  assert.equal(listener.open(sealed), { ok: false, reason: 'bad-mac' })
  assert.equal(sealed, before)
  sealed[sealed.length - 1] ^= 1
  assert.ok(listener.open(sealed).ok, 'the genuine datagram still opens after a forged copy failed')
})

test('frames and heartbeats round-trip in both directions; overhead is as advertised', () => {
  const { dialer, listener } = pair()
  const plain = encodeFrames({ src: 1, dst: 2 }, [frame(1), frame(2, 1400)])
  const sealed = dialer.seal(plain)
  assert.is(sealed.length, plain.length + SEAL_OVERHEAD_BYTES)
  assert.equal(listener.open(sealed), decodeDatagram(plain))
  const hb = encodeHeartbeat({ src: 2, dst: 1 }, 0xdeadbeefn)
  assert.equal(dialer.open(listener.seal(hb)), decodeDatagram(hb))
})

test('the plaintext does not appear in the sealed datagram', () => {
  const { dialer } = pair()
  const payload = Buffer.from('a known payload that must not leak'.repeat(4))
  const f = Buffer.concat([Buffer.alloc(14), payload])
  const sealed = Buffer.from(dialer.seal(encodeFrames({ src: 1, dst: 2 }, [f])))
  assert.is(sealed.indexOf(payload.subarray(0, 16)), -1)
})

test('any modified byte makes the datagram fail to open, never throw', () => {
  const plain = encodeFrames({ src: 1, dst: 2 }, [frame(3, 100)])
  fc.assert(fc.property(fc.nat(), fc.integer({ min: 1, max: 255 }), (pos, x) => {
    const { dialer, listener } = pair()
    const sealed = dialer.seal(plain)
    sealed[pos % sealed.length] ^= x
    const r = listener.open(sealed)
    assert.is(r.ok, false)
  }))
})

test('replayed datagrams are refused; reordering within the window is accepted', () => {
  const { dialer, listener } = pair()
  const sealed = Array.from({ length: 5 }, (_, i) => dialer.seal(encodeFrames({ src: 1, dst: 2 }, [frame(i)])))
  assert.ok(listener.open(sealed[0]).ok)
  assert.equal(listener.open(sealed[0]), { ok: false, reason: 'replayed' })
  assert.ok(listener.open(sealed[3]).ok)
  assert.ok(listener.open(sealed[1]).ok, 'late but new')
  assert.equal(listener.open(sealed[3]), { ok: false, reason: 'replayed' })
  assert.ok(listener.open(sealed[4]).ok)
  assert.ok(listener.open(sealed[2]).ok)
})

test('a forged datagram does not move the replay window', () => {
  const { dialer, listener } = pair()
  const good = dialer.seal(encodeFrames({ src: 1, dst: 2 }, [frame(1)]))
  const forged = Uint8Array.from(good)
  forged[12] = 0x7f // sequence number far ahead (2^30 and more)
  assert.equal(listener.open(forged), { ok: false, reason: 'bad-mac' })
  assert.ok(listener.open(good).ok, 'the genuine seq 0 still opens')
})

test('a datagram reflected back to its sender, or keyed with another secret, fails', () => {
  const { dialer } = pair()
  const sealed = dialer.seal(encodeFrames({ src: 1, dst: 2 }, [frame(1)]))
  assert.equal(dialer.open(sealed), { ok: false, reason: 'bad-mac' })
  const stranger = createSleeveCipher(new Uint8Array(32).fill(9), false, { impl, cipher })
  assert.equal(stranger.open(sealed), { ok: false, reason: 'bad-mac' })
  assert.equal(stranger.open(encodeFrames({ src: 1, dst: 2 }, [frame(1)])), { ok: false, reason: 'not-sealed' })
})

}

baseTest('native and wasm ciphers interoperate byte for byte', () => {
  if (impls.length < 2) return
  fc.assert(fc.property(fc.array(fc.uint8Array({ minLength: 14, maxLength: 1500 }), { minLength: 1, maxLength: 5 }), (frames) => {
    const plain = encodeFrames({ src: 3, dst: 4 }, frames)
    const n = createSleeveCipher(secret, true, { impl: 'native' })
    const w = createSleeveCipher(secret, true, { impl: 'wasm' })
    const a = n.seal(plain)
    assert.ok(Buffer.from(a).equals(Buffer.from(w.seal(plain))), 'same bytes')
    assert.equal(createSleeveCipher(secret, false, { impl: 'wasm' }).open(Uint8Array.from(a)), decodeDatagram(plain))
    assert.equal(createSleeveCipher(secret, false, { impl: 'native' }).open(a), decodeDatagram(plain))
  }), { numRuns: 50 })
})

baseTest('AES-256-GCM and ChaCha20-Poly1305 keys differ: neither opens the other\'s datagrams', () => {
  if (!hasAes) return
  const plain = encodeFrames({ src: 1, dst: 2 }, [frame(8, 500)])
  const aes = createSleeveCipher(secret, true, { cipher: 'aes-256-gcm' })
  const chacha = createSleeveCipher(secret, true, { cipher: 'chacha20-poly1305' })
  assert.equal(createSleeveCipher(secret, false, { cipher: 'chacha20-poly1305' }).open(aes.seal(plain)), { ok: false, reason: 'bad-mac' })
  assert.equal(createSleeveCipher(secret, false, { cipher: 'aes-256-gcm' }).open(chacha.seal(plain)), { ok: false, reason: 'bad-mac' })
  assert.equal(createSleeveCipher(secret, false, { cipher: 'aes-256-gcm' }).open(aes.seal(plain)), decodeDatagram(plain))
})

const viaBoth = 'native ChaCha20-Poly1305 through libcrypto and through libsodium alone: same bytes, each opens the other\'s'
const bothLibs = !!nativeAeadKey('chacha20-poly1305', new Uint8Array(32)) && !!nativeAeadKey('chacha20-poly1305', new Uint8Array(32), { via: 'libsodium' })
if (!bothLibs) skipTest(viaBoth, 'the native addon was built without libcrypto or without libsodium', baseTest)
else baseTest(viaBoth, () => {
  const key = new Uint8Array(32).fill(3)
  const viaCrypto = nativeAeadKey('chacha20-poly1305', key)!
  const viaSodium = nativeAeadKey('chacha20-poly1305', key, { via: 'libsodium' })!
  assert.is(viaSodium.piece, undefined, 'libsodium contexts do not stream')
  const msg = Uint8Array.from({ length: 5000 }, (_, i) => (i * 31) & 255)
  const a = new Uint8Array(16 + 5000 + 16); a.set(msg, 16)
  const b = Uint8Array.from(a)
  viaCrypto.seal(1, 77, a, 16)
  viaSodium.seal(1, 77, b, 16)
  assert.equal(a, b, 'seal')
  const c = new Uint8Array(a.length)
  viaSodium.sealv(1, 77, c, 16, [msg.subarray(0, 7), msg.subarray(7)])
  assert.equal(c, a, 'sealv')
  assert.ok(viaSodium.open(1, 77, b, 16) && viaCrypto.open(1, 77, c, 16))
  assert.equal(b.subarray(16, 5016), msg)
  assert.equal(c.subarray(16, 5016), msg)
  a[100] ^= 1
  assert.is(viaSodium.open(1, 77, Uint8Array.from(a), 16), false)
  assert.is(viaCrypto.open(1, 77, a, 16), false)
})

baseTest('AES-256-GCM has no wasm fallback: asking for it there throws', () => {
  assert.throws(() => createSleeveCipher(secret, true, { impl: 'wasm', cipher: 'aes-256-gcm' }))
})

baseTest('replay window: each number accepted once, too-old below the window, matches a model', () => {
  fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 200 }), (seqs) => {
    const w = new ReplayWindow(64)
    const seen = new Set<number>()
    let top = -1
    for (const s of seqs) {
      const expect = s > top ? 'ok' : top - s >= 64 ? 'too-old' : seen.has(s) ? 'replayed' : 'ok'
      assert.is(w.check(s), expect, `seq ${s} after top ${top}`)
      if (expect === 'ok') { w.accept(s); seen.add(s); top = Math.max(top, s) }
    }
  }))
})

baseTest.run()
