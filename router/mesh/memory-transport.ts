/**
 * An in-memory network of MeshTransports, for handshake tests and router simulations.
 *
 *   const net = createMemoryNetwork({ clock, rng, logger }, { mode: 'direct' })
 *   const ta = net.transport('10.0.0.1:6783', identityA)
 *   await ta.listen(onConn); const conn = await tb.dial('10.0.0.1:6783')
 *   net.cut('10.0.0.1', '10.0.0.2'); net.heal(...); net.flush()
 *
 * Modes:
 * - `bytes` (default): both ends run the real handshake, framing, envelope and (with passwords)
 *   crypto over an in-memory pipe, exactly as over TCP.
 * - `direct`: no bytes at all; dial applies the same checks (versions, encryption/password
 *   mismatch, self-connection) and the two connections pass message objects. For simulations of
 *   hundreds of peers in one process.
 *
 * Delivery is asynchronous and deterministic: every write or message is a task on one FIFO queue
 * for the whole network. By default the queue drains itself in a microtask; with
 * `autoFlush: false` nothing moves until the simulation calls `flush()`, which delivers until the
 * queue is empty (tasks posted while flushing included) and returns how many it delivered.
 *
 * Links: `cut(a, b)` drops everything between two hosts (addresses or bare IPs) from then on,
 * including what is in flight, silently: heartbeats notice it (in `heartbeatTimeoutMs` of the
 * injected clock) unless `{ close: true }` closes the connections between them at once. A dial
 * over a cut link, or to an address nobody listens on, rejects at once with an `io-error`.
 * Heartbeats and handshake timeouts use the injected Clock, so a FakeClock drives them. The
 * network takes no virtual time: before any of its timers fires it delivers everything queued,
 * so a simulation that advances a FakeClock by many seconds at once does not see heartbeat
 * timeouts on healthy links (only cut ones).
 */
import type { Clock, Logger, Rng } from '../deps'
import {
  HandshakeError, type HandshakeFailure, type LocalIdentity, type MeshTransport, type PeerConnection, type RemoteIdentity,
} from './connection-contract'
import type { WireMessage } from './envelope'
import { attachByteStream, driveHandshake, MeshConnection, type ByteIO, type ConnectionOptions } from './connection'
import { Handshake, MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION } from './handshake'
import type { PasswordKey } from './crypto'

export interface MemoryNetworkDeps { clock: Clock; rng: Rng; logger: Logger }

export interface MemoryNetworkOptions {
  mode?: 'bytes' | 'direct'
  /** Drain the delivery queue by itself in a microtask (default true). */
  autoFlush?: boolean
}

export interface MemoryTransportOptions extends ConnectionOptions {
  password?: PasswordKey
  handshakeTimeoutMs?: number
  minVersion?: number
  maxVersion?: number
}

export interface MemoryNetwork {
  /** A transport at `addr` ("ip:port"); dial it by that address once it listens. */
  transport(addr: string, local: LocalIdentity, opts?: MemoryTransportOptions): MeshTransport
  /** Drop all traffic between two hosts (addresses or IPs); `close` also closes their connections. */
  cut(a: string, b: string, opts?: { close?: boolean }): void
  heal(a: string, b: string): void
  /** Deliver until nothing is queued; returns the number of deliveries. */
  flush(limit?: number): number
  /** Deliveries queued. */
  pending(): number
}

interface Task { from: string; to: string; fn: () => void }

