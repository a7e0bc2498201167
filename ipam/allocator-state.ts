/**
 * The state of one peer's IPAM that its parts share (operations, donation, rmpeer, hand-off,
 * bootstrap, gossiper), and what they all do with it: persist, send, refresh our space from the
 * ring, say the status. Internal to ipam/: the Allocator (allocator.ts) is the public face.
 */
import { BoundedMap, LogOnce, type Logger } from '../router/deps'
import type { Gossip, GossipData, MeshView, PeerName } from '../router/mesh'
import { type Cidr, type Range, cidrRange, formatCidr } from './address'
import type { AllocatorConfig, AllocatorDeps } from './allocator-config'
import { GroupCommit } from './commit'
import type { Paxos } from './consensus'
import { DeathGrace } from './death-grace'
import { LeaseTable } from './leases'
import { type GossipMsg, type UnicastMsg, IpamGossipData, WIRE_VERSION, encodeMsg } from './messages'
import { type IpamState, STATE_FORMAT } from './persistence'
import { RemovalLocks } from './removal'
import { Ring } from './ring'
import { Space } from './space'

/** A request waiting for the ring, for space, or for an owner's answer (operations.ts). */
export type Op =
  | { kind: 'alloc'; id: string; subnet: Cidr; resolve: (c: Cidr) => void; reject: (e: Error) => void; deadline: number }
  | { kind: 'claim'; id: string; cidr: Cidr; resolve: () => void; reject: (e: Error) => void; deadline: number; sends: number; lastSent: number }
  | { kind: 'prime'; resolve: () => void; reject: (e: Error) => void; deadline: number }

export class AllocatorState {
  readonly self: PeerName
  readonly universe: Range
  readonly view: MeshView
  readonly log: Logger
  gossipHandle: Gossip | undefined
  ring: Ring
  readonly space = new Space()
  /** Consensus on the first ring, while there is none (bootstrap.ts). */
  paxos: Paxos | undefined
  readonly leases = new LeaseTable()
  readonly deaths: DeathGrace
  readonly commit: GroupCommit
  /** Claimed addresses outside the universe: address -> holder. */
  readonly outside = new Map<number, string>()
  removedSelf = false
  pending: Op[] = []
  /** Our outstanding space requests by range (donation.ts). */
  readonly spaceAsks = new Map<string, { donor: PeerName; at: number; denied: Set<PeerName> }>()
  proposedAt = -Infinity
  consensusProgressAt = -Infinity
  quorumSeenAt: number | undefined
  /** Keyed by message kind and peer (peer-chosen): bounded, a forgotten key only allows one more answer. */
  private readonly answeredAt = new BoundedMap<string, number>(4096)
  /** Our free counts changed since the last report in the ring (reported on the next tick). */
  freeDirty = false
  announceTimer: (() => void) | undefined
  announcedAt = -Infinity
  stopped = false
  /** Keys hold peer names and reasons a peer chooses: bounded (router/deps/bounded.ts). */
  private readonly loggedOnce = new LogOnce((m) => this.log.warn(m))
  /** Reset waiting for its heir's confirmation (hand-off.ts). */
  handoffWaiter: { peer: PeerName; done: () => void } | undefined
  readonly removals: RemovalLocks
  /** rmpeer waiting for votes on a dead peer (rmpeer.ts). */
  readonly voteWaiters = new Map<PeerName, (from: PeerName, ok: boolean, reason?: string) => void>()
  /** The state last written to disk: the only state we ever gossip. */
  published: GossipMsg = { v: WIRE_VERSION }
  readonly tickMs: number
  readonly reproposeMs: number
  readonly requestTimeoutMs: number
  readonly spaceRequestRetryMs: number
  readonly handoffTimeoutMs: number
  readonly partialGraceMs: number
  readonly voteTimeoutMs: number
  /**
   * Try the pending operations again (the ring or our space changed). Set by the Allocator to
   * operations.ts's retryPending: operations call into donation and bootstrap, which call back here.
   */
  retryPending: () => void = () => {}
  /** Free addresses of ours in `r`, as the ring reports them. */
  readonly freeOf = (r: Range): number => this.space.freeIn(r)

  constructor(readonly config: AllocatorConfig, readonly deps: AllocatorDeps) {
    this.view = deps.host.view
    this.self = this.view.self.name
    this.log = deps.logger
    this.universe = cidrRange(config.universe)
    this.ring = new Ring(this.universe.start, this.universe.end)
    this.tickMs = config.tickMs ?? 1000
    this.reproposeMs = config.reproposeMs ?? 3000
    this.requestTimeoutMs = config.requestTimeoutMs ?? 30_000
    this.spaceRequestRetryMs = config.spaceRequestRetryMs ?? 2000
    this.handoffTimeoutMs = config.handoffTimeoutMs ?? 5000
    this.partialGraceMs = Math.min(1000, this.reproposeMs / 2)
    this.voteTimeoutMs = config.voteTimeoutMs ?? 3000
    this.removals = new RemovalLocks(deps.clock)
    this.deaths = new DeathGrace(config.releaseGraceMs ?? 30_000)
    this.commit = new GroupCommit(deps.store, deps.logger, {
      head: () => this.headText(),
      snapshot: (head) => this.snapshotText(head),
      takeOps: () => this.leases.takeOps(),
      beginWrite: () => {
        const gossipNow = this.snapshotGossip()
        return () => { this.published = gossipNow }
      },
    })
    if (config.init.kind === 'consensus' && !(config.init.clusterSize >= 1)) throw new Error('consensus needs a cluster size >= 1')
  }

