/**
 * Sleeve encryption in the addon (aead.c): ChaCha20-Poly1305 in place through the system's
 * libsodium (nativeAead), and keys set up once for AES-256-GCM or ChaCha20-Poly1305 through
 * OpenSSL's libcrypto (nativeAeadKey), which can also open a datagram piece by piece.
 */
import { addon, type Addon, type AeadContext } from './addon'

/**
 * In-place ChaCha20-Poly1305 (IETF) through the system's libsodium, when the addon and
 * libsodium23 are both there; undefined otherwise (callers fall back to libsodium-wrappers).
 * `buf` = associated data (adLen bytes) ‖ message ‖ 16-byte tag. Nonce: byte 0 = 0x80 when
 * `dir` is 1, bytes 4..11 = `seq` big-endian.
 */
export interface NativeAead {
  /** Encrypts the message in place and writes the tag. */
  seal(key: Uint8Array, dir: number, seq: number, buf: Uint8Array, adLen: number): void
  /** Authenticates, then decrypts in place; false when it does not authenticate (libsodium then zeroes the message). */
  open(key: Uint8Array, dir: number, seq: number, buf: Uint8Array, adLen: number): boolean
}

export function nativeAead(): NativeAead | undefined {
  let a: Addon
  try { a = addon() } catch { return undefined }
  if (!a.aeadAvailable()) return undefined
  return { seal: a.aeadSeal, open: a.aeadOpen }
}

/** AEADs the addon can run with a key set up once (see nativeAeadKey). */
export type NativeCipherName = 'chacha20-poly1305' | 'aes-256-gcm'

/** One key of one cipher, set up once (AES key schedule, OpenSSL context); same buffer layout and nonce as NativeAead. */
export interface NativeAeadKey {
  seal(dir: number, seq: number, buf: Uint8Array, adLen: number): void
  /** false when it does not authenticate: the buffer as it was with libcrypto (libsodium zeroes the message). */
  open(dir: number, seq: number, buf: Uint8Array, adLen: number): boolean
  /**
   * Like seal, with the message gathered from `parts` (≤ 8, not overlapping `out`, lengths
   * summing to out.length - adLen - 16) and encrypted straight into `out` after its adLen
   * bytes of associated data: one pass instead of copy-then-seal.
   */
  sealv(dir: number, seq: number, out: Uint8Array, adLen: number, parts: readonly Uint8Array[]): void
  /**
   * (With libcrypto only.) Opening a datagram (16 bytes of associated data ‖ ciphertext ‖ tag, `total` bytes) as its
   * pieces arrive, in order from offset 0: `src` holds bytes [off, off + src.length), decrypted
   * (or, for associated data and tag, copied) into the same place in `dest`. False when the
   * piece does not follow the previous one. UdpSocket.collectPieces does the same given `context`.
   * Nothing in `dest` is authentic until piecesDone(dest.subarray(0, total)) says so.
   */
  piece?(dir: number, dest: Uint8Array, src: Uint8Array, off: number, total: number): boolean
  /** The datagram streamed through `piece` arrived whole and its tag is right (one verdict per datagram). */
  piecesDone?(buf: Uint8Array): boolean
  readonly context: AeadContext
}

const CIPHER_ALG: Record<NativeCipherName, number> = { 'chacha20-poly1305': 0, 'aes-256-gcm': 1 }

/**
 * Which ciphers nativeAeadKey can do here: ChaCha20-Poly1305 with libcrypto (OpenSSL) or
 * libsodium; AES-256-GCM only with libcrypto on a CPU with AES-NI and PCLMUL (else it would be
 * slow and not constant-time). [] without the addon.
 */
export function nativeCiphers(): NativeCipherName[] {
  let a: Addon
  try { a = addon() } catch { return [] }
  const bits = a.aeadCiphers?.() ?? 0
  const out: NativeCipherName[] = []
  if (bits & 2) out.push('aes-256-gcm')
  if (bits & 1) out.push('chacha20-poly1305')
  return out
}

/**
 * A key for `cipher` (32 bytes, copied); undefined when nativeCiphers() lacks it.
 * `via: 'libsodium'` (tests): ChaCha20-Poly1305 as it runs where there is no libcrypto.
 */
export function nativeAeadKey(cipher: NativeCipherName, key: Uint8Array, opts: { via?: 'libsodium' } = {}): NativeAeadKey | undefined {
  if (!nativeCiphers().includes(cipher)) return undefined
  const a = addon()
  const sodiumOnly = opts.via === 'libsodium'
  if (sodiumOnly && (cipher !== 'chacha20-poly1305' || !a.aeadAvailable())) return undefined
  const ctx = a.aeadContext!(CIPHER_ALG[cipher], key, sodiumOnly)
  const streams = !sodiumOnly && ((a.aeadCiphers?.() ?? 0) & 4) !== 0 // with libcrypto; libsodium alone cannot
  const seal = a.aeadCtxSeal!
  const open = a.aeadCtxOpen!
  const sealv = a.aeadCtxSealv!
  const piece = a.aeadCtxPiece!
  const done = a.aeadCtxPiecesDone!
  return {
    context: ctx,
    ...(streams ? {
      piece: (dir: number, dest: Uint8Array, src: Uint8Array, off: number, total: number) => piece(ctx, dir, dest, src, off, total),
      piecesDone: (buf: Uint8Array) => done(ctx, buf),
    } : {}),
    seal: (dir, seq, buf, adLen) => seal(ctx, dir, seq, buf, adLen),
    open: (dir, seq, buf, adLen) => open(ctx, dir, seq, buf, adLen),
    sealv: (dir, seq, out, adLen, parts) => sealv(ctx, dir, seq, out, adLen, parts),
  }
}
