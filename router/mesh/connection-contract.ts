/**
 * The contract between the connection layer (wire, handshake, crypto, heartbeats, transports)
 * and the mesh router (topology, routes, gossip, connection maker).
 *
 * The connection layer hands the router only connections that finished their handshake; the router
 * never sees bytes of the wire format, and the connection layer never sees topology.
 */
import type { PeerName } from './gossip-contract'

/** Who we are, as told to every remote in the handshake. */
export interface LocalIdentity {
  name: PeerName
  nickname: string
  /** Random, non-zero, per process start. */
  uid: bigint
  /** Data-plane short ID (12 bits); may change after a collision, so read it when needed. */
  shortId(): number
  /** Overlays this peer offers, in preference order, e.g. ['fastdp', 'sleeve']. */
  overlays: string[]
}

/** Who the remote said it is, after a successful handshake. */
export interface RemoteIdentity {
  name: PeerName
  nickname: string
  uid: bigint
  shortId: number
  overlays: string[]
}

/** Messages the router exchanges over an established connection (heartbeats stay below it). */
export type MeshMessage =
  /** Periodic or neighbour-subset gossip: merged by the receiver's channel. */
  | { type: 'gossip'; channel: string; src: PeerName; payload: Uint8Array }
  /** Addressed to `dst`; relayed hop by hop along unicast routes. */
  | { type: 'gossip-unicast'; channel: string; src: PeerName; dst: PeerName; payload: Uint8Array }
  /** From `src` to everyone; relayed along `src`'s broadcast tree. */
  | { type: 'gossip-broadcast'; channel: string; src: PeerName; payload: Uint8Array }
  /** Data-plane control between the two ends of this connection (overlay heartbeat acks etc.). */
  | { type: 'overlay'; payload: Uint8Array }

/** A handshaken connection to one remote peer. */
export interface PeerConnection {
  readonly remote: RemoteIdentity
  /** True when we dialled. */
  readonly outbound: boolean
  /** The remote's TCP address "ip:port" as seen from here. */
  readonly remoteAddr: string
  /** Our local TCP address "ip:port" on this connection. */
  readonly localAddr: string
  /** Identical at both ends (our random XOR theirs); used for the duplicate tie-break. */
  readonly connUid: bigint
  /** Whether messages on this connection are encrypted. */
  readonly encrypted: boolean
  /** Queue a message; never blocks. Dropped silently once the connection is closed. */
  send(msg: MeshMessage): void
  /** Close with a reason (logged once); fires onClose. Idempotent. */
  close(reason: string): void
  onMessage(fn: (msg: MeshMessage) => void): void
  /** Fires exactly once, with why the connection ended (remote closed, heartbeat timeout, error...). */
  onClose(fn: (reason: string) => void): void
}

/** Why a handshake failed, as a value the connection maker and `weave status` can use. */
export interface HandshakeFailure {
  code: 'version-mismatch' | 'password-mismatch' | 'encryption-mismatch' | 'self-connection'
    | 'name-collision' | 'bad-message' | 'timeout' | 'io-error'
  message: string
  /** True when retrying cannot help (self-connection, name collision). */
  permanent: boolean
}

/** Dials and accepts connections; TCP in the daemon, in-memory in simulations. */
export interface MeshTransport {
  /** Dial `addr` ("ip:port") and handshake; resolves the connection or rejects with a HandshakeError. */
  dial(addr: string): Promise<PeerConnection>
  /** Start accepting; every successfully handshaken inbound connection is handed to `onConnection`. */
  listen(onConnection: (conn: PeerConnection) => void, onRefused?: (remoteAddr: string, why: HandshakeFailure) => void): Promise<void>
  /** Stop accepting and close every connection this transport made. */
  close(): Promise<void>
}

/** Thrown by `dial` when the handshake fails. */
export class HandshakeError extends Error {
  constructor(readonly failure: HandshakeFailure, options?: { cause?: unknown }) {
    super(failure.message, options)
    this.name = 'HandshakeError'
  }
}
