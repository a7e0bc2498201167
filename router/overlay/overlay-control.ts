/**
 * The overlay's control messages, carried over each mesh connection (`{type:'overlay', payload}`,
 * JSON), and their codec. A peer's bytes are untrusted: decoding returns undefined for anything
 * malformed (the caller counts and ignores it) and trims what it shows in our status.
 *
 *   hello {t:'hello', port, pub?, got, fastdp?, ciphers?}  our sleeve UDP port and, with a password, an
 *                                       ephemeral X25519 public key; `got`: we already hold theirs;
 *                                       `ciphers`: the sleeve AEADs we can do (with a password; absent:
 *                                       a peer that predates the choice, ChaCha20-Poly1305 only);
 *                                       `fastdp`: true when our OVS datapath can take this peer,
 *                                       else why not (absent: a peer that predates fastdp)
 *   ack   {t:'ack', uid}                "your UDP heartbeat for connection uid reached me"
 *   fdp   {t:'fdp', ok}                 "your fastdp heartbeats reach me" (or not); see fastdp-health
 *   esp   {t:'esp', sending, accepting} encrypted fastdp's key epochs (see fastdp-ipsec)
 *   pmtu  {t:'pmtu', size}             "your probe of `size` bytes (plaintext datagram) reached me"
 * A hello's `trusted: true` says the sender trusts our address (`--trusted-subnets`); when we
 * trust the sender's too, the connection's data goes in clear (Weave's mutual-trust rule).
 * With a password, a hello also carries `esp`: a fresh 32-byte nonce of this connection when we
 * can protect fastdp with kernel ESP; the keys come from it, the peer's and the shared secret.
 */
import { HEADER_BYTES } from './sleeve-frame'
import type { SleeveCipherName } from './sleeve-crypto'
import { ESP_NONCE_BYTES, validateEspControl, type EspControl } from './fastdp-ipsec'

/** In a hello: fastdp is ready here (true), or why not (shown in the peer's status). */
export type FastdpOffer = true | string

export type OverlayControl =
  | { t: 'hello'; port: number; pub?: Uint8Array; got: boolean; fastdp?: FastdpOffer; dp?: string; ciphers?: string[]; esp?: Uint8Array; trusted?: boolean }
  | { t: 'ack'; uid: bigint }
  | { t: 'fdp'; ok: boolean }
  | { t: 'pmtu'; size: number }
  | EspControl

export function encodeOverlayControl(m: OverlayControl): Uint8Array {
  const obj = m.t === 'hello'
    ? { t: 'hello', port: m.port, pub: m.pub ? Buffer.from(m.pub).toString('base64') : undefined, got: m.got, fastdp: m.fastdp, dp: m.dp, ciphers: m.ciphers, esp: m.esp ? Buffer.from(m.esp).toString('base64') : undefined, trusted: m.trusted || undefined }
    : m.t === 'ack' ? { t: 'ack', uid: m.uid.toString() } : m.t === 'esp' || m.t === 'pmtu' ? m : { t: 'fdp', ok: m.ok }
  return new TextEncoder().encode(JSON.stringify(obj))
}

/** Peer input: returns undefined for anything malformed (the caller counts and ignores it). */
const KNOWN_CIPHERS = new Set<string>(['aes-256-gcm', 'chacha20-poly1305'] satisfies SleeveCipherName[])

export function decodeOverlayControl(bytes: Uint8Array): OverlayControl | undefined {
  let o: unknown
  try {
    o = JSON.parse(new TextDecoder().decode(bytes))
  } catch {
    return undefined
  }
  if (typeof o !== 'object' || o === null) return undefined
  const r = o as Record<string, unknown>
  if (r.t === 'hello') {
    if (typeof r.port !== 'number' || !Number.isInteger(r.port) || r.port < 1 || r.port > 65535) return undefined
    let pub: Uint8Array | undefined
    if (r.pub !== undefined) {
      if (typeof r.pub !== 'string') return undefined
      pub = new Uint8Array(Buffer.from(r.pub, 'base64'))
      if (pub.length !== 32) return undefined
    }
    // fastdp: true, or a reason (cut short: it is peer input shown in our status)
    let fastdp: FastdpOffer | undefined
    if (r.fastdp === true) fastdp = true
    else if (typeof r.fastdp === 'string') fastdp = r.fastdp.slice(0, 200).replace(/[^\x20-\x7e]/g, '?')
    else if (r.fastdp !== undefined) fastdp = 'unreadable fastdp offer'
    // which fast path the offer is for (absent: OVS); an unknown one is kept, it never matches ours
    const dp = typeof r.dp === 'string' && /^[a-z0-9-]{1,16}$/.test(r.dp) ? r.dp : r.dp === undefined ? undefined : 'unknown'
    // ciphers: names we do not know are kept out (they can never be chosen); a few at most
    let ciphers: string[] | undefined
    if (Array.isArray(r.ciphers)) ciphers = r.ciphers.slice(0, 16).filter((c): c is string => typeof c === 'string' && KNOWN_CIPHERS.has(c))
    else if (r.ciphers !== undefined) return undefined
    let esp: Uint8Array | undefined
    if (r.esp !== undefined) {
      if (typeof r.esp !== 'string') return undefined
      esp = new Uint8Array(Buffer.from(r.esp, 'base64'))
      if (esp.length !== ESP_NONCE_BYTES) return undefined
    }
    return { t: 'hello', port: r.port, pub, got: r.got === true, ...(fastdp === undefined ? {} : { fastdp }), ...(dp === undefined ? {} : { dp }), ...(ciphers === undefined ? {} : { ciphers }), ...(esp === undefined ? {} : { esp }), ...(r.trusted === true ? { trusted: true } : {}) }
  }
  if (r.t === 'ack') {
    if (typeof r.uid !== 'string' || !/^\d{1,20}$/.test(r.uid)) return undefined
    return { t: 'ack', uid: BigInt(r.uid) }
  }
  if (r.t === 'fdp') {
    if (typeof r.ok !== 'boolean') return undefined
    return { t: 'fdp', ok: r.ok }
  }
  if (r.t === 'pmtu') {
    if (typeof r.size !== 'number' || !Number.isInteger(r.size) || r.size < HEADER_BYTES || r.size > 65_535) return undefined
    return { t: 'pmtu', size: r.size }
  }
  if (r.t === 'esp') return validateEspControl(r)
  return undefined
}
