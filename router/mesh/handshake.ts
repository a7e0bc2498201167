/**
 * The mesh handshake as a pure state machine: bytes in → bytes out, then success or a failure
 * value. No sockets, no timers (the transport applies the 10 s handshake timeout).
 *
 * Wire, both sides at once (nobody waits for the other before speaking):
 *   1. Header, 6 bytes: ASCII `wvts`, min version, max version. The agreed version is the smaller
 *      max, provided it is at least the larger min; otherwise both sides refuse with
 *      `version-mismatch` (each side sees both ranges, so no refusal message is needed).
 *   2. From here on, frames (framing.ts) holding envelopes (envelope.ts). A clear `kx` envelope:
 *      our ephemeral X25519 public key when we have a password, else nil. If one side has a key
 *      and the other not, both refuse with `encryption-mismatch`, naming the side without one.
 *   3. `hello` with our identity and our half of the connection UID; sealed when encrypted. It
 *      is also the key confirmation: a sealed hello that fails to open means the passwords differ,
 *      and since both sides send one, both refuse with `password-mismatch`.
 *   4. Checks on the remote's hello (self-connection), then success. Frames that arrived after
 *      the hello are handed over with the frame decoder to the connection.
 * Failures a side can see alone (a malformed hello) are told to the remote in a `refuse`
 * envelope before closing, so the refusal shows at both ends.
 */
import type { Rng } from '../deps'
import type { HandshakeFailure, LocalIdentity, RemoteIdentity } from './connection-contract'
import { decodeEnvelope, encodeEnvelope, type WireMessage } from './envelope'
import { FrameDecoder, encodeFrame } from './framing'
import { keyPairFromSeed, sessionCiphers, type KeyPair, type PasswordKey, type SessionCiphers } from './crypto'

export const PROTOCOL_MAGIC = new Uint8Array([0x77, 0x76, 0x74, 0x73]) // "wvts"
export const HEADER_BYTES = PROTOCOL_MAGIC.length + 2
export const MIN_PROTOCOL_VERSION = 1
export const MAX_PROTOCOL_VERSION = 1

export interface HandshakeOptions {
  local: LocalIdentity
  /** True when we dialled. */
  outbound: boolean
  /** With a password, the connection is encrypted and the remote must know the same password. */
  password?: PasswordKey
  /** Source of the X25519 key and our half of the connection UID. */
  rng: Rng
  /** Versions we speak; defaults to [MIN_PROTOCOL_VERSION, MAX_PROTOCOL_VERSION]. */
  minVersion?: number
  maxVersion?: number
}

export interface HandshakeSuccess {
  remote: RemoteIdentity
  version: number
  connUid: bigint
  /** Present when the connection is encrypted. */
  ciphers?: SessionCiphers
  /** Decoder holding whatever followed the hello, and frames it already completed. */
  decoder: FrameDecoder
  frames: Uint8Array[]
}

/** What the driver must do after a step: write `send` (in order), then stop if `done`/`failed`. */
export interface HandshakeStep {
  send: Uint8Array[]
  done?: HandshakeSuccess
  failed?: HandshakeFailure
}

type State = 'header' | 'kx' | 'hello' | 'done' | 'failed'

export class Handshake {
  private state: State = 'header'
  private header: Uint8Array = new Uint8Array(0)
  private readonly decoder = new FrameDecoder()
  private readonly minV: number
  private readonly maxV: number
  private readonly keyPair: KeyPair | undefined
  private readonly connId: bigint
  private ciphers: SessionCiphers | undefined
  private version = 0

  constructor(private readonly opts: HandshakeOptions) {
    this.minV = opts.minVersion ?? MIN_PROTOCOL_VERSION
    this.maxV = opts.maxVersion ?? MAX_PROTOCOL_VERSION
    this.keyPair = opts.password ? keyPairFromSeed(opts.rng.bytes(32)) : undefined
    const cid = opts.rng.bytes(8)
    this.connId = new DataView(cid.buffer, cid.byteOffset, 8).getBigUint64(0, false)
  }

  /** The bytes to send first: header and crypto offer. */
  start(): HandshakeStep {
    const header = new Uint8Array(HEADER_BYTES)
    header.set(PROTOCOL_MAGIC)
    header[PROTOCOL_MAGIC.length] = this.minV
    header[PROTOCOL_MAGIC.length + 1] = this.maxV
    const kx = encodeFrame(encodeEnvelope({ type: 'kx', publicKey: this.keyPair?.publicKey ?? null }))
    return { send: [header, kx] }
  }

  /** Feed bytes from the remote. Never throws on their content. */
  receive(chunk: Uint8Array): HandshakeStep {
    if (this.state === 'done' || this.state === 'failed') return { send: [] }
    let bytes = chunk
    if (this.state === 'header') {
      const need = HEADER_BYTES - this.header.length
      this.header = concat(this.header, bytes.subarray(0, need))
      bytes = bytes.subarray(need)
      if (this.header.length < HEADER_BYTES) return { send: [] }
      const bad = this.checkHeader()
      if (bad) return this.fail(bad, false)
      this.state = 'kx'
    }
    const res = this.decoder.push(bytes)
    if (!res.ok) return this.fail(badMessage(`bad frame during handshake: ${res.detail}`), true)
    const out: Uint8Array[] = []
    for (let i = 0; i < res.frames.length; i++) {
      const step = this.onFrame(res.frames[i])
      out.push(...step.send)
      if (step.failed) return { send: out, failed: step.failed }
      if (step.done) return { send: out, done: { ...step.done, frames: res.frames.slice(i + 1) } }
    }
    return { send: out }
  }

