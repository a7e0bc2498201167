/**
 * Encryption of sleeve datagrams (with a mesh password): libsodium's ChaCha20-Poly1305 (IETF)
 * with a key per direction, a counter nonce sent in clear, and a replay window.
 *
 * Sealed datagram:
 *   0   8-byte sleeve header, kind with the sealed bit (see sleeve-frame.ts)
 *   8   u64 sequence number, big-endian (per direction, from 0)
 *   16  AEAD(body) + 16-byte tag; associated data = bytes 0..16
 *
 * Keys: from a 32-byte secret both ends of one mesh connection share (derived from that
 * connection's session key), BLAKE2b-256 keyed by it over "sleeve d2l" / "sleeve l2d", so the
 * two directions never share a (key, nonce); the nonce also carries a direction bit (byte 0)
 * so a datagram reflected back at its sender fails twice over.
 * Why a counter in clear rather than implicit as on TCP: UDP loses and reorders datagrams, so
 * the receiver must know which counter each one used; the replay window then refuses repeats.
 *
 * The AEAD runs in the native addon (system libsodium, in place, ~10× faster) when available,
 * else in libsodium-wrappers; both produce the same bytes.
 */
import sodium from 'libsodium-wrappers-sumo'
import { nativeAead, type NativeAead } from '../native'
import { decodeBody, decodeDatagram, HEADER_BYTES, type DecodeFailure, type SleeveDatagram } from './sleeve-frame'

export const SEQ_BYTES = 8
export const TAG_BYTES = 16
/** Bytes sealing adds to a datagram. */
export const SEAL_OVERHEAD_BYTES = SEQ_BYTES + TAG_BYTES
/** Sequence numbers behind the newest one that are still accepted once (reordering tolerance). */
export const REPLAY_WINDOW = 1 << 16

const SEALED_BIT = 0x80
const NONCE_BYTES = 12
const AD_BYTES = HEADER_BYTES + SEQ_BYTES

let ready = false
/** Resolve before creating ciphers; cheap after the first call. */
export async function sleeveCryptoReady(): Promise<void> {
  if (ready) return
  await sodium.ready
  ready = true
}
function lib(): typeof sodium {
  if (!ready) throw new Error('sleeve crypto used before sleeveCryptoReady() resolved')
  return sodium
}

export type ReplayVerdict = 'ok' | 'replayed' | 'too-old'

/**
 * Sliding window over sequence numbers (as IPsec's, RFC 4303 §3.4.3): the newest accepted
 * number and a bitmap of the REPLAY_WINDOW numbers below it. `check` before authenticating,
 * `accept` only after, so forged datagrams cannot move the window.
 */
export class ReplayWindow {
  private top = -1
  private readonly bits: Uint32Array
  constructor(private readonly size = REPLAY_WINDOW) {
    if (size % 32 !== 0) throw new RangeError('window size must be a multiple of 32')
    this.bits = new Uint32Array(size / 32)
  }

  check(seq: number): ReplayVerdict {
    if (seq > this.top) return 'ok'
    if (this.top - seq >= this.size) return 'too-old'
    return this.bit(seq) ? 'replayed' : 'ok'
  }

  accept(seq: number): void {
    if (seq > this.top) {
      if (seq - this.top >= this.size) this.bits.fill(0)
      else for (let s = this.top + 1; s < seq; s++) this.clear(s)
      this.top = seq
    }
    this.bits[(seq % this.size) >>> 5] |= 1 << (seq & 31)
  }

  private bit(seq: number): boolean { return (this.bits[(seq % this.size) >>> 5] & (1 << (seq & 31))) !== 0 }
  private clear(seq: number): void { this.bits[(seq % this.size) >>> 5] &= ~(1 << (seq & 31)) }
}

export type OpenFailure = DecodeFailure | 'not-sealed' | 'bad-mac' | 'replayed' | 'too-old'
export type OpenResult = { ok: true; datagram: Exclude<SleeveDatagram, { kind: 'sealed' }> } | { ok: false; reason: OpenFailure }

/** Seals what we send to one peer and opens what it sends us. */
export interface SleeveCipher {
  /** Seals a plaintext datagram (as made by encodeFrames/encodeHeartbeat/encodeProbe). */
  seal(plain: Uint8Array): Uint8Array
  /**
   * seal(header ‖ body[0] ‖ body[1] ...) without building the plaintext first: `header` is the
   * 8-byte plaintext sleeve header. One copy of the body (a 64 KiB super-frame) instead of two.
   */
  sealParts?(header: Uint8Array, body: readonly Uint8Array[]): Uint8Array
  /**
   * Authenticates, checks for replay and decodes a received datagram; never throws on bad input.
   * With the native AEAD it decrypts in place: `sealed` holds plaintext afterwards (the frames
   * returned are views into it), which saves a copy per datagram of a receive buffer.
   */
  open(sealed: Uint8Array): OpenResult
  /** Which AEAD implementation this cipher uses. */
  readonly impl: 'native' | 'wasm'
}

/**
 * The cipher for one peer connection. `secret` is 32 bytes both ends share; `dialer` is true
 * at the end that dialled the mesh connection (it picks which direction key we send with).
 */
