/** What an Allocator is given: its range and start-up mode (config), and its runtime pieces (deps). */
import type { Clock, Logger, Rng } from '../router/deps'
import type { GossipHost, PeerName } from '../router/mesh'
import type { Cidr } from './address'
import type { StateStore } from './persistence'

export type InitMode =
  | { kind: 'consensus'; clusterSize: number }
  | { kind: 'seed'; peers: PeerName[] }
  | { kind: 'observer' }

export interface AllocatorConfig {
  universe: Cidr
  defaultSubnet: Cidr
  init: InitMode
  /** Pending work (retries, consensus re-proposals, free-count reports) runs on this tick. */
  tickMs?: number
  /** A proposer whose consensus has not finished after this long proposes again. */
  reproposeMs?: number
  /** An allocation or claim still pending after this long fails. */
  requestTimeoutMs?: number
  /** A space request unanswered for this long is sent again (to another donor if possible). */
  spaceRequestRetryMs?: number
  /** Reset waits this long for the heir to confirm the hand-off. */
  handoffTimeoutMs?: number
  /** rmpeer waits this long for votes. */
  voteTimeoutMs?: number
  /** A container that died keeps its leases this long, to come back with them (Weave: 30 s). */
  releaseGraceMs?: number
  /**
   * `--ipalloc-range ""`: no IP allocation. Only claims of explicit addresses (all outside the
   * empty universe) work; allocations fail saying so; no ring, no gossip.
   */
  disabled?: boolean
}

export interface AllocatorDeps {
  clock: Clock
  rng: Rng
  logger: Logger
  host: GossipHost
  store: StateStore
  /**
   * Asked when a dead container's grace ends: true = it is running after all (keep its leases),
   * false = stopped or gone, undefined = cannot tell (the death notice stands). Docker's view.
   */
  isRunning?: (id: string) => Promise<boolean | undefined>
}
