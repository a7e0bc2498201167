/**
 * What connects two transports of the in-memory network: a pair of byte streams (`bytes` mode,
 * the real handshake and framing run over it) or a link passing message objects (`direct` mode,
 * with the handshake's refusals decided from both ends' settings at once). Everything sent is a
 * task on the network's one delivery queue (`Post`).
 */
import type { HandshakeFailure, LocalIdentity, RemoteIdentity } from './connection-contract'
import type { ByteIO, MeshConnection } from './connection'
import type { WireMessage } from './envelope'
import { MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION } from './handshake'
import type { PasswordKey } from './crypto'

/** Host part of "ip:port" (the whole string when it has no port). */
export function hostOf(addr: string): string {
  const i = addr.lastIndexOf(':')
  return i > 0 && /^\d+$/.test(addr.slice(i + 1)) ? addr.slice(0, i) : addr
}

export function remoteOf(l: LocalIdentity): RemoteIdentity {
  return { name: l.name, nickname: l.nickname, uid: l.uid, shortId: l.shortId(), overlays: [...l.overlays] }
}

export function bytesU64(b: Uint8Array): bigint {
  return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, false)
}

export type Post = (from: string, to: string, fn: () => void) => void

/** A connected pair of in-memory byte streams; writes arrive as tasks on the network queue. */
export function pipe(addrA: string, addrB: string, post: Post): [ByteIO, ByteIO] {
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
export function directLink(from: string, to: string, peer: MeshConnection, post: Post) {
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

/** One end's settings the handshake checks. */
interface HandshakeSide { local: LocalIdentity; opts: { password?: PasswordKey; minVersion?: number; maxVersion?: number } }

/** The handshake's refusals, decided from both ends' settings at once (direct mode). */
export function directChecks(dialer: HandshakeSide, listener: HandshakeSide):
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
