/**
 * One transport of the in-memory network (memory-transport.ts), at an address "ip:port": it
 * listens there and dials other transports' addresses, running the real handshake over an
 * in-memory byte pipe (`bytes` mode) or passing message objects after the same checks (`direct`).
 */
import type { Clock, Logger, Rng } from '../deps'
import { HandshakeError, type HandshakeFailure, type LocalIdentity, type MeshTransport, type PeerConnection } from './connection-contract'
import { attachByteStream, driveHandshake, MeshConnection, type ConnectionOptions } from './connection'
import { Handshake } from './handshake'
import type { PasswordKey } from './crypto'
import { bytesU64, directChecks, directLink, hostOf, pipe, remoteOf, type Post } from './memory-links'

export interface MemoryTransportOptions extends ConnectionOptions {
  password?: PasswordKey
  handshakeTimeoutMs?: number
  minVersion?: number
  maxVersion?: number
}

/** What a transport shares with the rest of its network. */
export interface MemoryNet {
  readonly deps: { rng: Rng; logger: Logger }
  readonly mode: 'bytes' | 'direct'
  /** The network's clock (coalesced-clock): deliveries first, then timers. */
  readonly clock: Clock
  /** Who listens at each address. */
  readonly listeners: Map<string, MemoryTransport>
  readonly transports: Set<MemoryTransport>
  /** Queues a delivery from one address to another (dropped if their link is cut by then). */
  readonly post: Post
  isCut(a: string, b: string): boolean
  /** A fresh local port for a dial. */
  nextPort(): number
}

export class MemoryTransport implements MeshTransport {
  readonly host: string
  private onConn: ((c: PeerConnection) => void) | undefined
  private onRefused: ((addr: string, why: HandshakeFailure) => void) | undefined
  readonly conns = new Set<MeshConnection>()
  private readonly log: Logger

  constructor(private readonly net: MemoryNet, readonly addr: string, readonly local: LocalIdentity, readonly opts: MemoryTransportOptions) {
    this.host = hostOf(addr)
    this.log = net.deps.logger.child(`mesh ${addr}`)
  }

  async listen(onConnection: (conn: PeerConnection) => void, onRefused?: (addr: string, why: HandshakeFailure) => void): Promise<void> {
    const listeners = this.net.listeners
    if (listeners.get(this.addr) && listeners.get(this.addr) !== this) throw new Error(`address ${this.addr} already in use`)
    this.onConn = onConnection
    this.onRefused = onRefused
    listeners.set(this.addr, this)
  }

  async close(): Promise<void> {
    if (this.net.listeners.get(this.addr) === this) this.net.listeners.delete(this.addr)
    this.onConn = undefined
    for (const c of [...this.conns]) c.close('transport closed')
    this.net.transports.delete(this)
  }

  dial(addr: string): Promise<PeerConnection> {
    return new Promise((resolve, reject) => {
      const target = this.net.listeners.get(addr)
      const refuse = (message: string) => reject(new HandshakeError({ code: 'io-error', message, permanent: false }))
      if (!target) return refuse(`dial ${addr}: connection refused`)
      if (this.net.isCut(this.addr, addr)) return refuse(`dial ${addr}: no route (link cut)`)
      const localAddr = `${this.host}:${this.net.nextPort()}`
      if (this.net.mode === 'direct') this.dialDirect(target, addr, localAddr, resolve, reject)
      else this.dialBytes(target, addr, localAddr, resolve, reject)
    })
  }

  private track(c: MeshConnection): MeshConnection {
    this.conns.add(c)
    c.onClose(() => this.conns.delete(c))
    return c
  }

  private accepted(c: MeshConnection): void {
    if (!this.onConn) { c.close('not listening'); return }
    this.onConn(c)
  }

  private refused(remoteAddr: string, f: HandshakeFailure): void {
    this.log.warn(`refused connection from ${remoteAddr}: ${f.code}: ${f.message}`)
    this.onRefused?.(remoteAddr, f)
  }

  private dialBytes(target: MemoryTransport, addr: string, localAddr: string,
    resolve: (c: PeerConnection) => void, reject: (e: Error) => void): void {
    const { post, clock, deps } = this.net
    const [mine, theirs] = pipe(localAddr, addr, post)
    const timeout = (t: MemoryTransport) => t.opts.handshakeTimeoutMs ?? 10_000
    const hsOpts = (t: MemoryTransport, outbound: boolean) => ({
      local: t.local, outbound, password: t.opts.password, rng: deps.rng, minVersion: t.opts.minVersion, maxVersion: t.opts.maxVersion,
    })
    // The listener side starts in a task of its own, as an accept would.
    post(this.addr, addr, () => {
      driveHandshake(theirs, new Handshake(hsOpts(target, false)), clock, timeout(target), (r) => {
        if (!r.ok) return target.refused(localAddr, r.failure)
        const c = attachByteStream(theirs, r.success, { outbound: false, remoteAddr: localAddr, localAddr: addr },
          { clock: clock, logger: target.log }, target.opts)
        target.accepted(target.track(c))
      })
    })
    driveHandshake(mine, new Handshake(hsOpts(this, true)), clock, timeout(this), (r) => {
      if (!r.ok) return reject(new HandshakeError(r.failure))
      const c = attachByteStream(mine, r.success, { outbound: true, remoteAddr: addr, localAddr },
        { clock: clock, logger: this.log }, this.opts)
      resolve(this.track(c))
    })
  }

  private dialDirect(target: MemoryTransport, addr: string, localAddr: string,
    resolve: (c: PeerConnection) => void, reject: (e: Error) => void): void {
    const { post, clock, deps } = this.net
    // A link cut while the dial is in flight drops its tasks: give up at the handshake deadline.
    let settled = false
    let out: MeshConnection | undefined
    const timeoutMs = this.opts.handshakeTimeoutMs ?? 10_000
    const cancel = clock.setTimer(timeoutMs, () => {
      if (settled) return
      settled = true
      out?.shutdown('handshake timeout', false)
      reject(new HandshakeError({ code: 'timeout', message: `handshake not finished within ${timeoutMs} ms`, permanent: false }))
    })
    const settle = (fn: () => void) => { if (!settled) { settled = true; cancel(); fn() } }
    post(this.addr, addr, () => {
      const failure = directChecks(this, target)
      if (failure) {
        target.refused(localAddr, failure.listener)
        post(addr, this.addr, () => settle(() => reject(new HandshakeError(failure.dialer))))
        return
      }
      const connUid = BigInt.asUintN(64, bytesU64(deps.rng.bytes(8)))
      const encrypted = !!this.opts.password
      const o = new MeshConnection({ remote: remoteOf(target.local), outbound: true, remoteAddr: addr, localAddr, connUid, encrypted },
        { clock, logger: this.log }, this.opts)
      const inb = new MeshConnection({ remote: remoteOf(this.local), outbound: false, remoteAddr: localAddr, localAddr: addr, connUid, encrypted },
        { clock, logger: target.log }, target.opts)
      out = o
      o.attach(directLink(this.addr, addr, inb, post))
      inb.attach(directLink(addr, this.addr, o, post))
      target.accepted(target.track(inb))
      post(addr, this.addr, () => settle(() => resolve(this.track(o))))
    })
  }
}
