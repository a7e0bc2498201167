/**
 * The mesh over TCP (node:net): the daemon's MeshTransport.
 *
 *   const password = await derivePasswordKey(pw)           // once, at start (Argon2id)
 *   const t = createTcpTransport({ local, password, listenPort: 6783 }, { clock, rng, logger })
 *   await t.listen(onConnection, onRefused)
 *   const conn = await t.dial('192.168.1.2:6783')          // or a HandshakeError
 *   await t.close()
 *
 * - Listens on `listenAddr:listenPort` (default 0.0.0.0:6783; port 0 picks one, see `address()`).
 * - Accepts go through a token bucket (20 at once, then one per 50 ms, as Weave); sockets over
 *   the rate wait in a short queue, and beyond it are closed and logged as refused.
 * - Each accepted socket must finish the handshake within `handshakeTimeoutMs` (10 s). A refused
 *   inbound connection logs ONE warn line "refused connection from ADDR: CODE: message" and is
 *   reported to `onRefused(remoteAddr, failure)`.
 * - `dial` connects within `dialTimeoutMs`, handshakes, and resolves the PeerConnection, or
 *   rejects with a HandshakeError (code `io-error` for connect errors, `timeout`, or the
 *   handshake's refusal), and logs "connection to ADDR refused: CODE: message" at debug level
 *   only: the caller has the rejection and logs it. Outbound failures are not passed to onRefused.
 * - Established connections: heartbeats per `heartbeatIntervalMs`/`heartbeatTimeoutMs`
 *   (connection.ts) and one close log line each.
 */
import * as net from 'node:net'
import type { Clock, Logger, Rng } from '../deps'
import { HandshakeError, type HandshakeFailure, type LocalIdentity, type MeshTransport, type PeerConnection } from './connection-contract'
import { attachByteStream, driveHandshake, type ByteIO, type ConnectionOptions, type MeshConnection } from './connection'
import type { PasswordKey } from './crypto'
import { Handshake } from './handshake'
import { TokenBucket } from './token-bucket'

export interface TcpTransportOptions extends ConnectionOptions {
  local: LocalIdentity
  /** Encrypt every connection; peers must have the same password. */
  password?: PasswordKey
  /** Default '0.0.0.0'. */
  listenAddr?: string
  /** Default 6783, Weave's port. 0: any free port. */
  listenPort?: number
  /** A connection must finish its handshake in this time (default 10 s, as Weave). */
  handshakeTimeoutMs?: number
  /** TCP connect timeout for dials (default 10 s). */
  dialTimeoutMs?: number
  /** Accept rate limit: burst and refill interval (default 20 and 50 ms, as Weave). */
  acceptBurst?: number
  acceptRefillMs?: number
  minVersion?: number
  maxVersion?: number
}

export interface TcpTransportDeps { clock: Clock; rng: Rng; logger: Logger }

export interface TcpTransport extends MeshTransport {
  /** The bound address once listening. */
  address(): { host: string; port: number } | undefined
}

/** Sockets waiting for an accept token beyond this are refused. */
const MAX_ACCEPT_QUEUE = 64
/** After `end()`, a socket the remote does not close is destroyed after this. */
const END_GRACE_MS = 2_000

