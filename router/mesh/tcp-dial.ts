/**
 * Dialling a peer over TCP: connect within the dial timeout, handshake within the handshake
 * timeout, then the PeerConnection; or a HandshakeError (code `io-error` for connect errors,
 * `timeout`, or the handshake's refusal), logged at debug level only: the caller has the
 * rejection and logs it (the router does, once).
 */
import * as net from 'node:net'
import type { Clock, Logger } from '../deps'
import { HandshakeError, type HandshakeFailure, type PeerConnection } from './connection-contract'
import { attachByteStream, driveHandshake, type ConnectionOptions, type MeshConnection } from './connection'
import type { Handshake } from './handshake'
import { addrOf, parseAddr, socketIO } from './tcp-socket'

/** What a dial needs of its transport. */
export interface Dialler {
  readonly clock: Clock
  readonly log: Logger
  readonly dialTimeoutMs: number
  readonly handshakeTimeoutMs: number
  readonly connOpts: ConnectionOptions
  /** Every open socket of the transport (close() ends them). */
  readonly sockets: Set<net.Socket>
  handshake(outbound: boolean): Handshake
  closing(): boolean
  /** Keeps an established connection until it closes. */
  track(c: MeshConnection): MeshConnection
}

export function dialTcp(addr: string, d: Dialler): Promise<PeerConnection> {
  return new Promise((resolve, reject) => {
    const fail = (f: HandshakeFailure, cause?: unknown) => {
      // Debug only: the caller has the rejection and logs it (the router does, once).
      d.log.debug(`connection to ${addr} refused: ${f.code}: ${f.message}`)
      reject(new HandshakeError(f, { cause }))
    }
    const target = parseAddr(addr)
    if (!target) return fail({ code: 'io-error', message: `bad address ${JSON.stringify(addr)}`, permanent: true })
    if (d.closing()) return fail({ code: 'io-error', message: 'transport closed', permanent: false })
    const socket = net.connect({ host: target.host, port: target.port, noDelay: true })
    d.sockets.add(socket)
    socket.on('close', () => d.sockets.delete(socket))
    let connected = false
    const cancelConnect = d.clock.setTimer(d.dialTimeoutMs, () => {
      if (connected) return
      socket.destroy()
      fail({ code: 'timeout', message: `connect to ${addr} timed out after ${d.dialTimeoutMs} ms`, permanent: false })
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
      const io = socketIO(socket, d.clock)
      driveHandshake(io, d.handshake(true), d.clock, d.handshakeTimeoutMs, (r) => {
        if (!r.ok) return fail(r.failure)
        const c = attachByteStream(io, r.success, { outbound: true, remoteAddr, localAddr }, { clock: d.clock, logger: d.log }, d.connOpts)
        resolve(d.track(c))
      })
    })
  })
}