export function createSleeveCipher(secret: Uint8Array, dialer: boolean, opts: { impl?: 'native' | 'wasm' } = {}): SleeveCipher {
  const s = lib()
  const fast: NativeAead | undefined = opts.impl === 'wasm' ? undefined : nativeAead()
  if (opts.impl === 'native' && !fast) throw new Error('native AEAD unavailable (addon not built or libsodium23 missing)')
  if (secret.length !== 32) throw new RangeError('sleeve secret must be 32 bytes')
  const d2l = s.crypto_generichash(32, new TextEncoder().encode('sleeve d2l'), secret)
  const l2d = s.crypto_generichash(32, new TextEncoder().encode('sleeve l2d'), secret)
  const txKey = dialer ? d2l : l2d
  const rxKey = dialer ? l2d : d2l
  const txDir = dialer ? 1 : 0
  const rxDir = dialer ? 0 : 1
  const window = new ReplayWindow()
  let nextSeq = 0

  return {
    impl: fast ? 'native' : 'wasm',

    sealParts(header, body) {
      if (header.length < HEADER_BYTES) throw new RangeError('not a sleeve header')
      let len = 0
      for (const b of body) len += b.length
      if (!fast) {
        const plain = new Uint8Array(HEADER_BYTES + len)
        plain.set(header.subarray(0, HEADER_BYTES))
        let p = HEADER_BYTES
        for (const b of body) { plain.set(b, p); p += b.length }
        return this.seal(plain)
      }
      if (nextSeq >= Number.MAX_SAFE_INTEGER) throw new Error('sleeve sequence numbers exhausted; re-key the connection')
      const seq = nextSeq++
      // every byte is written below (header, sequence, body, then the tag by the AEAD)
      const out = Buffer.allocUnsafe(AD_BYTES + len + TAG_BYTES)
      out.set(header.subarray(0, HEADER_BYTES))
      out[1] |= SEALED_BIT
      writeSeq(out, HEADER_BYTES, seq)
      let p = AD_BYTES
      for (const b of body) { out.set(b, p); p += b.length }
      fast.seal(txKey, txDir, seq, out, AD_BYTES)
      return out
    },

    seal(plain) {
      if (plain.length < HEADER_BYTES) throw new RangeError('not a sleeve datagram')
      if (nextSeq >= Number.MAX_SAFE_INTEGER) throw new Error('sleeve sequence numbers exhausted; re-key the connection')
      const seq = nextSeq++
      const out = new Uint8Array(plain.length + SEAL_OVERHEAD_BYTES)
      out.set(plain.subarray(0, HEADER_BYTES))
      out[1] |= SEALED_BIT
      writeSeq(out, HEADER_BYTES, seq)
      if (fast) {
        out.set(plain.subarray(HEADER_BYTES), AD_BYTES)
        fast.seal(txKey, txDir, seq, out, AD_BYTES)
      } else {
        out.set(s.crypto_aead_chacha20poly1305_ietf_encrypt(plain.subarray(HEADER_BYTES), out.subarray(0, AD_BYTES), null, nonce(txDir, seq), txKey), AD_BYTES)
      }
      return out
    },

    open(sealed) {
      const d = decodeDatagram(sealed)
      if (!d.ok) return d
      if (d.datagram.kind !== 'sealed') return { ok: false, reason: 'not-sealed' }
      const { src, dst, inner, count, body } = d.datagram
      if (body.length < SEQ_BYTES + TAG_BYTES) return { ok: false, reason: 'truncated' }
      const seq = readSeq(body, 0)
      if (seq > Number.MAX_SAFE_INTEGER) return { ok: false, reason: 'too-old' }
      const verdict = window.check(seq)
      if (verdict !== 'ok') return { ok: false, reason: verdict }
      let plain: Uint8Array
      if (fast) {
        if (!fast.open(rxKey, rxDir, seq, sealed, AD_BYTES)) return { ok: false, reason: 'bad-mac' }
        plain = sealed.subarray(AD_BYTES, sealed.length - TAG_BYTES)
      } else {
        try {
          plain = s.crypto_aead_chacha20poly1305_ietf_decrypt(null, body.subarray(SEQ_BYTES), sealed.subarray(0, AD_BYTES), nonce(rxDir, seq), rxKey)
        } catch {
          return { ok: false, reason: 'bad-mac' }
        }
      }
      window.accept(seq)
      return decodeBody(inner, src, dst, count, plain) as OpenResult
    },
  }
}

function nonce(dir: number, seq: number): Uint8Array {
  const n = new Uint8Array(NONCE_BYTES)
  n[0] = dir ? 0x80 : 0
  writeSeq(n, 4, seq)
  return n
}

function writeSeq(buf: Uint8Array, at: number, seq: number): void {
  const hi = Math.floor(seq / 2 ** 32)
  const lo = seq >>> 0
  buf[at] = hi >>> 24; buf[at + 1] = (hi >>> 16) & 255; buf[at + 2] = (hi >>> 8) & 255; buf[at + 3] = hi & 255
  buf[at + 4] = lo >>> 24; buf[at + 5] = (lo >>> 16) & 255; buf[at + 6] = (lo >>> 8) & 255; buf[at + 7] = lo & 255
}

function readSeq(buf: Uint8Array, at: number): number {
  const hi = ((buf[at] << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3]) >>> 0
  const lo = ((buf[at + 4] << 24) | (buf[at + 5] << 16) | (buf[at + 6] << 8) | buf[at + 7]) >>> 0
  return hi * 2 ** 32 + lo
}
