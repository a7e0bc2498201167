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
 *
 * The admission queue is in tcp-accept.ts, dialling in tcp-dial.ts, the socket as a byte stream
 * in tcp-socket.ts.
 */
import * as net from 'node:net'
import type { Clock, Logger, Rng } from '../deps'
import type { HandshakeFailure, LocalIdentity, MeshTransport, PeerConnection } from './connection-contract'
import { attachByteStream, driveHandshake, type ConnectionOptions, type MeshConnection } from './connection'
import type { PasswordKey } from './crypto'
import { Handshake } from './handshake'
import { AcceptQueue } from './tcp-accept'
import { dialTcp, type Dialler } from './tcp-dial'
import { addrOf, socketIO } from './tcp-socket'

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

export function createTcpTransport(opts: TcpTransportOptions, deps: TcpTransportDeps): TcpTransport {
  const log = deps.logger
  const handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 10_000
  const conns = new Set<MeshConnection>()
  const sockets = new Set<net.Socket>()
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

  const accepts = new AcceptQueue(opts.acceptBurst ?? 20, opts.acceptRefillMs ?? 50, deps.clock, handleInbound, refuseInbound)

  function onSocket(socket: net.Socket): void {
    if (closing) { socket.destroy(); return }
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => { /* reported through 'close' in socketIO */ })
    accepts.offer(socket)
  }

  const dialler: Dialler = {
    clock: deps.clock,
    log,
    dialTimeoutMs: opts.dialTimeoutMs ?? 10_000,
    handshakeTimeoutMs,
    connOpts: opts,
    sockets,
    handshake,
    closing: () => closing,
    track,
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

    dial: (addr) => dialTcp(addr, dialler),

    async close() {
      closing = true
      accepts.close()
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