export function createTcpTransport(opts: TcpTransportOptions, deps: TcpTransportDeps): TcpTransport {
  const log = deps.logger
  const handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 10_000
  const dialTimeoutMs = opts.dialTimeoutMs ?? 10_000
  const bucket = new TokenBucket(opts.acceptBurst ?? 20, opts.acceptRefillMs ?? 50, () => deps.clock.now())
  const conns = new Set<MeshConnection>()
  const sockets = new Set<net.Socket>()
  const acceptQueue: { socket: net.Socket; addr: string }[] = []
  let cancelDrain: (() => void) | undefined
  let server: net.Server | undefined
  let onConn: ((c: PeerConnection) => void) | undefined
  let onRefused: ((addr: string, why: HandshakeFailure) => void) | undefined
  let closing = false

  const handshake = (outbound: boolean) => new Handshake({
    local: opts.local, outbound, password: opts.password, rng: deps.rng, minVersion: opts.minVersion, maxVersion: opts.maxVersion,
  })

  function track(c: MeshConnection): MeshConnection {
    conns.add(c)
    c.onClose(() => conns.delete(c))
    return c
  }

  function refuseInbound(addr: string, f: HandshakeFailure): void {
    log.warn(`refused connection from ${addr}: ${f.code}: ${f.message}`)
    onRefused?.(addr, f)
  }

  function handleInbound(socket: net.Socket): void {
    const remoteAddr = addrOf(socket.remoteAddress, socket.remotePort)
    const localAddr = addrOf(socket.localAddress, socket.localPort)
    const io = socketIO(socket, deps.clock)
    driveHandshake(io, handshake(false), deps.clock, handshakeTimeoutMs, (r) => {
      if (!r.ok) return refuseInbound(remoteAddr, r.failure)
      if (closing || !onConn) { io.end(); return }
      const c = attachByteStream(io, r.success, { outbound: false, remoteAddr, localAddr }, { clock: deps.clock, logger: log }, opts)
      onConn(track(c))
    })
  }

  function drainAcceptQueue(): void {
    cancelDrain = undefined
    while (acceptQueue.length && bucket.take()) {
      const { socket, addr } = acceptQueue.shift()!
      if (!socket.destroyed) handleInbound(socket)
      else refuseInbound(addr, { code: 'io-error', message: 'connection closed while waiting to be accepted', permanent: false })
    }
    if (acceptQueue.length) cancelDrain = deps.clock.setTimer(bucket.waitMs(), drainAcceptQueue)
  }

  function onSocket(socket: net.Socket): void {
    if (closing) { socket.destroy(); return }
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => { /* reported through 'close' in socketIO */ })
    if (!acceptQueue.length && bucket.take()) return handleInbound(socket)
    const addr = addrOf(socket.remoteAddress, socket.remotePort)
    if (acceptQueue.length >= MAX_ACCEPT_QUEUE) {
      refuseInbound(addr, { code: 'io-error', message: 'too many connection attempts; try later', permanent: false })
      socket.destroy()
      return
    }
    acceptQueue.push({ socket, addr })
    if (!cancelDrain) cancelDrain = deps.clock.setTimer(bucket.waitMs(), drainAcceptQueue)
  }

  return {
    listen(onConnection, refused) {
      onConn = onConnection
      onRefused = refused
      return new Promise((resolve, reject) => {
        const srv = net.createServer({ noDelay: true }, onSocket)
        srv.once('error', reject)
        srv.listen(opts.listenPort ?? 6783, opts.listenAddr ?? '0.0.0.0', () => {
          srv.off('error', reject)
          srv.on('error', (err) => log.error(`mesh listener: ${err.message}`))
          server = srv
          const a = srv.address() as net.AddressInfo
          log.info(`listening for mesh connections on ${addrOf(a.address, a.port)}`)
          resolve()
        })
      })
    },

    dial(addr) {
      return new Promise((resolve, reject) => {
        const fail = (f: HandshakeFailure, cause?: unknown) => {
          // Debug only: the caller has the rejection and logs it (the router does, once).
          log.debug(`connection to ${addr} refused: ${f.code}: ${f.message}`)
          reject(new HandshakeError(f, { cause }))
        }
        const target = parseAddr(addr)
        if (!target) return fail({ code: 'io-error', message: `bad address ${JSON.stringify(addr)}`, permanent: true })
        if (closing) return fail({ code: 'io-error', message: 'transport closed', permanent: false })
        const socket = net.connect({ host: target.host, port: target.port, noDelay: true })
        sockets.add(socket)
        socket.on('close', () => sockets.delete(socket))
        let connected = false
        const cancelConnect = deps.clock.setTimer(dialTimeoutMs, () => {
          if (connected) return
          socket.destroy()
          fail({ code: 'timeout', message: `connect to ${addr} timed out after ${dialTimeoutMs} ms`, permanent: false })
        })
        socket.once('error', (err: NodeJS.ErrnoException) => {
          if (connected) return
          cancelConnect()
          fail({ code: 'io-error', message: `connect to ${addr}: ${err.code ?? err.message}`, permanent: false }, err)
        })
        socket.once('connect', () => {
          connected = true
          cancelConnect()
          const remoteAddr = addrOf(socket.remoteAddress, socket.remotePort)
          const localAddr = addrOf(socket.localAddress, socket.localPort)
          const io = socketIO(socket, deps.clock)
          driveHandshake(io, handshake(true), deps.clock, handshakeTimeoutMs, (r) => {
            if (!r.ok) return fail(r.failure)
            const c = attachByteStream(io, r.success, { outbound: true, remoteAddr, localAddr }, { clock: deps.clock, logger: log }, opts)
            resolve(track(c))
          })
        })
      })
    },

    async close() {
      closing = true
      cancelDrain?.()
      for (const q of acceptQueue.splice(0)) q.socket.destroy()
      for (const c of [...conns]) c.close('transport closed')
      const srv = server
      server = undefined
      const closed = srv ? new Promise<void>((r) => srv.close(() => r())) : Promise.resolve()
      // Connections just sent their bye; give the kernel the bytes, then drop what remains.
      for (const s of [...sockets]) { s.end(); s.destroy() }
      await closed
    },

    address() {
      const a = server?.address()
      return a && typeof a === 'object' ? { host: a.address, port: a.port } : undefined
    },
  }
}

/** A socket as a ByteIO; reports its close once, with the error if there was one. */
function socketIO(socket: net.Socket, clock: Clock): ByteIO {
  let handlers: { data(b: Uint8Array): void; closed(why: string): void } | undefined
  let lastError: string | undefined
  let closed = false
  socket.on('data', (b: Buffer) => handlers?.data(b))
  socket.on('error', (err: NodeJS.ErrnoException) => { lastError = err.code ?? err.message })
  socket.on('close', () => {
    if (closed) return
    closed = true
    handlers?.closed(lastError ? `connection error: ${lastError}` : 'remote closed the connection')
  })
  return {
    write(bytes) { if (!socket.destroyed && socket.writable) socket.write(bytes) },
    pendingWriteBytes: () => socket.writableLength,
    end() {
      if (closed) return
      closed = true
      socket.end()
      const cancel = clock.setTimer(END_GRACE_MS, () => socket.destroy())
      socket.once('close', cancel)
    },
    setHandlers(h) { handlers = h },
  }
}

/** "ip:port", with IPv4-mapped IPv6 addresses written as plain IPv4 and IPv6 in brackets. */
function addrOf(ip: string | undefined, port: number | undefined): string {
  let host = ip ?? '?'
  if (host.startsWith('::ffff:') && host.includes('.')) host = host.slice(7)
  if (host.includes(':')) host = `[${host}]`
  return `${host}:${port ?? 0}`
}

function parseAddr(addr: string): { host: string; port: number } | undefined {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(addr) ?? /^([^:]+):(\d+)$/.exec(addr)
  if (!m) return undefined
  const port = Number(m[2])
  return port > 0 && port < 65536 ? { host: m[1], port } : undefined
}
