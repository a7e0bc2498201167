/**
 * The mesh's message envelope: MessagePack maps `{ v, t, ...fields }`.
 *
 * `v` is the envelope version (ENVELOPE_VERSION); `t` a short type tag. Field names are short
 * because gossip is frequent. Every body inside a frame (framing.ts) is one envelope, encrypted as
 * a unit when the connection has a password.
 *
 * | t       | fields                                   | meaning                                  |
 * |---------|------------------------------------------|------------------------------------------|
 * | `kx`    | `pub`: 32-byte X25519 key or nil          | handshake: crypto offer (always clear)   |
 * | `hello` | `name nick uid sid ov cid`               | handshake: identity + features           |
 * | `refuse`| `code msg`                               | handshake: why we refuse (clear text)    |
 * | `hb`    | –                                        | heartbeat                                |
 * | `bye`   | `why`                                    | orderly close with the reason            |
 * | `g`     | `ch src p`                               | gossip                                   |
 * | `gu`    | `ch src dst p`                           | gossip unicast                           |
 * | `gb`    | `ch src p`                               | gossip broadcast                         |
 * | `ov`    | `p`                                      | overlay control                          |
 *
 * u64 values (uid, cid) travel as 8-byte big-endian binaries, so no side depends on MessagePack's
 * integer width choices. Decoding untrusted bytes never throws: it returns `{ ok: false, reason }`;
 * an unknown `t` is `reason: 'unknown-type'` with the tag, which a connection logs once and skips
 * (a newer peer may send types we do not know).
 */
import { Decoder, Encoder } from '@msgpack/msgpack'
import { parsePeerName, type PeerName } from './gossip-contract'
import type { HandshakeFailure, MeshMessage } from './connection-contract'
import { MAX_FRAME_BYTES } from './framing'

export const ENVELOPE_VERSION = 1

export interface HelloFields {
  name: PeerName
  nickname: string
  uid: bigint
  shortId: number
  overlays: string[]
  /** Our random half of the connection UID. */
  connId: bigint
}

/** Everything that travels in an envelope: handshake, heartbeat, bye, and router messages. */
export type WireMessage =
  | { type: 'kx'; publicKey: Uint8Array | null }
  | ({ type: 'hello' } & HelloFields)
  | { type: 'refuse'; code: HandshakeFailure['code']; message: string }
  | { type: 'heartbeat' }
  | { type: 'bye'; reason: string }
  | MeshMessage

export type EnvelopeFailure = 'bad-msgpack' | 'bad-envelope' | 'bad-version' | 'unknown-type'

export type DecodeResult =
  | { ok: true; msg: WireMessage }
  | { ok: false; reason: EnvelopeFailure; detail: string; /** The tag, for unknown types. */ type?: string }

const encoder = new Encoder()
// Limits so a small hostile frame cannot make the decoder allocate much more than its size.
const decoder = new Decoder({
  maxStrLength: MAX_FRAME_BYTES, maxBinLength: MAX_FRAME_BYTES,
  maxArrayLength: 1 << 16, maxMapLength: 64, maxExtLength: 0,
})

const REFUSE_CODES = new Set<HandshakeFailure['code']>([
  'version-mismatch', 'password-mismatch', 'encryption-mismatch', 'self-connection',
  'name-collision', 'bad-message', 'timeout', 'io-error',
])

export function u64ToBytes(x: bigint): Uint8Array {
  const out = new Uint8Array(8)
  new DataView(out.buffer).setBigUint64(0, BigInt.asUintN(64, x), false)
  return out
}

export function bytesToU64(b: Uint8Array): bigint {
  return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, false)
}

/** MessagePack bytes of one envelope. */
export function encodeEnvelope(msg: WireMessage): Uint8Array {
  return encoder.encode(toFields(msg))
}

function toFields(msg: WireMessage): Record<string, unknown> {
  const v = ENVELOPE_VERSION
  switch (msg.type) {
    case 'kx': return { v, t: 'kx', pub: msg.publicKey }
    case 'hello': return {
      v, t: 'hello', name: msg.name, nick: msg.nickname, uid: u64ToBytes(msg.uid), sid: msg.shortId,
      ov: msg.overlays, cid: u64ToBytes(msg.connId),
    }
    case 'refuse': return { v, t: 'refuse', code: msg.code, msg: msg.message }
    case 'heartbeat': return { v, t: 'hb' }
    case 'bye': return { v, t: 'bye', why: msg.reason }
    case 'gossip': return { v, t: 'g', ch: msg.channel, src: msg.src, p: msg.payload }
    case 'gossip-unicast': return { v, t: 'gu', ch: msg.channel, src: msg.src, dst: msg.dst, p: msg.payload }
    case 'gossip-broadcast': return { v, t: 'gb', ch: msg.channel, src: msg.src, p: msg.payload }
    case 'overlay': return { v, t: 'ov', p: msg.payload }
  }
}