export function createMemoryNetwork(deps: MemoryNetworkDeps, netOpts: MemoryNetworkOptions = {}): MemoryNetwork {
  const mode = netOpts.mode ?? 'bytes'
  const autoFlush = netOpts.autoFlush ?? true
  const listeners = new Map<string, MemoryTransport>()
  const cuts = new Set<string>()
  const transports = new Set<MemoryTransport>()
  let queue: Task[] = []
  let head = 0
  let scheduled = false
  let nextPort = 40000
  // The clock the network's connections and handshakes use (see `coalescedClock`): deliveries
  // first, then the timer.
  const clock = coalescedClock(deps.clock, () => flush())
  const pairKey = (a: string, b: string) => { const x = hostOf(a), y = hostOf(b); return x < y ? `${x}|${y}` : `${y}|${x}` }
  const isCut = (a: string, b: string) => cuts.size > 0 && cuts.has(pairKey(a, b))

  function post(from: string, to: string, fn: () => void): void {
    queue.push({ from, to, fn })
    if (autoFlush && !scheduled) {
      scheduled = true
      queueMicrotask(() => { scheduled = false; flush() })
    }
  }

  function flush(limit = Infinity): number {
    let n = 0
    while (head < queue.length && n < limit) {
      const t = queue[head++]
      if (head > 1024 && head * 2 > queue.length) { queue = queue.slice(head); head = 0 }
      if (isCut(t.from, t.to)) continue
      n++
      t.fn()
    }
    if (head >= queue.length) { queue = []; head = 0 }
    return n
  }

  class MemoryTransport implements MeshTransport {
    readonly host: string
    private onConn: ((c: PeerConnection) => void) | undefined
    private onRefused: ((addr: string, why: HandshakeFailure) => void) | undefined
    readonly conns = new Set<MeshConnection>()
    private readonly log: Logger

    constructor(readonly addr: string, readonly local: LocalIdentity, readonly opts: MemoryTransportOptions) {
      this.host = hostOf(addr)
      this.log = deps.logger.child(`mesh ${addr}`)
    }

    async listen(onConnection: (conn: PeerConnection) => void, onRefused?: (addr: string, why: HandshakeFailure) => void): Promise<void> {
      if (listeners.get(this.addr) && listeners.get(this.addr) !== this) throw new Error(`address ${this.addr} already in use`)
      this.onConn = onConnection
      this.onRefused = onRefused
      listeners.set(this.addr, this)
    }

    async close(): Promise<void> {
      if (listeners.get(this.addr) === this) listeners.delete(this.addr)
      this.onConn = undefined
      for (const c of [...this.conns]) c.close('transport closed')
      transports.delete(this)
    }

    dial(addr: string): Promise<PeerConnection> {
      return new Promise((resolve, reject) => {
        const target = listeners.get(addr)
        const refuse = (message: string) => reject(new HandshakeError({ code: 'io-error', message, permanent: false }))
        if (!target) return refuse(`dial ${addr}: connection refused`)
        if (isCut(this.addr, addr)) return refuse(`dial ${addr}: no route (link cut)`)
        const port = nextPort++
        const localAddr = `${this.host}:${port}`
        if (mode === 'direct') this.dialDirect(target, addr, localAddr, resolve, reject)
        else this.dialBytes(target, addr, localAddr, resolve, reject)
      })
    }

    track(c: MeshConnection): MeshConnection {
      this.conns.add(c)
      c.onClose(() => this.conns.delete(c))
      return c
    }

    accepted(c: MeshConnection): void {
      if (!this.onConn) { c.close('not listening'); return }
      this.onConn(c)
    }

    refused(remoteAddr: string, f: HandshakeFailure): void {
      this.log.warn(`refused connection from ${remoteAddr}: ${f.code}: ${f.message}`)
      this.onRefused?.(remoteAddr, f)
    }

    private dialBytes(target: MemoryTransport, addr: string, localAddr: string,
      resolve: (c: PeerConnection) => void, reject: (e: Error) => void): void {
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

  return {
    transport(addr, local, opts = {}) {
      const t = new MemoryTransport(addr, local, opts)
      transports.add(t)
      return t
    },
    cut(a, b, opts = {}) {
      cuts.add(pairKey(a, b))
      if (!opts.close) return
      const ha = hostOf(a), hb = hostOf(b)
      for (const t of [...transports]) {
        for (const c of [...t.conns]) {
          const hr = hostOf(c.remoteAddr)
          if ((t.host === ha && hr === hb) || (t.host === hb && hr === ha)) c.shutdown('link cut', false)
        }
      }
    },
    heal(a, b) { cuts.delete(pairKey(a, b)) },
    flush,
    pending: () => queue.length - head,
  }
}

/** Host part of "ip:port" (the whole string when it has no port). */
function hostOf(addr: string): string {
  const i = addr.lastIndexOf(':')
  return i > 0 && /^\d+$/.test(addr.slice(i + 1)) ? addr.slice(0, i) : addr
}

function remoteOf(l: LocalIdentity): RemoteIdentity {
  return { name: l.name, nickname: l.nickname, uid: l.uid, shortId: l.shortId(), overlays: [...l.overlays] }
}

function bytesU64(b: Uint8Array): bigint {
  return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, false)
}

type Post = (from: string, to: string, fn: () => void) => void

/** A connected pair of in-memory byte streams; writes arrive as tasks on the network queue. */
function pipe(addrA: string, addrB: string, post: Post): [ByteIO, ByteIO] {
  type Handlers = { data(b: Uint8Array): void; closed(why: string): void }
  const ends: { handlers?: Handlers; closed: boolean }[] = [{ closed: false }, { closed: false }]
  const addrs = [addrA, addrB]
  const make = (i: number): ByteIO => {
    const me = ends[i], other = ends[1 - i]
    return {
      write(bytes) {
        if (me.closed) return
        post(addrs[i], addrs[1 - i], () => { if (!other.closed) other.handlers?.data(bytes) })
      },
      pendingWriteBytes: () => 0,
      end() {
        if (me.closed) return
        me.closed = true
        post(addrs[i], addrs[1 - i], () => {
          if (other.closed) return
          other.closed = true
          other.handlers?.closed('remote closed the connection')
        })
      },
      setHandlers(h) { me.handlers = h },
    }
  }
  return [make(0), make(1)]
}

/** A Link that hands message objects to the other connection through the network queue. */
function directLink(from: string, to: string, peer: MeshConnection, post: Post) {
  let closed = false
  return {
    send(msg: WireMessage) {
      if (closed) return
      post(from, to, () => peer.receive(msg))
    },
    close() {
      if (closed) return
      closed = true
      post(from, to, () => peer.shutdown('remote closed the connection', false))
    },
  }
}

/** The handshake's refusals, decided from both ends' settings at once (direct mode). */
function directChecks(dialer: { local: LocalIdentity; opts: MemoryTransportOptions }, listener: { local: LocalIdentity; opts: MemoryTransportOptions }):
  { dialer: HandshakeFailure; listener: HandshakeFailure } | undefined {
  const both = (f: HandshakeFailure) => ({ dialer: f, listener: f })
  const dMin = dialer.opts.minVersion ?? MIN_PROTOCOL_VERSION, dMax = dialer.opts.maxVersion ?? MAX_PROTOCOL_VERSION
  const lMin = listener.opts.minVersion ?? MIN_PROTOCOL_VERSION, lMax = listener.opts.maxVersion ?? MAX_PROTOCOL_VERSION
  if (Math.min(dMax, lMax) < Math.max(dMin, lMin)) {
    return {
      dialer: { code: 'version-mismatch', permanent: false, message: `protocol version mismatch: we speak ${dMin}..${dMax}, the remote speaks ${lMin}..${lMax}` },
      listener: { code: 'version-mismatch', permanent: false, message: `protocol version mismatch: we speak ${lMin}..${lMax}, the remote speaks ${dMin}..${dMax}` },
    }
  }
  const dp = dialer.opts.password, lp = listener.opts.password
  if (!!dp !== !!lp) {
    const msg = (we: boolean) => we ? 'encryption mismatch: we have a password but the remote has none' : 'encryption mismatch: the remote has a password but we have none'
    return {
      dialer: { code: 'encryption-mismatch', permanent: false, message: msg(!!dp) },
      listener: { code: 'encryption-mismatch', permanent: false, message: msg(!!lp) },
    }
  }
  if (dp && lp && !sameBytes(dp.bytes, lp.bytes)) {
    return both({ code: 'password-mismatch', permanent: false, message: 'password mismatch: cannot authenticate the remote\'s first encrypted message' })
  }
  if (dialer.local.name === listener.local.name) {
    return both({ code: 'self-connection', permanent: true, message: `cannot connect to ourself (${dialer.local.name})` })
  }
  return undefined
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

/**
 * Many timers multiplexed on one timer of `base`: a binary min-heap on (deadline, creation order),
 * so timers due at the same time fire in the order they were set, as FakeClock's do. Before a
 * batch of due timers runs, `beforeFire` (the network's flush) runs.
 */
function coalescedClock(base: Clock, beforeFire: () => void): Clock {
  type Timer = { at: number; seq: number; fn: () => void; live: boolean }
  const heap: Timer[] = []
  let seq = 0
  let armed: { at: number; cancel: () => void } | undefined
  const less = (a: Timer, b: Timer) => a.at < b.at || (a.at === b.at && a.seq < b.seq)
  const push = (t: Timer) => {
    heap.push(t)
    for (let i = heap.length - 1; i > 0;) {
      const p = (i - 1) >> 1
      if (!less(heap[i], heap[p])) break
      ;[heap[i], heap[p]] = [heap[p], heap[i]]
      i = p
    }
  }
  const pop = (): Timer => {
    const top = heap[0]
    const last = heap.pop()!
    if (heap.length) {
      heap[0] = last
      for (let i = 0; ;) {
        const l = 2 * i + 1, r = l + 1
        let m = i
        if (l < heap.length && less(heap[l], heap[m])) m = l
        if (r < heap.length && less(heap[r], heap[m])) m = r
        if (m === i) break
        ;[heap[i], heap[m]] = [heap[m], heap[i]]
        i = m
      }
    }
    return top
  }
  const arm = () => {
    while (heap.length && !heap[0].live) pop()
    const next = heap[0]
    if (!next) { armed?.cancel(); armed = undefined; return }
    if (armed && armed.at <= next.at) return
    armed?.cancel()
    const at = next.at
    armed = { at, cancel: base.setTimer(at - base.now(), fire) }
  }
  const fire = () => {
    armed = undefined
    beforeFire()
    const now = base.now()
    while (heap.length && heap[0].at <= now) {
      const t = pop()
      if (t.live) { t.live = false; t.fn() }
    }
    arm()
  }
  return {
    now: () => base.now(),
    setTimer(ms, fn) {
      const t: Timer = { at: base.now() + Math.max(0, ms), seq: seq++, fn, live: true }
      push(t)
      arm()
      return () => { t.live = false }
    },
  }
}
