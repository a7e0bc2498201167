/**
 * Crypto of mesh connections (libsodium, sumo build).
 *
 * - Password key: Argon2id(password, PASSWORD_SALT) with libsodium's "interactive" limits,
 *   computed ONCE at start (`derivePasswordKey`), 32 bytes. The salt is fixed and public on
 *   purpose: every peer of a mesh must derive the same key from the same password without
 *   talking first; Argon2id still makes each guess of an offline attacker expensive.
 * - Per connection, each side makes an ephemeral X25519 key pair and sends its public key in the
 *   handshake. session = BLAKE2b-256(X25519(ours, theirs) ‖ passwordKey ‖ dialerPub ‖ listenerPub).
 *   Without the right password the two sides end up with different session keys.
 * - Per direction, a key = BLAKE2b-256 keyed by the session key over "d2l" (dialer → listener)
 *   or "l2d"; each message is XChaCha20-Poly1305 sealed with a 24-byte nonce holding a per
 *   direction counter (bytes 16..23 big-endian, from 0) and a direction bit (byte 0). Counters are
 *   implicit (TCP is ordered), so a replayed, dropped or reordered message fails to open.
 *   Separate keys AND a direction bit mean the two directions can never reuse a (key, nonce).
 */
import * as path from 'node:path'
import { Worker } from 'node:worker_threads'
import type Sodium from 'libsodium-wrappers-sumo'

/** Public, fixed Argon2id salt (16 bytes = crypto_pwhash_SALTBYTES). Changing it breaks the wire. */
export const PASSWORD_SALT = new TextEncoder().encode('weave-ts-mesh-v1')

/** A 32-byte key derived from the mesh password; make it with `derivePasswordKey`. */
export interface PasswordKey {
  readonly bytes: Uint8Array
  readonly __brand: 'PasswordKey'
}

export interface KeyPair { publicKey: Uint8Array; privateKey: Uint8Array }

// Loaded on first use (~13 MiB and ~150 ms of start-up): a router without a password never needs it.
let sodium: typeof Sodium | undefined

/** Resolve once libsodium is usable (loading it the first time); cheap after the first call. */
export async function sodiumReady(): Promise<void> {
  if (sodium) return
  const m = (await import('libsodium-wrappers-sumo')).default
  await m.ready
  sodium = m
}

function lib(): typeof Sodium {
  if (!sodium) throw new Error('libsodium used before sodiumReady() resolved')
  return sodium
}

/**
 * Argon2id of the password; slow on purpose (~0.3 s, 64 MiB), so call it once at start. It runs
 * in a worker thread that exits afterwards (password-hash-worker.ts), so the 64 MiB of Argon2's
 * memory are returned instead of staying in this thread's WebAssembly heap.
 */
export async function derivePasswordKey(password: string): Promise<PasswordKey> {
  await sodiumReady() // callers go on to seal and open with this thread's libsodium
  const worker = new Worker(path.join(__dirname, 'password-hash-worker.js'), { workerData: { password, salt: PASSWORD_SALT } })
  try {
    const result = await new Promise<unknown>((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
      worker.once('exit', (code) => reject(new Error(`password hash worker exited (${code}) without a result`)))
    })
    if (!(result instanceof Uint8Array) || result.length !== 32) {
      throw new Error(`password hash failed: ${(result as { error?: string } | undefined)?.error ?? 'no key'}`)
    }
    return { bytes: new Uint8Array(result), __brand: 'PasswordKey' }
  } finally {
    void worker.terminate()
  }
}

/** An X25519 key pair from 32 random bytes (taken from the injected Rng, so tests are deterministic). */
export function keyPairFromSeed(seed: Uint8Array): KeyPair {
  if (seed.length !== 32) throw new RangeError('X25519 seed must be 32 bytes')
  const privateKey = seed.slice()
  return { publicKey: lib().crypto_scalarmult_base(privateKey), privateKey }
}

const TAG_BYTES = 16
const NONCE_BYTES = 24

/** Seals our outgoing messages in order. */
export class Sealer {
  private counter = 0n
  constructor(private readonly key: Uint8Array, private readonly dirBit: number) {}
  seal(plain: Uint8Array): Uint8Array {
    const nonce = makeNonce(this.dirBit, this.counter++)
    return lib().crypto_aead_xchacha20poly1305_ietf_encrypt(plain, null, null, nonce, this.key)
  }
}

/** Opens the remote's messages in order; `undefined` when a message fails to authenticate. */
export class Opener {
  private counter = 0n
  constructor(private readonly key: Uint8Array, private readonly dirBit: number) {}
  open(sealed: Uint8Array): Uint8Array | undefined {
    if (sealed.length < TAG_BYTES) return undefined
    const nonce = makeNonce(this.dirBit, this.counter)
    try {
      const plain = lib().crypto_aead_xchacha20poly1305_ietf_decrypt(null, sealed, null, nonce, this.key)
      this.counter++
      return plain
    } catch {
      return undefined
    }
  }
}

function makeNonce(dirBit: number, counter: bigint): Uint8Array {
  const n = new Uint8Array(NONCE_BYTES)
  n[0] = dirBit ? 0x80 : 0
  new DataView(n.buffer).setBigUint64(16, counter, false)
  return n
}

export interface SessionCiphers { tx: Sealer; rx: Opener }

/**
 * Both directions' ciphers for one connection, or a reason when the remote key is unusable
 * (a low-order point gives an all-zero shared secret).
 */
export function sessionCiphers(ours: KeyPair, remotePublic: Uint8Array, password: PasswordKey, outbound: boolean):
  { ok: true; ciphers: SessionCiphers } | { ok: false; reason: string } {
  const s = lib()
  let shared: Uint8Array
  try {
    shared = s.crypto_scalarmult(ours.privateKey, remotePublic)
  } catch {
    return { ok: false, reason: 'remote public key is invalid' }
  }
  if (shared.every((b) => b === 0)) return { ok: false, reason: 'remote public key is a low-order point' }
  const dialerPub = outbound ? ours.publicKey : remotePublic
  const listenerPub = outbound ? remotePublic : ours.publicKey
  const session = s.crypto_generichash(32, concat(shared, password.bytes, dialerPub, listenerPub), null)
  const d2l = s.crypto_generichash(32, new TextEncoder().encode('d2l'), session)
  const l2d = s.crypto_generichash(32, new TextEncoder().encode('l2d'), session)
  // Direction bit: 1 for messages the dialer sends.
  return outbound
    ? { ok: true, ciphers: { tx: new Sealer(d2l, 1), rx: new Opener(l2d, 0) } }
    : { ok: true, ciphers: { tx: new Sealer(l2d, 0), rx: new Opener(d2l, 1) } }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}
