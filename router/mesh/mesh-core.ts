/**
 * What the parts of the mesh router share: its identity, topology, routes, gossip channels,
 * connection maker, live connections and named timers. createMesh (mesh-router.ts) builds one
 * MeshCore and hands it to the topology gossip, the connection table, the maker driver and the
 * status view, each in its own file; they talk to each other through the hooks below, which
 * createMesh fills in, so no part imports another.
 */
import type { Clock, Logger, Rng } from '../deps'
import type { PeerConnection } from './connection-contract'
import type { ConnectionMaker } from './connection-maker'
import type { GossipChannels } from './gossip-channel'
import type { PeerName } from './gossip-contract'
import type { MutableLocalIdentity } from './identity'
import type { MESH_DEFAULTS, MeshConfig, MeshDeps, MeshStats } from './mesh-types'
import type { RouteTable } from './routes'
import type { Topology } from './topology'

/** A live connection and the target we dialled for it (outbound only). */
export interface Live {
  conn: PeerConnection
  target?: string
  /** The overlay's last verdict on its data path. */
  dataOk: boolean
  dataWhy?: string
}

export interface MeshCore {
  readonly config: MeshConfig
  /** The config with MESH_DEFAULTS filled in. */
  readonly opt: typeof MESH_DEFAULTS & MeshConfig
  readonly deps: MeshDeps
  readonly clock: Clock
  readonly rng: Rng
  readonly log: Logger
  readonly identity: MutableLocalIdentity
  readonly topology: Topology
  readonly routes: RouteTable
  readonly channels: GossipChannels
  readonly maker: ConnectionMaker
  readonly live: Map<PeerName, Live>
  readonly stats: MeshStats
  readonly timers: NamedTimers
  /** `running` between start and stop; `stopped` once stop began (nothing new starts then). */
  readonly state: { running: boolean; stopped: boolean }
  readonly hooks: MeshHooks
}

/** Calls between the parts, bound by createMesh. */
export interface MeshHooks {
  /** Our own record changed (a connection came or went): re-route now, gossip it soon. */
  ownChanged(): void
  /** Run the connection maker (dial what is due). */
  runMaker(): void
}

/** One pending timer per name, all cancelled by `clear()`. */
export class NamedTimers {
  private readonly pending: Record<string, (() => void) | undefined> = {}
  private cleared = false

  constructor(private readonly clock: Clock) {}

  /** Schedule `fn` under `name`; while one is pending under that name, the earlier one stays. */
  schedule(name: string, ms: number, fn: () => void): void {
    if (this.pending[name] || this.cleared) return
    this.pending[name] = this.clock.setTimer(ms, () => {
      this.pending[name] = undefined
      if (!this.cleared) fn()
    })
  }

  /** Cancel what is pending under `name`, then schedule. */
  reschedule(name: string, ms: number, fn: () => void): void {
    this.pending[name]?.()
    this.pending[name] = undefined
    this.schedule(name, ms, fn)
  }

  /** Cancel everything; nothing is scheduled afterwards. */
  clear(): void {
    this.cleared = true
    for (const k of Object.keys(this.pending)) {
      this.pending[k]?.()
      this.pending[k] = undefined
    }
  }
}
