/**
 * A TCP socket (node:net) as the mesh's ByteIO, and the "ip:port" forms the TCP transport shows
 * and dials.
 */
import type * as net from 'node:net'
import type { Clock } from '../deps'
import type { ByteIO } from './connection'

/** After `end()`, a socket the remote does not close is destroyed after this. */
const END_GRACE_MS = 2_000

/** A socket as a ByteIO; reports its close once, with the error if there was one. */
export function socketIO(socket: net.Socket, clock: Clock): ByteIO {
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
export function addrOf(ip: string | undefined, port: number | undefined): string {
  let host = ip ?? '?'
  if (host.startsWith('::ffff:') && host.includes('.')) host = host.slice(7)
  if (host.includes(':')) host = `[${host}]`
  return `${host}:${port ?? 0}`
}

/** "ip:port" or "[v6]:port" → host and port; undefined when malformed or the port is out of range. */
export function parseAddr(addr: string): { host: string; port: number } | undefined {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(addr) ?? /^([^:]+):(\d+)$/.exec(addr)
  if (!m) return undefined
  const port = Number(m[2])
  return port > 0 && port < 65536 ? { host: m[1], port } : undefined
}