/** Decode one envelope from untrusted bytes. Never throws. */
export function decodeEnvelope(bytes: Uint8Array): DecodeResult {
  let raw: unknown
  try {
    raw = decoder.decode(bytes)
  } catch (err) {
    return { ok: false, reason: 'bad-msgpack', detail: `malformed MessagePack: ${(err as Error)?.message ?? String(err)}` }
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || raw instanceof Uint8Array) {
    return { ok: false, reason: 'bad-envelope', detail: 'envelope is not a map' }
  }
  const f = raw as Record<string, unknown>
  if (f.v !== ENVELOPE_VERSION) return { ok: false, reason: 'bad-version', detail: `envelope version ${String(f.v)}, we speak ${ENVELOPE_VERSION}` }
  if (typeof f.t !== 'string') return { ok: false, reason: 'bad-envelope', detail: 'envelope has no type tag' }
  const msg = fromFields(f.t, f)
  if (msg === UNKNOWN) return { ok: false, reason: 'unknown-type', detail: `unknown message type ${JSON.stringify(f.t.slice(0, 32))}`, type: f.t.slice(0, 32) }
  if (typeof msg === 'string') return { ok: false, reason: 'bad-envelope', detail: `bad ${f.t} message: ${msg}` }
  return { ok: true, msg }
}

const UNKNOWN = Symbol('unknown')

/** The message, a string saying which field is wrong, or UNKNOWN for a tag we do not know. */
function fromFields(t: string, f: Record<string, unknown>): WireMessage | string | typeof UNKNOWN {
  switch (t) {
    case 'kx':
      if (f.pub === null || f.pub === undefined) return { type: 'kx', publicKey: null }
      return isBin(f.pub, 32) ? { type: 'kx', publicKey: f.pub } : 'pub must be 32 bytes or nil'
    case 'hello': {
      const name = typeof f.name === 'string' ? parsePeerName(f.name) : undefined
      if (!name) return 'name is not a peer name'
      if (typeof f.nick !== 'string' || f.nick.length > 255) return 'nick'
      if (!isBin(f.uid, 8) || !isBin(f.cid, 8)) return 'uid/cid must be 8 bytes'
      if (!isInt(f.sid) || f.sid < 0 || f.sid > 0xfff) return 'sid must be a 12-bit integer'
      if (!Array.isArray(f.ov) || f.ov.length > 16 || !f.ov.every((o) => typeof o === 'string' && o.length <= 64)) return 'ov'
      return {
        type: 'hello', name, nickname: f.nick, uid: bytesToU64(f.uid), shortId: f.sid,
        overlays: f.ov as string[], connId: bytesToU64(f.cid),
      }
    }
    case 'refuse':
      if (typeof f.code !== 'string' || !REFUSE_CODES.has(f.code as HandshakeFailure['code'])) return 'code'
      return { type: 'refuse', code: f.code as HandshakeFailure['code'], message: typeof f.msg === 'string' ? f.msg.slice(0, 500) : '' }
    case 'hb': return { type: 'heartbeat' }
    case 'bye': return { type: 'bye', reason: typeof f.why === 'string' ? f.why.slice(0, 500) : '' }
    case 'g':
    case 'gb': {
      if (typeof f.ch !== 'string') return 'ch'
      const src = typeof f.src === 'string' ? parsePeerName(f.src) : undefined
      if (!src) return 'src'
      if (!isBin(f.p)) return 'p'
      return { type: t === 'g' ? 'gossip' : 'gossip-broadcast', channel: f.ch, src, payload: f.p }
    }
    case 'gu': {
      if (typeof f.ch !== 'string') return 'ch'
      const src = typeof f.src === 'string' ? parsePeerName(f.src) : undefined
      const dst = typeof f.dst === 'string' ? parsePeerName(f.dst) : undefined
      if (!src || !dst) return 'src/dst'
      if (!isBin(f.p)) return 'p'
      return { type: 'gossip-unicast', channel: f.ch, src, dst, payload: f.p }
    }
    case 'ov':
      return isBin(f.p) ? { type: 'overlay', payload: f.p } : 'p'
    default:
      return UNKNOWN
  }
}

function isBin(x: unknown, len?: number): x is Uint8Array {
  return x instanceof Uint8Array && (len === undefined || x.length === len)
}

function isInt(x: unknown): x is number {
  return typeof x === 'number' && Number.isInteger(x)
}
