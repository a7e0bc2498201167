/**
 * Sleeve key agreement, per mesh connection: each end sends an ephemeral X25519 public key in
 * its overlay hello. The keys travel over the mesh connection because it is already encrypted
 * and authenticated with the password, so the exchange is authenticated too. The shared secret
 * is BLAKE2b-256(X25519(ours, theirs) ‖ dialer pub ‖ listener pub); createSleeveCipher derives
 * the per-direction keys from it. Fresh keys per connection: a reconnect never reuses a
 * (key, nonce).
 */
import { sleeveSodium } from './sleeve-crypto'

export interface KxKeyPair {
  publicKey: Uint8Array
  privateKey: Uint8Array
}

/** An ephemeral X25519 key pair; call after sleeveCryptoReady(). */
export function kxKeyPair(): KxKeyPair {
  const k = sleeveSodium().crypto_kx_keypair()
  return { publicKey: k.publicKey, privateKey: k.privateKey }
}

/** The 32-byte secret both ends of one connection compute; `dialer` is whether we dialled. */
export function deriveSleeveSecret(ours: KxKeyPair, theirPub: Uint8Array, dialer: boolean): Uint8Array {
  const sodium = sleeveSodium()
  const q = sodium.crypto_scalarmult(ours.privateKey, theirPub)
  const [dialPub, listenPub] = dialer ? [ours.publicKey, theirPub] : [theirPub, ours.publicKey]
  const input = new Uint8Array(96)
  input.set(q, 0)
  input.set(dialPub, 32)
  input.set(listenPub, 64)
  return sodium.crypto_generichash(32, input, null)
}
