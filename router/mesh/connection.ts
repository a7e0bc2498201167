/**
 * A handshaken connection: the PeerConnection the router sees.
 *
 * Under it is a `Link` that carries WireMessages: over a byte stream (TCP, or the in-memory
 * pipe) through `attachByteStream`, which frames, seals and encodes; or directly as objects (the
 * in-memory network's fast mode). Above the link, the connection adds:
 * - heartbeats: one every `heartbeatIntervalMs`; when nothing at all arrived for
 *   `heartbeatTimeoutMs` the connection is shut down (default 1 s / 4 s: a dead peer is noticed
 *   within 4-5 s, and three lost heartbeats in a row are tolerated);
 * - one `shutdown(reason)` path: logs one line naming address and peer, tells the remote why
 *   (`bye`) when the close is ours, closes the link, fires onClose once;
 * - messages that arrive before the router registered `onMessage` wait for it.
 */
import type { Clock, Logger } from '../deps'
import type { HandshakeFailure, MeshMessage, PeerConnection, RemoteIdentity } from './connection-contract'
import { decodeEnvelope, encodeEnvelope, type WireMessage } from './envelope'
import { encodeFrame, MAX_FRAME_BYTES } from './framing'
import type { Handshake, HandshakeStep, HandshakeSuccess } from './handshake'

/** Defaults, one place: 1 s heartbeats, and 4 s of silence means dead (noticed within ~5 s). */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 1_000
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 4_000

/** Carries WireMessages for one connection. */
export interface Link {
  send(msg: WireMessage): void
  /** Close the underlying transport; no more receive calls after this. */
  close(): void
}

/** A byte stream end (TCP socket, in-memory pipe end). Exactly one set of handlers at a time. */
export interface ByteIO {
  write(bytes: Uint8Array): void
  /** Bytes queued but not yet handed to the peer (back-pressure measure). */
  pendingWriteBytes(): number
  /** Flush what was written, then close. */
  end(): void
  setHandlers(h: { data(bytes: Uint8Array): void; closed(why: string): void }): void
}

export interface ConnectionInfo {
  remote: RemoteIdentity
  outbound: boolean
  remoteAddr: string
  localAddr: string
  connUid: bigint
  encrypted: boolean
}

export interface ConnectionOptions {
  heartbeatIntervalMs?: number
  heartbeatTimeoutMs?: number
  /** 0 disables heartbeats (large simulations that never lose links silently). */
  heartbeats?: boolean
}

export interface ConnectionDeps { clock: Clock; logger: Logger }

/** Bytes that may wait in one connection's send queue before we give up on the peer. */
export const MAX_SEND_QUEUE_BYTES = 8 * MAX_FRAME_BYTES

export class MeshConnection implements PeerConnection {
  readonly remote: RemoteIdentity
  readonly outbound: boolean
  readonly remoteAddr: string
  readonly localAddr: string
  readonly connUid: bigint
  readonly encrypted: boolean
  private closed: string | undefined
  private link: Link | undefined
  private messageFns: ((m: MeshMessage) => void)[] = []
  private closeFns: ((r: string) => void)[] = []
  private early: MeshMessage[] = []
  private lastRx: number
  private cancelTimer: (() => void) | undefined
  private readonly intervalMs: number
  private readonly timeoutMs: number
  private readonly unknownTypes = new Set<string>()

  constructor(info: ConnectionInfo, private readonly deps: ConnectionDeps, opts: ConnectionOptions = {}) {
    this.remote = info.remote
    this.outbound = info.outbound
    this.remoteAddr = info.remoteAddr
    this.localAddr = info.localAddr
    this.connUid = info.connUid
    this.encrypted = info.encrypted
    this.intervalMs = opts.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS
    this.timeoutMs = opts.heartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS
    this.lastRx = deps.clock.now()
    if (opts.heartbeats !== false) this.armHeartbeat()
  }

  /** Attach the link (separate from construction so the link can refer to the connection). */
  attach(link: Link): void { this.link = link }

  get isClosed(): boolean { return this.closed !== undefined }

  send(msg: MeshMessage): void {
    if (this.closed || !this.link) return
    this.link.send(msg)
  }

  close(reason: string): void { this.shutdown(reason, true) }

  onMessage(fn: (msg: MeshMessage) => void): void {
    this.messageFns.push(fn)
    if (this.early.length && this.messageFns.length === 1) {
      // Deliver after the caller finished registering its handlers.
      queueMicrotask(() => {
        const early = this.early
        this.early = []
        for (const m of early) if (!this.closed) this.dispatch(m)
      })
    }
  }

  onClose(fn: (reason: string) => void): void {
    const reason = this.closed
    if (reason !== undefined) queueMicrotask(() => fn(reason))
    else this.closeFns.push(fn)
  }

  /** A message from the link. */
  receive(msg: WireMessage): void {
    if (this.closed) return
    this.lastRx = this.deps.clock.now()
    switch (msg.type) {
      case 'heartbeat': return
      case 'bye': return this.shutdown(`remote closed: ${msg.reason || 'no reason given'}`, false)
      case 'refuse': return this.shutdown(`refused by the remote (${msg.code}): ${msg.message}`, false)
      case 'kx': case 'hello': return this.shutdown(`bad message: unexpected ${msg.type} after the handshake`, true)
      default:
        if (this.early.length || !this.messageFns.length) this.early.push(msg)
        else this.dispatch(msg)
    }
  }

  /** A message type we do not know: logged once per type per connection, then ignored. */
  unknownType(type: string): void {
    this.lastRx = this.deps.clock.now()
    if (this.unknownTypes.has(type) || this.unknownTypes.size > 16) return
    this.unknownTypes.add(type)
    this.deps.logger.warn(`${this.describe()}: ignoring messages of unknown type ${JSON.stringify(type)}`)
  }

