/**
 * Encryption of sleeve datagrams (with a mesh password): AES-256-GCM where both ends have
 * AES-NI and the native addon (chosen per connection in the overlay hello, see
 * chooseSleeveCipher), else ChaCha20-Poly1305 (IETF); a key per direction and cipher, a
 * counter nonce sent in clear, and a replay window. Both AEADs take the same 96-bit nonce.
 *
 * Sealed datagram:
 *   0   8-byte sleeve header, kind with the sealed bit (see sleeve-frame.ts)
 *   8   u64 sequence number, big-endian (per direction, from 0)
 *   16  AEAD(body) + 16-byte tag; associated data = bytes 0..16
 *
 * Keys: from a 32-byte secret both ends of one mesh connection share (derived from that
 * connection's session key), BLAKE2b-256 keyed by it over "sleeve d2l" / "sleeve l2d"
 * (ChaCha) or "sleeve aes-256-gcm d2l" / "… l2d" (AES), so the two directions and the two
 * ciphers never share a key; the nonce also carries a direction bit (byte 0)
 * so a datagram reflected back at its sender fails twice over.
 * Why a counter in clear rather than implicit as on TCP: UDP loses and reorders datagrams, so
 * the receiver must know which counter each one used; the replay window then refuses repeats.
 *
 * The AEAD runs in the native addon (OpenSSL's libcrypto or libsodium, in place, ≥10× faster)
 * when available, else (ChaCha only) in libsodium-wrappers; all produce the same bytes.
 */
import type Sodium from 'libsodium-wrappers-sumo'
import { nativeAead, nativeAeadKey, nativeCiphers, type AeadContext, type NativeAead } from '../native'
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

// libsodium-wrappers is loaded on first use (~13 MiB): a router without a password never needs it.
let sodium: typeof Sodium | undefined
/** Resolve before creating ciphers (loads libsodium the first time); cheap after the first call. */
export async function sleeveCryptoReady(): Promise<void> {
  if (sodium) return
  const m = (await import('libsodium-wrappers-sumo')).default
  await m.ready
  sodium = m
}
/** libsodium-wrappers, once sleeveCryptoReady() has resolved. */
export function sleeveSodium(): typeof Sodium {
  if (!sodium) throw new Error('sleeve crypto used before sleeveCryptoReady() resolved')
  return sodium
}
const lib = sleeveSodium

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

/** The AEADs sleeve can seal with; names as they travel in the overlay hello. */
export type SleeveCipherName = 'aes-256-gcm' | 'chacha20-poly1305'
/** Every peer can do this one (libsodium-wrappers at worst); a peer that names none does only this. */
export const DEFAULT_SLEEVE_CIPHER: SleeveCipherName = 'chacha20-poly1305'

/**
 * What this host offers in its hellos, preferred first: AES-256-GCM only where the native
 * addon runs it fast and in constant time (libcrypto + AES-NI/PCLMUL), then ChaCha20-Poly1305.
 */
export function sleeveCiphers(): SleeveCipherName[] {
  return nativeCiphers().includes('aes-256-gcm') ? ['aes-256-gcm', DEFAULT_SLEEVE_CIPHER] : [DEFAULT_SLEEVE_CIPHER]
}

/**
 * The cipher one connection uses, computed alike at both ends from the two offers: AES-256-GCM
 * when both offer it, else ChaCha20-Poly1305 (also for a peer whose hello has no offer).
 */
export function chooseSleeveCipher(ours: readonly string[], theirs: readonly string[] | undefined): SleeveCipherName {
  return ours.includes('aes-256-gcm') && theirs !== undefined && theirs.includes('aes-256-gcm') ? 'aes-256-gcm' : DEFAULT_SLEEVE_CIPHER
}

/** Seals what we send to one peer and opens what it sends us. */
export interface SleeveCipher {
  /** Seals a plaintext datagram (as made by encodeFrames/encodeHeartbeat/encodeProbe). */
  seal(plain: Uint8Array): Uint8Array
  /**
   * seal(header ‖ body[0] ‖ body[1] ...) without building the plaintext first: `header` is the
   * 8-byte plaintext sleeve header. One copy of the body (a 64 KiB super-frame) instead of two;
   * natively the body is encrypted straight from where it is. Natively with `into` (large
   * enough, not overlapping the body) the result is a view of it, valid until `into` is reused
   * (the wasm fallback ignores `into`): a sender
   * that hands the datagram to the kernel at once saves allocating (and faulting in) 64 KiB.
   */
  sealParts?(header: Uint8Array, body: readonly Uint8Array[], into?: Uint8Array): Uint8Array
  /**
   * Authenticates, checks for replay and decodes a received datagram; never throws on bad input.
   * With the native AEAD it decrypts in place: `sealed` holds plaintext afterwards (the frames
   * returned are views into it), which saves a copy per datagram of a receive buffer.
   */
  open(sealed: Uint8Array): OpenResult
  /** Which AEAD implementation this cipher uses. */
  readonly impl: 'native' | 'wasm'
  /** Which AEAD. */
  readonly name: SleeveCipherName
  /** Natively with libcrypto: opening a sealed datagram while its pieces are put together. */
  readonly pieces?: PieceOpener
}

