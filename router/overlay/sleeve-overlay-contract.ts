/**
 * The sleeve overlay's contract: what it needs from the mesh and from the Sleeve driver, its
 * configuration and callbacks, and what it offers (SleeveOverlay, the status of a connection).
 */
import type { Clock, Logger } from '../deps'
import type { PeerConnection, PeerName } from '../mesh'
import type { EspControl } from './fastdp-ipsec'
import type { FastdpOffer } from './overlay-control'
import type { SleeveCipherName } from './sleeve-crypto'
import type { SleeveDatagram } from './sleeve-frame'
import type { LinkState } from './sleeve-link'
import type { SleevePeer } from './sleeve-peers'
import type { SleeveRoutes } from './sleeve-routes'

/** What the overlay needs from the mesh (a subset of Mesh, so tests can fake it). */
export interface OverlayMeshHost {
  readonly identity: { readonly name: PeerName; shortId(): number }
  readonly topology: { records(): Iterable<{ name: PeerName; nickname: string; shortId: number | undefined }> }
  /** `broadcastData`: the data plane's broadcast tree (established links only); `broadcast` when absent. */
  readonly routes: { unicast(): Map<PeerName, PeerName>; broadcast(source: PeerName): PeerName[]; broadcastData?(source: PeerName): PeerName[] }
  readonly view: { onPeersChanged(fn: () => void): () => void }
  connections(): Map<PeerName, PeerConnection>
  /** Our verdict on a connection's data path (the mesh marks it established or pending). */
  setDataPath?(peer: PeerName, ok: boolean, why?: string): boolean
}

/** What the overlay needs from the Sleeve driver. */
export interface SleeveHandle {
  setPeer(id: number, peer: SleevePeer): void
  removePeer(id: number): void
  sendControl(id: number, plain: Uint8Array): boolean
  onControl: (from: number, datagram: SleeveDatagram) => void
  pathMtu(id: number): number | undefined
  /** The kernel's path MTU towards a neighbour (where probing starts); without it, no probing. */
  kernelPathMtu?(id: number): number | undefined
  /** A smaller path MTU found by probing (undefined: the kernel's figure holds). */
  setProbedMtu?(id: number, mtu: number | undefined): void
}

export interface SleeveOverlayConfig {
  /** Our sleeve UDP port, told to peers in the hello. */
  udpPort: number
  /** Encrypt sleeve traffic (the mesh has a password). */
  encrypt: boolean
  heartbeatIntervalMs?: number
  heartbeatTimeoutMs?: number
  /**
   * With `encrypt`: the sleeve ciphers we offer, preferred first; default sleeveCiphers() (what
   * this host runs natively). Tests narrow it to play a peer without AES.
   */
  ciphers?: readonly SleeveCipherName[]
  /** What our hellos say about fastdp (asked per hello); none: the hello says nothing (sleeve only). */
  fastdp?: () => FastdpOffer
  /** Which fast path the offer is for: `vxlan` (the kernel's), none = OVS (asked per hello). */
  fastdpKind?: () => string | undefined
  /** With `encrypt`: whether our hellos offer kernel ESP for fastdp (asked per hello). */
  esp?: () => boolean
  /** With `encrypt`: whether we trust a peer's underlay address (`--trusted-subnets`); none: nobody. */
  trusts?: (ip: string) => boolean
}

/** A peer's hello arrived for the first time on a connection: where it is and what it offers. */
export interface OverlayPeerHello {
  peer: PeerName
  shortId: number
  /** The peer's underlay address (as its mesh connection shows it). */
  ip: string
  /** The peer's fastdp offer; undefined: a peer without fastdp. */
  fastdp: FastdpOffer | undefined
  /** Which fast path the offer is for: `vxlan` (the kernel's); undefined = OVS. */
  dp?: string
  /**
   * When both hellos offered ESP (encrypted mesh): the connection's overlay secret, both nonces
   * and our address on the connection, for encrypted fastdp's keys (fastdp-ipsec).
   */
  esp?: { secret: Uint8Array; ours: Uint8Array; theirs: Uint8Array; localIp: string }
  /** Trust is mutual (`--trusted-subnets` at both ends): the data goes in clear, fastdp without ESP. */
  trusted?: boolean
}

export interface SleeveOverlayDeps {
  clock: Clock
  logger: Logger
  /** The overlay switch listens here; it answers with setVia(). */
  onPeerHello?: (h: OverlayPeerHello) => void
  /** The connection to this peer is gone. */
  onPeerGone?: (p: { peer: PeerName; shortId: number }) => void
  /** The peer says whether our fastdp heartbeats reach it. */
  onFastdpStatus?: (p: { peer: PeerName; shortId: number; ok: boolean }) => void
  /** The peer's encrypted-fastdp key epochs. */
  onEsp?: (p: { peer: PeerName; shortId: number; m: EspControl }) => void
}

/** One line of `weave status` for an overlay connection. */
export interface OverlayConnectionStatus {
  peer: string
  nickname: string
  /** The peer's sleeve UDP address "ip:port" (the mesh address until its hello arrived). */
  addr: string
  outbound: boolean
  /** Which data plane carries this peer's frames (`fastdp` only after setVia said so). */
  overlay: 'sleeve' | 'fastdp'
  /** Why not fastdp, when sleeve carries it and fastdp was considered. */
  why?: string
  state: LinkState
  encrypted: boolean
  /** The AEAD sealing this peer's sleeve traffic, when encrypted. */
  cipher?: SleeveCipherName
  /** With a password: trust is mutual, so this peer's data goes in clear (`--trusted-subnets`). */
  trusted?: boolean
  /** Largest IP packet a frame carries towards this peer (bytes), when known. */
  mtu: number | undefined
}

export interface SleeveOverlay {
  /** The forwarder's routes; pass to the Sleeve. */
  readonly routes: SleeveRoutes
  /** Hooks onto the mesh and the sleeve; starts the heartbeat timer. Call once. */
  attach(mesh: OverlayMeshHost, sleeve: SleeveHandle): Promise<void>
  /** Stops timers and forgets every peer (the sleeve is stopped by its owner). */
  detach(): void
  connections(): OverlayConnectionStatus[]
  /**
   * The overlay switch's decision for a peer: `fastdp` takes it out of the sleeve's routes (the
   * datapath tunnels its frames), `sleeve` puts it back; `why` is shown in status. False when no
   * connection has that short ID.
   */
  setVia(shortId: number, via: 'sleeve' | 'fastdp', why?: string): boolean
  /** Tell the peer whether its fastdp heartbeats reach us; false when no connection has that short ID. */
  sendFastdpStatus(shortId: number, ok: boolean): boolean
  /** Send our encrypted-fastdp key epochs; false when no connection has that short ID. */
  sendEsp(shortId: number, m: EspControl): boolean
  /** Counters: bad control messages, heartbeats in/out. */
  readonly stats: SleeveOverlayStats
}

export interface SleeveOverlayStats { badControl: number; heartbeatsSent: number; heartbeatsReceived: number; acksReceived: number }
