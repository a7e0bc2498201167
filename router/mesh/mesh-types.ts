/**
 * The mesh router's contract: its configuration and defaults, its dependencies, what it shows
 * (status), and the Mesh interface subsystems and the daemon use. createMesh (mesh-router.ts)
 * implements it.
 */
import type { Clock, Logger, Rng } from '../deps'
import type { LocalIdentity, MeshTransport, PeerConnection } from './connection-contract'
import type { GossipHost, PeerName } from './gossip-contract'
import type { MutableLocalIdentity } from './identity'
import type { RouteTable } from './routes'
import type { Topology } from './topology'

export const TOPOLOGY_CHANNEL = 'topology'

export interface MeshConfig {
  name: PeerName
  nickname: string
  /** Default: random per start. */
  uid?: bigint
  shortId?: number
  /** Our mesh port (discovery assumes peers that dialled us listen on the same one). */
  port: number
  /** Connection limit (Weave's --conn-limit, 0: none): discovery stops dialling at it; inbound connections are refused beyond twice it. */
  connLimit: number
  discovery: boolean
  /** Initial direct targets (launch args), used when there is no targets store. */
  peers: string[]
  /** Whether connections are encrypted (a password is set): for status only. */
  encryption: boolean
  /** `--trusted-subnets` (normalised CIDRs): for status only; the overlay applies them. */
  trustedSubnets?: string[]
  overlays?: string[]
  /** Periodic full-state gossip of other channels (Weave: 30 s). */
  gossipIntervalMs?: number
  /** Topology digest to one random neighbour. */
  antiEntropyMs?: number
  /** Batching of our own topology changes (Weave: 1 s; see DEFAULTS for why shorter). */
  topologyBatchMs?: number
  /** Delay before a GC pass after a change, and how long a peer must stay unreachable to be collected. */
  gcDelayMs?: number
  gcGraceMs?: number
  /** Coalescing of route recalculation after merged updates. */
  routeDelayMs?: number
  /**
   * A data plane judges each connection's data path (Weave: a connection is established only once
   * the overlay's heartbeat got through): connections start pending and carry data-plane routes only
   * after `setDataPath(peer, true)`. Without it (simulations, a mesh with no overlay) every
   * connection is established at once.
   */
  establishedByOverlay?: boolean
}

/** Defaults, one place. */
export const MESH_DEFAULTS = {
  gossipIntervalMs: 30_000, // Weave's
  // A digest is 18 bytes per peer to one neighbour: cheap enough to repair often what a broadcast
  // missed while views disagreed (5 s made a 200-peer join converge in 3 s, 2 s in 1.8 s).
  antiEntropyMs: 2_000,
  // Weave batches 1 s; 100 ms still coalesces a burst of connection changes into one delta while
  // keeping convergence across a 10-hop mesh around a second.
  topologyBatchMs: 100,
  gcDelayMs: 200,
  routeDelayMs: 100, // Weave's
  gcGraceMs: 2_000, // a just-joined peer's neighbour record is usually here long before this
  recentRefusals: 16,
}

export interface TargetsStore {
  /** Stored direct targets, or undefined when none were ever stored. */
  load(): string[] | undefined
  save(direct: string[]): void
}

export interface MeshDeps {
  clock: Clock
  rng: Rng
  logger: Logger
  /** Builds the transport for our identity (the transport needs it for the handshake). */
  transport(local: LocalIdentity): MeshTransport
  targets?: TargetsStore
}

export interface ConnectionStatus {
  direction: 'outbound' | 'inbound'
  addr: string
  state: 'established' | 'connecting' | 'retrying' | 'failed'
  encrypted?: boolean
  peer?: string
  nickname?: string
  /** Error of the last try (targets and refusals). */
  error?: string
  /** When a retrying target is tried next (ms since epoch of the clock). */
  retryAt?: number
  /** Live connections with an overlay judge: whether its data path works, and why not. */
  dataPath?: { ok: boolean; why?: string }
  /** Live connections whose peer's data goes through another peer: that next hop (name(nick)), or `unreachable`. */
  dataVia?: string
}

export interface PeerStatus {
  name: string
  nickname: string
  uid: string
  shortId: number | null
  version: number
  reachable: boolean
  connections: Array<{ peer: string; nickname: string; addr: string; outbound: boolean; established: boolean }>
}

export interface MeshStatus {
  name: string
  nickname: string
  uid: string
  shortId: number | null
  version: number
  port: number
  encryption: boolean
  trustedSubnets?: string[]
  discovery: boolean
  connLimit: number
  /** Direct targets (launch/connect), in order. */
  targets: string[]
  connections: ConnectionStatus[]
  peers: PeerStatus[]
  unicastRoutes: Record<string, string>
  /** Source → the neighbours we forward its broadcasts to (optional: hand-made statuses in tests). */
  broadcastRoutes?: Record<string, string[]>
  stats: MeshStats
}

export interface MeshStats {
  gossipMessagesSent: number
  gossipBytesSent: number
  connectionsAdded: number
  connectionsClosed: number
}

export interface Mesh extends GossipHost {
  readonly identity: MutableLocalIdentity
  readonly topology: Topology
  readonly routes: RouteTable
  readonly stats: MeshStats
  start(): Promise<void>
  stop(): Promise<void>
  /** Add direct targets (`replace`: they become the list). Invalid addresses are returned, nothing changes then. */
  connect(peers: string[], replace?: boolean): { invalid: string[] }
  forget(peers: string[]): void
  status(): MeshStatus
  /** Just `status().connections` (no walk over every peer's record), for metrics. */
  connectionStatus(): ConnectionStatus[]
  /** Live connections by peer name. */
  connections(): Map<PeerName, PeerConnection>
  /**
   * The data plane's verdict on the connection to `peer` (see MeshConfig.establishedByOverlay):
   * the topology marks it established, or pending, and gossips the change; data-plane routes use
   * only links both ends call established. `why` is shown in status. False when no live connection.
   */
  setDataPath(peer: PeerName, ok: boolean, why?: string): boolean
}