  get clusterSize(): number {
    return this.config.init.kind === 'consensus' ? this.config.init.clusterSize : 0
  }

  get quorum(): number {
    return this.config.init.kind === 'consensus' ? Math.floor(this.config.init.clusterSize / 2) + 1 : 0
  }

  now(): number {
    return this.deps.clock.now()
  }

  /** The ring changed what we own: take it into our space and report our free counts in the ring. */
  ownedChanged(): void {
    this.space.setOwned(this.ring.ownedBy(this.self))
    this.ring.reportFree(this.self, this.freeOf)
  }

  /** Fail every pending operation with `err`. */
  failPending(err: Error): void {
    for (const op of this.pending.splice(0)) op.reject(err)
  }

  /** One-line state as in `weave status`: idle, awaiting consensus (...), ready, ... */
  statusText(): string {
    if (this.config.disabled) return 'off (--ipalloc-range ""): explicit addresses only'
    if (this.removedSelf) return "removed by rmpeer on another peer - run 'weave reset'"
    if (this.ring.isEmpty()) {
      if (this.config.init.kind === 'observer') return this.pending.length ? 'priming' : 'idle'
      if (!this.paxos) return 'idle'
      return `awaiting consensus (quorum: ${this.quorum}, known: ${this.paxos.known()})`
    }
    if (this.pending.some((o) => o.kind === 'alloc')) {
      const others = [...this.ring.shares().keys()].filter((p) => p !== this.self)
      if (this.space.ownedRanges().length === 0 && others.length > 0 && others.every((p) => !this.view.isReachable(p))) {
        return "all IP ranges owned by unreachable peers - use 'rmpeer' if they are dead"
      }
      return 'waiting for IP(s) to become available'
    }
    return 'ready'
  }

  // ---- persistence ----

  /** Everything but the lease table, as JSON: it changes rarely (ring, consensus, removal). */
  private headText(): string {
    const head: Omit<IpamState, 'leases'> = {
      format: STATE_FORMAT,
      peerName: this.self,
      range: this.config.disabled ? '' : formatCidr(this.config.universe),
      ...(this.ring.isEmpty() ? {} : { ring: this.ring.toWire() }),
      ...(this.paxos ? { paxos: this.paxos.own } : {}),
      ...(this.removedSelf ? { removed: true } : {}),
    }
    return JSON.stringify(head)
  }

  /** The snapshot: IpamState as JSON, the lease table spliced in from cached pieces. */
  private snapshotText(head: string): string {
    return `${head.slice(0, -1)},"leases":{${this.leases.jsonBody()}}}`
  }

  snapshotGossip(): GossipMsg {
    return {
      v: WIRE_VERSION,
      ...(this.ring.isEmpty() ? {} : { ring: this.ring.toWire() }),
      ...(this.paxos && this.ring.isEmpty() ? { paxos: this.paxos.toWire() } : {}),
    }
  }

  /** Resolves once the current state is on disk (rejects if the write failed). */
  persisted(): Promise<void> {
    return this.commit.durable()
  }

  /** Run `fn` once the current state is on disk; concurrent callers share one write. */
  whenPersisted(fn: (err?: Error) => void): void {
    this.commit.whenDurable(fn)
  }

  // ---- sending ----

  /** What we gossip: the published (persisted) ring or consensus records. */
  gossip(): GossipData | undefined {
    if (!this.published.ring && !this.published.paxos) return undefined
    return new IpamGossipData([encodeMsg(this.published)])
  }

  broadcast(): void {
    if (!this.gossipHandle || this.stopped) return
    const data = this.gossip()
    if (data) this.gossipHandle.gossipBroadcast(data)
  }

  unicast(dst: PeerName, m: UnicastMsg): void {
    if (!this.gossipHandle || this.stopped) return
    this.gossipHandle.gossipUnicast(dst, encodeMsg(m))
  }

  /** At most one answer per `key` (kind and peer) per tick, so a chatty peer cannot make us flood. */
  mayAnswer(key: string): boolean {
    const now = this.now()
    const last = this.answeredAt.get(key) ?? -Infinity
    if (now - last < this.tickMs) return false
    this.answeredAt.set(key, now)
    return true
  }

  logOnce(key: string, msg: string): void {
    this.loggedOnce.once(key, msg)
  }

  describe(peer: PeerName): string {
    const nick = this.view.peers().find((p) => p.name === peer)?.nickname
    return nick ? `${peer}(${nick})` : peer
  }
}