/**
 * Opens a sealed datagram that arrives as pieces, decrypting each piece straight into its place
 * in the reassembly buffer (no separate copy, then in-place pass). Pieces in order from offset
 * 0; a new offset 0 starts over. The buffer is not trustworthy until `done` says ok.
 */
export interface PieceOpener {
  /** For UdpSocket.collectPieces, which does `piece` for runs of pieces in C. */
  readonly context: AeadContext
  readonly dir: number
  /** Bytes [off, off + src.length) of a sealed datagram of `total` bytes into place in `dest`; false: did not follow. */
  piece(dest: Uint8Array, src: Uint8Array, off: number, total: number): boolean
  /** After the last piece, with the whole datagram: header, replay window and tag checked, then decoded like open(). */
  done(buf: Uint8Array): OpenResult
}

/** In-place AEAD with one key: buf = associated data (adLen) ‖ message ‖ tag. */
interface KeyedAead {
  seal(dir: number, seq: number, buf: Uint8Array, adLen: number): void
  open(dir: number, seq: number, buf: Uint8Array, adLen: number): boolean
  sealv?(dir: number, seq: number, out: Uint8Array, adLen: number, parts: readonly Uint8Array[]): void
  piece?(dir: number, dest: Uint8Array, src: Uint8Array, off: number, total: number): boolean
  piecesDone?(buf: Uint8Array): boolean
  context?: AeadContext
}

/** The native AEAD for one key: libcrypto context when there is one, else libsodium (ChaCha only). */
function nativeKey(cipher: SleeveCipherName, key: Uint8Array): KeyedAead | undefined {
  const k = nativeAeadKey(cipher, key)
  if (k || cipher !== 'chacha20-poly1305') return k
  const a: NativeAead | undefined = nativeAead()
  return a && {
    seal: (dir, seq, buf, adLen) => a.seal(key, dir, seq, buf, adLen),
    open: (dir, seq, buf, adLen) => a.open(key, dir, seq, buf, adLen),
  }
}

const KEY_LABELS: Record<SleeveCipherName, [string, string]> = {
  // ChaCha's labels predate the choice of cipher: kept, so peers of before still agree
  'chacha20-poly1305': ['sleeve d2l', 'sleeve l2d'],
  'aes-256-gcm': ['sleeve aes-256-gcm d2l', 'sleeve aes-256-gcm l2d'],
}

/**
 * The cipher for one peer connection. `secret` is 32 bytes both ends share; `dialer` is true
 * at the end that dialled the mesh connection (it picks which direction key we send with).
 * `cipher` (default ChaCha20-Poly1305; see chooseSleeveCipher) also names the key derivation,
 * so the two ciphers never share a key. AES-256-GCM exists only natively (throws otherwise).
 */
