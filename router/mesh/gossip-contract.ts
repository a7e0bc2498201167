/**
 * The contract between the mesh and the subsystems that gossip over it (IPAM, later DNS).
 * Semantics follow weaveworks/mesh: a channel is named; each peer registers one Gossiper per
 * channel and gets back a Gossip handle to send with. Payloads are opaque bytes to the mesh.
 */

/** A peer's stable 48-bit name, written as a MAC: "aa:bb:cc:dd:ee:ff" (lower case). */
export type PeerName = string & { readonly __brand: 'PeerName' }

const PEER_NAME_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/

/** Parse a peer name in MAC form (any case); returns undefined when it is not one. */
export function parsePeerName(text: string): PeerName | undefined {
  const lower = text.trim().toLowerCase()
  return PEER_NAME_RE.test(lower) ? (lower as PeerName) : undefined
}

/** Gossip state that can be merged and sent; what `Gossiper` hands to the mesh. */
export interface GossipData {
  /** Wire form; may be several messages, sent in order. */
  encode(): Uint8Array[]
  /** Merge `other` into this (used while a slow connection's send is pending); returns the result. */
  merge(other: GossipData): GossipData
}

/** Receiving side of a gossip channel. */
export interface Gossiper {
  /** A message addressed to us by `src`. */
  onGossipUnicast(src: PeerName, msg: Uint8Array): void
  /** A broadcast from `src`; return what was new to us (relayed further), or undefined. */
  onGossipBroadcast(src: PeerName, update: Uint8Array): GossipData | undefined
  /** Everything we know; sent periodically to random neighbours and to every new connection. */
  gossip(): GossipData | undefined
  /** Merge periodic/neighbour gossip; return only what was new to us, or undefined. */
  onGossip(update: Uint8Array): GossipData | undefined
}

/** Sending side of a gossip channel, handed out by the mesh. */
export interface Gossip {
  /** Send to one peer, hop by hop; returns false when there is no route to it now. */
  gossipUnicast(dst: PeerName, msg: Uint8Array): boolean
  /** Send to every reachable peer along the broadcast routes. */
  gossipBroadcast(update: GossipData): void
  /** Send to a random subset of neighbours (gossip-style spread). */
  gossipNeighbourSubset(update: GossipData): void
}

/** What a subsystem may know about the peers in the mesh. */
export interface PeerInfo {
  name: PeerName
  nickname: string
  /** Random per start; a restarted peer has a new one. */
  uid: bigint
}

/** Read-only view of the mesh for subsystems (IPAM's consensus and rmpeer checks). */
export interface MeshView {
  readonly self: PeerInfo
  /** Every peer currently in the topology, including ourselves. */
  peers(): PeerInfo[]
  /** Whether `name` is currently reachable from us over the mesh. */
  isReachable(name: PeerName): boolean
  /** Called (coalesced) whenever the set of peers or their reachability changes; returns an unsubscribe. */
  onPeersChanged(fn: () => void): () => void
}

/** Where subsystems register their channels. */
export interface GossipHost {
  newGossip(channel: string, gossiper: Gossiper): Gossip
  readonly view: MeshView
}
