/**
 * The IPAM state machine of one peer: the ring, our space and leases, consensus, pending
 * operations, and the `ipam` gossip channel.
 *
 * Ordering rule (what makes a SIGKILL harmless): state changes are applied synchronously, and
 * everything that depends on them leaving the process -- an HTTP answer, a donation's ring, our
 * consensus record -- waits until that state is on disk. Writes are group-committed: requests
 * arriving while a write is in flight share the next write.
 */
import { BoundedMap, LogOnce, type Clock, type Logger, type Rng } from '../router/deps'
import type { Gossip, GossipData, GossipHost, Gossiper, MeshView, PeerName } from '../router/mesh'
import {
  type Cidr, type Range, cidrRange, contains, formatCidr, formatIp, formatRange, hostRange, intersect, parseCidr,
} from './address'
import { Ring } from './ring'
import { Space } from './space'
import { Paxos } from './consensus'
import {
  type GossipMsg, type UnicastMsg, IpamGossipData, WIRE_VERSION, decodeGossip, decodeUnicast, encodeMsg,
} from './messages'
import { type IpamState, type StateStore, STATE_FORMAT } from './persistence'
import { LeaseTable } from './leases'
import { GroupCommit } from './commit'
import { RemovalLocks } from './removal'
import { DeathGrace } from './death-grace'

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

/** A failure with an HTTP-ish status, for the API layer. */
export class IpamError extends Error {
  constructor(readonly status: number, message: string, readonly code = 'ipam') {
    super(message)
  }
}

type Op =
  | { kind: 'alloc'; id: string; subnet: Cidr; resolve: (c: Cidr) => void; reject: (e: Error) => void; deadline: number }
  | { kind: 'claim'; id: string; cidr: Cidr; resolve: () => void; reject: (e: Error) => void; deadline: number; sends: number; lastSent: number }
  | { kind: 'prime'; resolve: () => void; reject: (e: Error) => void; deadline: number }

const MAX_CLAIM_SENDS = 5

export class Allocator implements Gossiper {
  readonly self: PeerName
  readonly universe: Range
  private readonly view: MeshView
  private readonly log: Logger
  private gossipHandle: Gossip | undefined
  ring: Ring
  readonly space = new Space()
  private paxos: Paxos | undefined
  private readonly leases = new LeaseTable()
  private readonly deaths: DeathGrace
  private readonly commit: GroupCommit
  /** Claimed addresses outside the universe: address -> holder. */
  private readonly outside = new Map<number, string>()
  private removedSelf = false
  private pending: Op[] = []
  private spaceAsks = new Map<string, { donor: PeerName; at: number; denied: Set<PeerName> }>()
  private proposedAt = -Infinity
  private consensusProgressAt = -Infinity
  private quorumSeenAt: number | undefined
  /** Keyed by message kind and peer (peer-chosen): bounded, a forgotten key only allows one more answer. */
  private readonly answeredAt = new BoundedMap<string, number>(4096)
  private freeDirty = false
  private stopTimer: (() => void) | undefined
  private unsubscribePeers: (() => void) | undefined
  private announceTimer: (() => void) | undefined
  private announcedAt = -Infinity
  private stopped = false
  /** Keys hold peer names and reasons a peer chooses: bounded (router/deps/bounded.ts). */
  private readonly loggedOnce = new LogOnce((m) => this.log.warn(m))
  private handoffWaiter: { peer: PeerName; done: () => void } | undefined
  private readonly removals: RemovalLocks
  private readonly voteWaiters = new Map<PeerName, (from: PeerName, ok: boolean, reason?: string) => void>()
  private readonly voteTimeoutMs: number
  /** The state last written to disk: the only state we ever gossip. */
  private published: GossipMsg = { v: WIRE_VERSION }
  private readonly tickMs: number
  private readonly reproposeMs: number
  private readonly requestTimeoutMs: number
  private readonly spaceRequestRetryMs: number
  private readonly handoffTimeoutMs: number
  private readonly partialGraceMs: number