export function createSleeveCipher(secret: Uint8Array, dialer: boolean,
  opts: { impl?: 'native' | 'wasm'; cipher?: SleeveCipherName } = {}): SleeveCipher {
  const s = lib()
  const name = opts.cipher ?? DEFAULT_SLEEVE_CIPHER
  if (secret.length !== 32) throw new RangeError('sleeve secret must be 32 bytes')
  const [d2lLabel, l2dLabel] = KEY_LABELS[name]
  const d2l = s.crypto_generichash(32, new TextEncoder().encode(d2lLabel), secret)
  const l2d = s.crypto_generichash(32, new TextEncoder().encode(l2dLabel), secret)
  const txKey = dialer ? d2l : l2d
  const rxKey = dialer ? l2d : d2l
  const txDir = dialer ? 1 : 0
  const rxDir = dialer ? 0 : 1
  const tx = opts.impl === 'wasm' ? undefined : nativeKey(name, txKey)
  const rx = opts.impl === 'wasm' ? undefined : nativeKey(name, rxKey)
  if ((!tx || !rx) && (opts.impl === 'native' || name !== DEFAULT_SLEEVE_CIPHER)) {
    throw new Error(`native ${name} unavailable (addon not built, or libcrypto/libsodium23 or AES-NI missing)`)
  }
  const window = new ReplayWindow()
  let nextSeq = 0

  /**
   * The checks open() makes around the AEAD: header, then the replay window, then `decrypt`
   * (the plaintext body, or undefined when the tag is wrong), and only then the window moves.
   */
  function finishOpen(sealed: Uint8Array, decrypt: (seq: number) => Uint8Array | undefined): OpenResult {
    const d = decodeDatagram(sealed)
    if (!d.ok) return d
    if (d.datagram.kind !== 'sealed') return { ok: false, reason: 'not-sealed' }
    const { src, dst, inner, count, body } = d.datagram
    if (body.length < SEQ_BYTES + TAG_BYTES) return { ok: false, reason: 'truncated' }
    const seq = readSeq(body, 0)
    if (seq > Number.MAX_SAFE_INTEGER) return { ok: false, reason: 'too-old' }
    const verdict = window.check(seq)
    if (verdict !== 'ok') return { ok: false, reason: verdict }
    const plain = decrypt(seq)
    if (!plain) return { ok: false, reason: 'bad-mac' }
    window.accept(seq)
    return decodeBody(inner, src, dst, count, plain) as OpenResult
  }
  const inPlace = (sealed: Uint8Array) => sealed.subarray(AD_BYTES, sealed.length - TAG_BYTES)

  const streamRx = rx && rx.piece && rx.piecesDone && rx.context ? rx : undefined
  const pieces: PieceOpener | undefined = streamRx && {
    context: streamRx.context!,
    dir: rxDir,
    piece: (dest, src, off, total) => streamRx.piece!(rxDir, dest, src, off, total),
    done(buf) {
      // the verdict first, whatever else is wrong: it also ends this datagram's stream
      const tagOk = streamRx.piecesDone!(buf)
      return finishOpen(buf, () => (tagOk ? inPlace(buf) : undefined))
    },
  }

  return {
    impl: tx ? 'native' : 'wasm',
    name,
    ...(pieces ? { pieces } : {}),

    sealParts(header, body, into) {
      if (header.length < HEADER_BYTES) throw new RangeError('not a sleeve header')
      let len = 0
      for (const b of body) len += b.length
      if (!tx) {
        const plain = new Uint8Array(HEADER_BYTES + len)
        plain.set(header.subarray(0, HEADER_BYTES))
        let p = HEADER_BYTES
        for (const b of body) { plain.set(b, p); p += b.length }
        return this.seal(plain)
      }
      if (nextSeq >= Number.MAX_SAFE_INTEGER) throw new Error('sleeve sequence numbers exhausted; re-key the connection')
      const seq = nextSeq++
      // every byte is written below (header, sequence, body, then the tag by the AEAD)
      const size = AD_BYTES + len + TAG_BYTES
      const out = into && into.length >= size ? into.subarray(0, size) : Buffer.allocUnsafe(size)
      out.set(header.subarray(0, HEADER_BYTES))
      out[1] |= SEALED_BIT
      writeSeq(out, HEADER_BYTES, seq)
      if (tx.sealv && body.length <= 8) {
        tx.sealv(txDir, seq, out, AD_BYTES, body)
        return out
      }
      let p = AD_BYTES
      for (const b of body) { out.set(b, p); p += b.length }
      tx.seal(txDir, seq, out, AD_BYTES)
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
      if (tx) {
        out.set(plain.subarray(HEADER_BYTES), AD_BYTES)
        tx.seal(txDir, seq, out, AD_BYTES)
      } else {
        out.set(s.crypto_aead_chacha20poly1305_ietf_encrypt(plain.subarray(HEADER_BYTES), out.subarray(0, AD_BYTES), null, nonce(txDir, seq), txKey), AD_BYTES)
      }
      return out
    },

    open(sealed) {
      if (rx) return finishOpen(sealed, (seq) => (rx.open(rxDir, seq, sealed, AD_BYTES) ? inPlace(sealed) : undefined))
      return finishOpen(sealed, (seq) => {
        try {
          return s.crypto_aead_chacha20poly1305_ietf_decrypt(null, sealed.subarray(AD_BYTES), sealed.subarray(0, AD_BYTES), nonce(rxDir, seq), rxKey)
        } catch {
          return undefined
        }
      })
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