  private checkHeader(): HandshakeFailure | undefined {
    const h = this.header
    for (let i = 0; i < PROTOCOL_MAGIC.length; i++) {
      if (h[i] !== PROTOCOL_MAGIC[i]) return badMessage('not a weave-ts mesh peer (bad protocol magic)')
    }
    const rMin = h[PROTOCOL_MAGIC.length], rMax = h[PROTOCOL_MAGIC.length + 1]
    const agreed = Math.min(this.maxV, rMax)
    if (rMin > rMax || agreed < Math.max(this.minV, rMin)) {
      return {
        code: 'version-mismatch', permanent: false,
        message: `protocol version mismatch: we speak ${this.minV}..${this.maxV}, the remote speaks ${rMin}..${rMax}`,
      }
    }
    this.version = agreed
    return undefined
  }

  private onFrame(frame: Uint8Array): HandshakeStep {
    if (this.state === 'kx') return this.onKx(frame)
    return this.onHello(frame)
  }

  private onKx(frame: Uint8Array): HandshakeStep {
    const d = decodeEnvelope(frame)
    if (!d.ok) return this.fail(badMessage(`bad crypto offer: ${d.detail}`), true)
    if (d.msg.type === 'refuse') return this.fail(remoteRefusal(d.msg), false)
    if (d.msg.type !== 'kx') return this.fail(badMessage(`expected a crypto offer, got ${d.msg.type}`), true)
    const theirs = d.msg.publicKey
    if (!!theirs !== !!this.keyPair) {
      const message = this.keyPair
        ? 'encryption mismatch: we have a password but the remote has none'
        : 'encryption mismatch: the remote has a password but we have none'
      return this.fail({ code: 'encryption-mismatch', message, permanent: false }, false)
    }
    if (theirs && this.keyPair && this.opts.password) {
      const s = sessionCiphers(this.keyPair, theirs, this.opts.password, this.opts.outbound)
      if (!s.ok) return this.fail(badMessage(s.reason), true)
      this.ciphers = s.ciphers
    }
    this.state = 'hello'
    const l = this.opts.local
    const hello = encodeEnvelope({
      type: 'hello', name: l.name, nickname: l.nickname, uid: l.uid, shortId: l.shortId(),
      overlays: l.overlays, connId: this.connId,
    })
    return { send: [encodeFrame(this.ciphers ? this.ciphers.tx.seal(hello) : hello)] }
  }

  private onHello(frame: Uint8Array): HandshakeStep {
    let plain: Uint8Array | undefined = frame
    if (this.ciphers) {
      plain = this.ciphers.rx.open(frame)
      if (!plain) {
        // The remote may have refused in clear text before it had our key; otherwise the
        // passwords differ (the remote sees the same on its side).
        const clear = decodeEnvelope(frame)
        if (clear.ok && clear.msg.type === 'refuse') return this.fail(remoteRefusal(clear.msg), false)
        return this.fail({
          code: 'password-mismatch', permanent: false,
          message: 'password mismatch: cannot authenticate the remote\'s first encrypted message',
        }, false)
      }
    }
    const d = decodeEnvelope(plain)
    if (!d.ok) return this.fail(badMessage(`bad hello: ${d.detail}`), true)
    if (d.msg.type === 'refuse') return this.fail(remoteRefusal(d.msg), false)
    if (d.msg.type !== 'hello') return this.fail(badMessage(`expected hello, got ${d.msg.type}`), true)
    const h = d.msg
    if (h.name === this.opts.local.name) {
      return this.fail({ code: 'self-connection', permanent: true, message: `cannot connect to ourself (${h.name})` }, false)
    }
    if (h.uid === 0n) return this.fail(badMessage('remote UID is zero'), true)
    this.state = 'done'
    return {
      send: [],
      done: {
        remote: { name: h.name, nickname: h.nickname, uid: h.uid, shortId: h.shortId, overlays: h.overlays },
        version: this.version,
        connUid: BigInt.asUintN(64, this.connId ^ h.connId),
        ciphers: this.ciphers,
        decoder: this.decoder,
        frames: [],
      },
    }
  }

  /** Enter `failed`; when `tell`, add a refuse envelope so the remote learns why. */
  private fail(failure: HandshakeFailure, tell: boolean): HandshakeStep {
    this.state = 'failed'
    if (!tell) return { send: [], failed: failure }
    const refuse = encodeEnvelope({ type: 'refuse', code: failure.code, message: failure.message.slice(0, 200) })
    return { send: [encodeFrame(this.ciphers ? this.ciphers.tx.seal(refuse) : refuse)], failed: failure }
  }
}

function badMessage(message: string): HandshakeFailure {
  return { code: 'bad-message', message, permanent: false }
}

function remoteRefusal(msg: Extract<WireMessage, { type: 'refuse' }>): HandshakeFailure {
  const permanent = msg.code === 'self-connection' || msg.code === 'name-collision'
  return { code: msg.code, message: `refused by the remote: ${msg.message || msg.code}`, permanent }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length)
  out.set(a)
  out.set(b, a.length)
  return out
}