  /**
   * The one way a connection ends. `tellRemote`: send a `bye` with the reason first (when the
   * close is ours and the link still works).
   */
  shutdown(reason: string, tellRemote: boolean): void {
    if (this.closed !== undefined) return
    this.closed = reason
    this.cancelTimer?.()
    this.cancelTimer = undefined
    this.early = []
    this.deps.logger.info(`${this.describe()}: connection closed: ${reason}`)
    if (this.link) {
      if (tellRemote) { try { this.link.send({ type: 'bye', reason: reason.slice(0, 200) }) } catch { /* link already broken */ } }
      this.link.close()
    }
    const fns = this.closeFns
    this.closeFns = []
    for (const fn of fns) fn(reason)
  }

  describe(): string {
    const dir = this.outbound ? 'to' : 'from'
    return `${dir} ${this.remote.nickname}(${this.remote.name}) at ${this.remoteAddr}`
  }

  private dispatch(m: MeshMessage): void {
    for (const fn of this.messageFns) fn(m)
  }

  private armHeartbeat(): void {
    this.cancelTimer = this.deps.clock.setTimer(this.intervalMs, () => {
      this.cancelTimer = undefined
      if (this.closed) return
      const silentMs = this.deps.clock.now() - this.lastRx
      if (silentMs >= this.timeoutMs) {
        this.shutdown(`heartbeat timeout: nothing received for ${silentMs} ms`, false)
        return
      }
      this.link?.send({ type: 'heartbeat' })
      this.armHeartbeat()
    })
  }
}

/**
 * Run a connection over a byte stream after a successful handshake: frames (sealed when the
 * handshake agreed keys), envelopes; any bad input shuts the connection down with a clear reason.
 */
export function attachByteStream(io: ByteIO, hs: HandshakeSuccess, info: Omit<ConnectionInfo, 'remote' | 'connUid' | 'encrypted'>,
  deps: ConnectionDeps, opts: ConnectionOptions = {}): MeshConnection {
  const conn = new MeshConnection({ ...info, remote: hs.remote, connUid: hs.connUid, encrypted: !!hs.ciphers }, deps, opts)
  const { ciphers, decoder } = hs
  let ioClosed = false
  conn.attach({
    send(msg) {
      if (ioClosed) return
      let body = encodeEnvelope(msg)
      if (ciphers) body = ciphers.tx.seal(body)
      if (body.length > MAX_FRAME_BYTES) {
        deps.logger.warn(`${conn.describe()}: dropping a ${msg.type} message of ${body.length} bytes (over the frame cap)`)
        return
      }
      io.write(encodeFrame(body))
      if (io.pendingWriteBytes() > MAX_SEND_QUEUE_BYTES) {
        // Checked after the write so that the bye below does not recurse into this check.
        queueMicrotask(() => conn.shutdown(`send queue over ${MAX_SEND_QUEUE_BYTES} bytes: the remote is not reading`, false))
      }
    },
    close() {
      if (ioClosed) return
      ioClosed = true
      io.end()
    },
  })
  const onFrame = (frame: Uint8Array): boolean => {
    let plain: Uint8Array | undefined = frame
    if (ciphers) {
      plain = ciphers.rx.open(frame)
      if (!plain) { conn.shutdown('bad message: a frame failed to authenticate', true); return false }
    }
    const d = decodeEnvelope(plain)
    if (d.ok) conn.receive(d.msg)
    else if (d.reason === 'unknown-type') conn.unknownType(d.type ?? '?')
    else { conn.shutdown(`bad message: ${d.detail}`, true); return false }
    return !conn.isClosed
  }
  const onBytes = (bytes: Uint8Array): void => {
    if (conn.isClosed) return
    const res = decoder.push(bytes)
    if (!res.ok) { conn.shutdown(`bad message: ${res.detail}`, true); return }
    for (const f of res.frames) if (!onFrame(f)) return
  }
  io.setHandlers({
    data: onBytes,
    closed(why) { ioClosed = true; conn.shutdown(why, false) },
  })
  for (const f of hs.frames) if (!onFrame(f)) break
  return conn
}

export type HandshakeOutcome = { ok: true; success: HandshakeSuccess } | { ok: false; failure: HandshakeFailure }

/**
 * Run a Handshake over a byte stream with a deadline. `done` is called exactly once, synchronously
 * with the last handshake bytes, so the caller can attach the connection before more data is read.
 * On failure the stream is ended (after any refusal bytes).
 */
export function driveHandshake(io: ByteIO, hs: Handshake, clock: Clock, timeoutMs: number, done: (r: HandshakeOutcome) => void): void {
  let finished = false
  const finish = (r: HandshakeOutcome): void => {
    if (finished) return
    finished = true
    cancel()
    if (!r.ok) io.end()
    done(r)
  }
  const cancel = clock.setTimer(timeoutMs, () => finish({
    ok: false, failure: { code: 'timeout', message: `handshake not finished within ${timeoutMs} ms`, permanent: false },
  }))
  const apply = (step: HandshakeStep): void => {
    for (const b of step.send) io.write(b)
    if (step.failed) finish({ ok: false, failure: step.failed })
    else if (step.done) finish({ ok: true, success: step.done })
  }
  io.setHandlers({
    data(bytes) { if (!finished) apply(hs.receive(bytes)) },
    closed(why) {
      finish({ ok: false, failure: { code: 'io-error', message: `connection closed during the handshake: ${why}`, permanent: false } })
    },
  })
  apply(hs.start())
}