  constructor(readonly config: AllocatorConfig, private readonly deps: AllocatorDeps) {
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

  // ---- lifecycle ----

  /** Restore saved state (refusing a foreign one by throwing), register the channel, start ticking. */
  restore(state: IpamState | undefined): void {
    if (state?.ring) {
      const r = Ring.fromWire(state.ring)
      if (!r.ok) throw new Error(`IPAM state in ${this.deps.store.where}: ${r.reason}`)
      this.ring = r.ring
    }
    if (state?.paxos && this.config.init.kind === 'consensus' && this.ring.isEmpty()) {
      this.paxos = new Paxos(this.self, this.quorum, state.paxos, this.clusterSize)
    }
    this.removedSelf = !!state?.removed
    for (const [id, cidrs] of Object.entries(state?.leases ?? {})) {
      for (const text of cidrs) {
        const c = parseCidr(text)
        if (!c) throw new Error(`IPAM state in ${this.deps.store.where}: bad address ${text} for ${id}`)
        this.addLease(id, c)
      }
    }
    if (this.ring.isEmpty() && this.config.init.kind === 'seed') {
      this.ring.claimForPeers(this.config.init.peers)
      this.log.info(`ring seeded by ${this.ring.seeds.join(', ')}`)
    }
    this.space.setOwned(this.ring.ownedBy(this.self))
    if (this.ring.isEmpty() && this.space.leaseCount() > 0) this.log.warn(`${this.space.leaseCount()} leases restored before any ring exists`)
    this.ring.reportFree(this.self, (r) => this.space.freeIn(r))
    this.published = this.snapshotGossip()
  }

  start(): void {
    if (this.config.disabled) {
      this.scheduleTick() // the die grace of claimed leases still runs
      return
    }
    this.gossipHandle = this.deps.host.newGossip('ipam', this)
    this.unsubscribePeers = this.view.onPeersChanged(() => this.onPeersChanged())
    this.scheduleTick()
    this.onPeersChanged()
  }

  /**
   * New peers may have registered their ipam channel after the mesh greeted them (so they missed
   * our state), or may be electors consensus is waiting for: announce our state to everyone,
   * at most once per tick.
   */
  private onPeersChanged(): void {
    if (this.announceTimer || this.stopped) return
    const since = this.deps.clock.now() - this.announcedAt
    this.announceTimer = this.deps.clock.setTimer(Math.max(0, this.tickMs - since), () => {
      this.announceTimer = undefined
      this.announcedAt = this.deps.clock.now()
      this.broadcast()
      // Without a ring, ask who has one (or consensus state) to tell us.
      if (this.ring.isEmpty()) this.gossipHandle?.gossipBroadcast(new IpamGossipData([encodeMsg({ v: WIRE_VERSION, hello: true })]))
    })
  }

  /** Stop ticking, fail pending requests, and resolve once the last write is done. */
  async stop(): Promise<void> {
    this.stopped = true
    this.stopTimer?.()
    this.unsubscribePeers?.()
    this.announceTimer?.()
    for (const op of this.pending.splice(0)) op.reject(new IpamError(503, 'IPAM is shutting down'))
    await this.commit.idle()
    await this.deps.store.close?.()
  }

  // ---- public operations (the API calls these) ----

  /** Allocate an address for `id` in `subnet` (default subnet when undefined); idempotent. */
  allocate(id: string, subnet: Cidr = this.config.defaultSubnet): Promise<Cidr> {
    this.deaths.alive(id) // asking again for a container we thought dead: it was restarted
    if (this.config.disabled) {
      return Promise.reject(new IpamError(400, 'IP allocation is off (launched with --ipalloc-range ""): give an explicit address, e.g. weave attach 10.2.1.5/24 CONTAINER or WEAVE_CIDR=ip:10.2.1.5/24'))
    }
    return new Promise((resolve, reject) => {
      const sub = { ip: cidrRange(subnet).start, prefix: subnet.prefix }
      if (!intersect(hostRange(sub), this.universe)) {
        return reject(new IpamError(400, `subnet ${formatCidr(sub)} is out of bounds of the allocation range ${formatCidr(this.config.universe)}`))
      }
      this.enqueue({ kind: 'alloc', id, subnet: sub, resolve, reject, deadline: this.deps.clock.now() + this.requestTimeoutMs })
    })
  }

  /** Claim `cidr.ip` for `id` (its subnet prefix kept for lookups); idempotent for the same ID. */
  claim(id: string, cidr: Cidr): Promise<void> {
    this.deaths.alive(id)
    return new Promise((resolve, reject) => {
      this.enqueue({ kind: 'claim', id, cidr, resolve, reject, deadline: this.deps.clock.now() + this.requestTimeoutMs, sends: 0, lastSent: -Infinity })
    })
  }

  /** Resolve once the ring exists (triggering consensus if needed): `weave prime`. */
  prime(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.enqueue({ kind: 'prime', resolve, reject, deadline: this.deps.clock.now() + this.requestTimeoutMs })
    })
  }

  /** Addresses of `id`, optionally only those inside `subnet`. */
  lookup(id: string, subnet?: Cidr): Cidr[] {
    const list = this.leases.get(id)
    const r = subnet && cidrRange(subnet)
    return list.filter((l) => !r || contains(r, l.addr)).map((l) => ({ ip: l.addr, prefix: l.prefix }))
  }

  /** Every ID with its addresses. */
  owned(): Array<{ containerid: string; addrs: string[] }> {
    return [...this.leases.entries()].map(([id, ls]) => ({ containerid: id, addrs: ls.map((l) => formatCidr({ ip: l.addr, prefix: l.prefix })) }))
  }

  /** Release `addr` of `id`, or all of its addresses; false when there was nothing to release. Resolves once persisted. */
  async release(id: string, addr?: number): Promise<boolean> {
    const drop = this.leases.remove(id, addr)
    if (this.leases.get(id).length === 0) this.deaths.alive(id)
    if (drop.length === 0) return false
    for (const l of drop) {
      if (this.outside.get(l.addr) === id) this.outside.delete(l.addr)
      else if (this.space.holder(l.addr) === id) this.space.release(l.addr)
    }
    this.freeDirty = true
    await this.persisted()
    return true
  }

  /** The container `id` died: its leases go after the grace unless it shows a sign of life first. */
  containerDied(id: string): void {
    if (this.leases.get(id).length) this.deaths.died(id, this.deps.clock.now())
  }

  /** The container `id` (re)started: it keeps its leases. */
  containerStarted(id: string): void {
    this.deaths.alive(id)
  }

  /** Leases of dead containers waiting for their grace to end. */
  dyingCount(): number {
    return this.deaths.size
  }

  /** Release the leases of containers whose grace ended, unless Docker says they run after all. */
  private releaseDead(now: number): void {
    for (const { id, token } of this.deaths.due(now)) {
      const check = this.deps.isRunning ? this.deps.isRunning(id).catch(() => undefined) : Promise.resolve(undefined)
      check.then((running) => {
        if (running) {
          this.deaths.alive(id)
          this.log.info(`${short(id)} died ${Math.round(this.deaths.graceMs / 1000)} s ago but is running: keeping its leases`)
          return
        }
        if (!this.deaths.confirm(id, token) || this.stopped) return
        this.log.info(`releasing the leases of ${short(id)}: it died and did not come back within ${Math.round(this.deaths.graceMs / 1000)} s`)
        return this.release(id).then(() => undefined)
      }).catch((err: Error) => this.log.warn(`releasing the leases of ${short(id)}: ${err.message}`))
    }
  }

  /**
   * rmpeer: take over every range of `peerOrNick` (a dead peer) and tombstone it, so it can never
   * win those ranges back (reference (b) 1). Refused for ourselves and for a peer reachable now.
   * A majority of the peers owning space (the dead one and `also` -- other dead peers being
   * removed in the same command -- left out) must agree, and each grants only one taker per dead
   * peer, so two peers cannot both take the same ranges over.
   */
  async removePeer(peerOrNick: string, also: string[] = []): Promise<{ peer: PeerName; addresses: number }> {
    const peer = this.resolvePeer(peerOrNick)
    const others = also.map((p) => this.resolvePeer(p))
    for (const p of [peer, ...others]) {
      if (p === this.self) throw new IpamError(400, 'cannot rmpeer ourselves; use weave reset')
      if (this.view.isReachable(p)) throw new IpamError(409, `peer ${this.describe(p)} is reachable; stop it (or weave reset it) before rmpeer`)
    }
    if (!this.ring.isEmpty() && this.ring.shares().has(peer)) await this.agreeOnRemoval(peer, others)
    const addresses = this.ring.isEmpty() ? 0 : this.ring.transfer(peer, this.self)
    this.space.setOwned(this.ring.ownedBy(this.self))
    this.ring.reportFree(this.self, (r) => this.space.freeIn(r))
    this.log.info(`rmpeer: ${addresses} IPs taken over from ${peer}`)
    await this.persisted()
    this.broadcast()
    this.retryPending()
    return { peer, addresses }
  }

  /** Collect a majority of votes for us taking over `peer`; throws when there is none. */
  private async agreeOnRemoval(peer: PeerName, alsoDead: PeerName[]): Promise<void> {
    const electorate = new Set([...this.ring.shares().keys()].filter((p) => p !== peer && !alsoDead.includes(p) && !this.ring.removed.has(p)))
    electorate.add(this.self)
    const need = Math.floor(electorate.size / 2) + 1
    if (!this.removals.tryGrant(peer, this.self)) {
      throw new IpamError(409, `rmpeer ${peer}: ${this.removals.holder(peer)} is already removing it`)
    }
    const askable = [...electorate].filter((p) => p !== this.self && this.view.isReachable(p))
    let yes = 1
    const refusals: string[] = []
    if (yes < need && askable.length > 0) {
      await new Promise<void>((resolve) => {
        let answered = 0
        const finish = () => {
          cancel()
          this.voteWaiters.delete(peer)
          resolve()
        }
        const cancel = this.deps.clock.setTimer(this.voteTimeoutMs, finish)
        this.voteWaiters.set(peer, (from, ok, reason) => {
          if (!askable.includes(from)) return
          answered++
          if (ok) yes++
          else refusals.push(`${this.describe(from)}: ${reason ?? 'refused'}`)
          if (yes >= need || answered === askable.length) finish()
        })
        for (const p of askable) this.unicast(p, { v: WIRE_VERSION, t: 'rmpeer-ask', peer })
      })
    }
    if (yes < need) {
      this.removals.release(peer, this.self)
      throw new IpamError(409, `rmpeer ${peer}: ${yes} of ${electorate.size} peers owning space agreed, ${need} needed` +
        (refusals.length ? ` (${refusals.join('; ')})` : ' (the others did not answer); name every dead peer in one rmpeer command'))
    }
  }

  private handleRemovalAsk(src: PeerName, peer: PeerName): void {
    let reason: string | undefined
    if (peer === this.self) reason = 'that is me, and I am running'
    else if (this.view.isReachable(peer)) reason = `${peer} is reachable from here`
    else if (this.ring.removed.has(peer)) reason = `${peer} was already removed`
    else if (!this.removals.tryGrant(peer, src)) reason = `${this.removals.holder(peer)} is already removing ${peer}`
    this.unicast(src, { v: WIRE_VERSION, t: 'rmpeer-vote', peer, ok: reason === undefined, ...(reason ? { reason } : {}) })
  }

  /**
   * weave reset: drop our leases, hand every range we own to a live peer, and wait for it to
   * confirm (Weave's hand-off was fire-and-forget; reference (b) 5). Resolves with the heir, or
   * undefined when we owned nothing.
   */
  async reset(): Promise<PeerName | undefined> {
    for (const op of this.pending.splice(0)) op.reject(new IpamError(503, 'cancelled by reset'))
    const mine = this.ring.ownedBy(this.self)
    for (const id of this.leases.ids()) await this.release(id)
    if (mine.length === 0) return undefined
    const heir = this.pickHeir()
    if (!heir) throw new IpamError(503, 'no reachable peer to hand our address ranges to')
    for (const r of mine) this.ring.grant(this.self, r, heir, () => 0)
    this.space.setOwned([])
    await this.persisted()
    const confirmed = await new Promise<boolean>((resolve) => {
      const deadline = this.deps.clock.now() + this.handoffTimeoutMs
      let cancel: () => void = () => {}
      const send = () => {
        this.unicast(heir, { v: WIRE_VERSION, t: 'handoff', ring: this.ring.toWire() })
        if (this.deps.clock.now() >= deadline) return resolve(false)
        cancel = this.deps.clock.setTimer(Math.min(1000, this.handoffTimeoutMs), send)
      }
      this.handoffWaiter = { peer: heir, done: () => { cancel(); resolve(true) } }
      send()
    })
    this.handoffWaiter = undefined
    this.broadcast()
    if (!confirmed) throw new IpamError(504, `hand-off of our address ranges to ${heir} was not confirmed`)
    return heir
  }

  // ---- status ----

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

  isRemoved(): boolean {
    return this.removedSelf
  }

  activeCount(): number {
    return this.space.leaseCount() + this.outside.size
  }

  pendingCount(): number {
    return this.pending.length
  }

  /** Pending operations by kind (Weave's weave_ipam_pending_allocates / _claims). */
  pendingByKind(): { allocates: number; claims: number } {
    let allocates = 0
    for (const op of this.pending) if (op.kind === 'alloc') allocates++
    return { allocates, claims: this.pending.length - allocates }
  }

  // ---- Gossiper ----

  onGossipUnicast(src: PeerName, bytes: Uint8Array): void {
    const d = decodeUnicast(bytes)
    if (!d.ok) return this.logOnce(`bad-unicast:${src}:${d.reason}`, `dropping bad ipam message from ${src}: ${d.reason}`)
    const m = d.msg
    switch (m.t) {
      case 'req':
        return this.handleSpaceRequest(src, { start: m.start, end: m.end })
      case 'denied':
        return this.handleDenied(src, { start: m.start, end: m.end })
      case 'ring':
        this.applyRingWire(m.ring, src)
        return
      case 'handoff':
        if (this.applyRingWire(m.ring, src)) this.whenPersisted(() => this.unicast(src, { v: WIRE_VERSION, t: 'handoff-ack' }))
        return
      case 'handoff-ack':
        if (this.handoffWaiter?.peer === src) this.handoffWaiter.done()
        return
      case 'rmpeer-ask':
        return this.handleRemovalAsk(src, m.peer as PeerName)
      case 'rmpeer-vote':
        return this.voteWaiters.get(m.peer as PeerName)?.(src, m.ok, m.reason)
    }
  }

  onGossipBroadcast(src: PeerName, update: Uint8Array): GossipData | undefined {
    const d = decodeGossip(update)
    if (!d.ok) {
      this.logOnce(`bad-gossip:${src}:${d.reason}`, `dropping bad ipam gossip from ${src}: ${d.reason}`)
      return undefined
    }
    // One broadcast answers every hello of a tick (answering each would be N² broadcasts).
    if (d.msg.hello && this.paxos && this.mayAnswer('hello')) this.broadcast()
    if ((d.msg.want || d.msg.hello || d.msg.paxos) && this.published.ring && this.mayAnswer(`ring:${src}`)) {
      // An observer priming, a peer that just met us, or a late elector still running consensus.
      this.unicast(src, { v: WIRE_VERSION, t: 'ring', ring: this.published.ring })
    }
    if (d.msg.want && this.ring.isEmpty() && this.config.init.kind === 'consensus') this.needRing()
    return this.handleGossip(d.msg, src) ? new IpamGossipData([update]) : undefined
  }

  onGossip(update: Uint8Array): GossipData | undefined {
    const d = decodeGossip(update)
    if (!d.ok) {
      this.logOnce(`bad-gossip:${d.reason}`, `dropping bad ipam gossip: ${d.reason}`)
      return undefined
    }
    return this.handleGossip(d.msg, 'gossip') ? new IpamGossipData([update]) : undefined
  }

  gossip(): GossipData | undefined {
    if (!this.published.ring && !this.published.paxos) return undefined
    return new IpamGossipData([encodeMsg(this.published)])
  }

  // ---- internals: gossip handling ----

  /** Merge a gossiped ring and/or consensus records; returns whether anything was new. */
  private handleGossip(m: GossipMsg, src: string): boolean {
    let changed = false
    if (m.ring) changed = this.applyRingWire(m.ring, src) || changed
    if (m.paxos && this.ring.isEmpty() && this.config.init.kind === 'consensus') {
      if (!this.paxos) this.activateConsensus()
      if (this.paxos!.merge(m.paxos)) {
        changed = true
        this.consensusProgressAt = this.deps.clock.now()
        this.advanceConsensus()
      }
    }
    return changed
  }

  /** Returns whether the ring changed. */
  private applyRingWire(wire: unknown, src: string): boolean {
    const d = Ring.fromWire(wire)
    if (!d.ok) {
      this.logOnce(`bad-ring:${src}`, `dropping invalid ring from ${src}: ${d.reason}`)
      return false
    }
    const wasEmpty = this.ring.isEmpty()
    const res = this.ring.merge(d.ring, this.self, (r) => this.space.hasLeasesIn(r))
    if (!res.ok) {
      this.logOnce(`merge:${src}:${res.code}`, `refusing ring from ${src}: ${res.reason}`)
      return false
    }
    if (!res.changed) return false
    if (wasEmpty && !this.ring.isEmpty()) {
      this.paxos = undefined
      this.log.info(`ring received from ${src}; consensus over`)
    }
    if (res.selfRemoved) {
      this.removedSelf = true
      this.log.error("this peer was removed from the ring by rmpeer on another peer; its ranges are gone and it will not allocate again - run 'weave reset'")
      for (const op of this.pending.splice(0)) op.reject(new IpamError(409, 'this peer was removed by rmpeer'))
    }
    this.space.setOwned(this.ring.ownedBy(this.self))
    this.ring.reportFree(this.self, (r) => this.space.freeIn(r))
    this.persisted().then(() => { if (res.reasserted) this.broadcast() }, () => {})
    this.retryPending()
    return true
  }

  // ---- internals: consensus ----

  private activateConsensus(): void {
    this.paxos = new Paxos(this.self, this.quorum, undefined, this.clusterSize)
    this.log.info(`joining consensus on the initial ring (quorum ${this.quorum})`)
  }

  /** We need a ring (an operation is waiting): start consensus, or ask for it as an observer. */
  private needRing(): void {
    if (!this.ring.isEmpty()) return
    if (this.config.init.kind === 'observer') {
      this.gossipHandle?.gossipBroadcast(new IpamGossipData([encodeMsg({ v: WIRE_VERSION, want: true })]))
      return
    }
    if (this.config.init.kind !== 'consensus') return
    if (!this.paxos) this.activateConsensus()
    // Propose when nobody has yet, or when nothing moved for a while; only needy peers propose.
    const now = this.deps.clock.now()
    const quietSince = Math.max(this.proposedAt, this.consensusProgressAt)
    if (this.paxos!.own.promise && now - quietSince < this.reproposeMs) return
    // Jitter, so that peers that time out together do not keep duelling.
    this.proposedAt = now + this.deps.rng.int(Math.max(1, Math.floor(this.reproposeMs / 2)))
    this.paxos!.propose()
    this.advanceConsensus(true)
  }

  /** Apply the consensus rules; publish our record when it changed (or `publish` is set). */
  private advanceConsensus(publish = false): void {
    const p = this.paxos
    if (!p) return
    const changed = p.think() || publish
    const value = p.result()
    if (value) {
      this.ring.claimForPeers(value)
      this.paxos = undefined
      this.space.setOwned(this.ring.ownedBy(this.self))
      this.ring.reportFree(this.self, (r) => this.space.freeIn(r))
      this.log.info(`consensus reached: ring split among ${value.length} peers`)
      this.persisted().then(() => this.broadcast(), () => {})
      this.retryPending()
      return
    }
    if (changed) this.persisted().then(() => this.broadcast(), () => {})
  }

  // ---- internals: operations ----

  private enqueue(op: Op): void {
    if (this.stopped) return op.reject(new IpamError(503, 'IPAM is stopped'))
    if (this.removedSelf) return op.reject(new IpamError(409, "this peer was removed by rmpeer on another peer; run 'weave reset'"))
    if (!this.tryOp(op)) {
      this.pending.push(op)
      if (this.ring.isEmpty()) this.needRing()
    }
  }

  /** Try to complete `op` now; true when it is finished (answered or failed). */
  private tryOp(op: Op): boolean {
    if (op.kind === 'claim' && !contains(this.universe, op.cidr.ip)) return this.claimOutside(op)
    if (this.ring.isEmpty()) return false
    if (op.kind === 'prime') {
      this.whenPersisted(() => op.resolve())
      return true
    }
    if (op.kind === 'alloc') return this.tryAlloc(op)
    return this.tryClaim(op)
  }

  private tryAlloc(op: Extract<Op, { kind: 'alloc' }>): boolean {
    const sub = cidrRange(op.subnet)
    const have = this.leases.get(op.id).find((l) => contains(sub, l.addr))
    if (have) {
      this.whenPersisted(() => op.resolve({ ip: have.addr, prefix: have.prefix }))
      return true
    }
    const within = intersect(hostRange(op.subnet), this.universe)!
    const addr = this.space.allocateLowest(within, op.id)
    if (addr !== undefined) {
      this.leases.add(op.id, { addr, prefix: op.subnet.prefix })
      this.freeDirty = true
      this.spaceAsks.delete(rangeKey(within))
      this.whenPersisted((err) => (err ? op.reject(new IpamError(500, `could not persist lease: ${err.message}`)) : op.resolve({ ip: addr, prefix: op.subnet.prefix })))
      return true
    }
    this.askForSpace(within)
    return false
  }

  private tryClaim(op: Extract<Op, { kind: 'claim' }>): boolean {
    const addr = op.cidr.ip
    const owner = this.ring.owner(addr)!
    if (owner === this.self) {
      const holder = this.space.holder(addr)
      if (holder === op.id) {
        this.whenPersisted(() => op.resolve())
        return true
      }
      if (holder !== undefined) {
        op.reject(new IpamError(409, `address ${formatIp(addr)} is already owned by ${holder}`))
        return true
      }
      this.space.take(addr, op.id)
      this.leases.add(op.id, { addr, prefix: op.cidr.prefix })
      this.freeDirty = true
      this.whenPersisted((err) => (err ? op.reject(new IpamError(500, `could not persist lease: ${err.message}`)) : op.resolve()))
      return true
    }
    const now = this.deps.clock.now()
    if (now - op.lastSent < this.spaceRequestRetryMs) return false
    if (op.sends >= MAX_CLAIM_SENDS) {
      op.reject(new IpamError(409, `address ${formatIp(addr)} is owned by other peer ${this.describe(owner)}, which did not answer`))
      return true
    }
    op.sends++
    op.lastSent = now
    this.unicast(owner, { v: WIRE_VERSION, t: 'req', start: addr, end: addr + 1 })
    return false
  }

  private claimOutside(op: Extract<Op, { kind: 'claim' }>): boolean {
    const addr = op.cidr.ip
    const holder = this.outside.get(addr)
    if (holder !== undefined && holder !== op.id) {
      op.reject(new IpamError(409, `address ${formatIp(addr)} is already owned by ${holder}`))
      return true
    }
    if (holder === undefined) {
      this.outside.set(addr, op.id)
      this.leases.add(op.id, { addr, prefix: op.cidr.prefix })
    }
    this.whenPersisted(() => op.resolve())
    return true
  }

  private retryPending(): void {
    if (this.pending.length === 0) return
    const ops = this.pending
    this.pending = []
    for (const op of ops) if (!this.tryOp(op)) this.pending.push(op)
  }

  /** Ask a peer with advertised free space in `within` for some; one outstanding ask per range. */
  private askForSpace(within: Range): void {
    const key = rangeKey(within)
    const now = this.deps.clock.now()
    const ask = this.spaceAsks.get(key)
    if (ask && now - ask.at < this.spaceRequestRetryMs) return
    const denied = ask?.denied ?? new Set<PeerName>()
    const donor = this.pickDonor(within, denied)
    if (!donor) {
      this.spaceAsks.set(key, { donor: this.self, at: now, denied: new Set() })
      return
    }
    this.spaceAsks.set(key, { donor, at: now, denied })
    this.unicast(donor, { v: WIRE_VERSION, t: 'req', start: within.start, end: within.end })
  }

  /** A reachable peer chosen at random, weighted by its advertised free space in `within`. */
  private pickDonor(within: Range, exclude: Set<PeerName>): PeerName | undefined {
    const cands: Array<[PeerName, number]> = []
    let total = 0
    for (const [peer, free] of this.ring.freeIn(within)) {
      if (peer === this.self || free <= 0 || exclude.has(peer) || this.ring.removed.has(peer) || !this.view.isReachable(peer)) continue
      cands.push([peer, free])
      total += free
    }
    if (total === 0) return undefined
    let x = this.deps.rng.next() * total
    for (const [peer, free] of cands) {
      x -= free
      if (x < 0) return peer
    }
    return cands[cands.length - 1][0]
  }

  private handleSpaceRequest(src: PeerName, want: Range): void {
    const deny = () => this.unicast(src, { v: WIRE_VERSION, t: 'denied', start: want.start, end: want.end })
    if (this.ring.isEmpty() || this.removedSelf || this.ring.removed.has(src) || want.end <= want.start) return deny()
    const within = intersect(want, this.universe)
    const block = within && this.space.donation(within)
    if (!block) return deny()
    this.ring.grant(this.self, block, src, (r) => this.space.freeIn(r))
    this.space.setOwned(this.ring.ownedBy(this.self))
    this.ring.reportFree(this.self, (r) => this.space.freeIn(r))
    this.log.debug(`donating ${formatRange(block)} to ${src}`)
    // The donation leaves only once it is on disk: a restart must not make us think we still own it.
    this.persisted().then(() => {
      this.unicast(src, { v: WIRE_VERSION, t: 'ring', ring: this.published.ring! })
      this.broadcast()
    }, () => {})
  }

  private handleDenied(src: PeerName, r: Range): void {
    if (r.end - r.start === 1) {
      // A claim of one address: the owner has it in use.
      const ops = this.pending
      this.pending = []
      for (const op of ops) {
        if (op.kind === 'claim' && op.cidr.ip === r.start && this.ring.owner(r.start) === src) {
          op.reject(new IpamError(409, `address ${formatIp(r.start)} is owned by other peer ${this.describe(src)}`))
        } else this.pending.push(op)
      }
      return
    }
    const ask = this.spaceAsks.get(rangeKey(r))
    if (ask) {
      ask.denied.add(src)
      ask.at = -Infinity
    }
    this.retryPending()
  }

  private expire(now: number): void {
    const ops = this.pending
    this.pending = []
    for (const op of ops) {
      if (now < op.deadline) {
        this.pending.push(op)
        continue
      }
      const why = this.ring.isEmpty() ? `no IP allocation ring yet (${this.statusText()})` : this.statusText()
      op.reject(new IpamError(503, `timed out: ${why}`))
    }
  }

  private scheduleTick(): void {
    if (this.stopped) return
    this.stopTimer = this.deps.clock.setTimer(this.tickMs, () => {
      this.tick()
      this.scheduleTick()
    })
  }

  private tick(): void {
    const now = this.deps.clock.now()
    this.expire(now)
    this.releaseDead(now)
    if (this.ring.isEmpty() && this.pending.length > 0) this.needRing()
    if (this.paxos && !this.paxos.allowPartial) {
      // A quorum promised but not every launch peer: after a grace period go ahead with the
      // quorum (the others get space by donation later).
      if (this.paxos.promisesForMine() < this.quorum) this.quorumSeenAt = undefined
      else if (this.quorumSeenAt === undefined) this.quorumSeenAt = now
      else if (now - this.quorumSeenAt >= this.partialGraceMs) {
        this.paxos.allowPartial = true
        this.advanceConsensus()
      }
    }
    this.retryPending()
    if (this.freeDirty && !this.ring.isEmpty()) {
      this.freeDirty = false
      if (this.ring.reportFree(this.self, (r) => this.space.freeIn(r))) this.persisted().then(() => this.broadcast(), () => {})
    }
  }

  // ---- internals: leases ----

  private addLease(id: string, c: Cidr): void {
    if (!contains(this.universe, c.ip)) this.outside.set(c.ip, id)
    else {
      const prev = this.space.holder(c.ip)
      if (prev !== undefined && prev !== id) throw new Error(`IPAM state in ${this.deps.store.where}: ${formatIp(c.ip)} leased to both ${prev} and ${id}`)
      this.space.restoreLease(c.ip, id)
    }
    this.leases.add(id, { addr: c.ip, prefix: c.prefix }, false)
  }

  // ---- internals: persistence and sending ----

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

  private snapshotGossip(): GossipMsg {
    return {
      v: WIRE_VERSION,
      ...(this.ring.isEmpty() ? {} : { ring: this.ring.toWire() }),
      ...(this.paxos && this.ring.isEmpty() ? { paxos: this.paxos.toWire() } : {}),
    }
  }

  /** Resolves once the current state is on disk (rejects if the write failed). */
  private persisted(): Promise<void> {
    return this.commit.durable()
  }

  /** Run `fn` once the current state is on disk; concurrent callers share one write. */
  private whenPersisted(fn: (err?: Error) => void): void {
    this.commit.whenDurable(fn)
  }

  private broadcast(): void {
    if (!this.gossipHandle || this.stopped) return
    const data = this.gossip()
    if (data) this.gossipHandle.gossipBroadcast(data)
  }

  private unicast(dst: PeerName, m: UnicastMsg): void {
    if (!this.gossipHandle || this.stopped) return
    this.gossipHandle.gossipUnicast(dst, encodeMsg(m))
  }

  // ---- internals: peers ----

  private resolvePeer(text: string): PeerName {
    const known = new Set<string>([...this.ring.shares().keys(), ...this.view.peers().map((p) => p.name)])
    if (known.has(text.toLowerCase())) return text.toLowerCase() as PeerName
    const byNick = this.view.peers().filter((p) => p.nickname === text)
    if (byNick.length === 1) return byNick[0].name
    if (byNick.length > 1) throw new IpamError(400, `nickname ${text} is ambiguous; use the peer name`)
    throw new IpamError(404, `unknown peer ${text}`)
  }

  private pickHeir(): PeerName | undefined {
    const reachable = this.view.peers().map((p) => p.name).filter((p) => p !== this.self && this.view.isReachable(p) && !this.ring.removed.has(p))
    const withEntries = reachable.filter((p) => this.ring.shares().has(p)).sort()
    return withEntries[0] ?? reachable.sort()[0]
  }

  describe(peer: PeerName): string {
    const nick = this.view.peers().find((p) => p.name === peer)?.nickname
    return nick ? `${peer}(${nick})` : peer
  }

  /** At most one answer per `key` (kind and peer) per tick, so a chatty peer cannot make us flood. */
  private mayAnswer(key: string): boolean {
    const now = this.deps.clock.now()
    const last = this.answeredAt.get(key) ?? -Infinity
    if (now - last < this.tickMs) return false
    this.answeredAt.set(key, now)
    return true
  }

  private logOnce(key: string, msg: string): void {
    this.loggedOnce.once(key, msg)
  }
}

function short(id: string): string {
  return /^[0-9a-f]{64}$/.test(id) ? id.slice(0, 12) : id
}

function rangeKey(r: Range): string {
  return `${r.start}-${r.end}`
}
