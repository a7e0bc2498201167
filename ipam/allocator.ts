/**
 * The IPAM state machine of one peer: the ring, our space and leases, consensus, pending
 * operations, and the `ipam` gossip channel. This class is its public face and its clock; the
 * work is done by one file per concept, over the shared AllocatorState (allocator-state.ts):
 * operations.ts (allocate, claim, release, the queue), donation.ts (space between peers),
 * bootstrap.ts (restore, seed, consensus), rmpeer.ts, hand-off.ts (reset), gossiper.ts.
 *
 * Ordering rule (what makes a SIGKILL harmless): state changes are applied synchronously, and
 * everything that depends on them leaving the process -- an HTTP answer, a donation's ring, our
 * consensus record -- waits until that state is on disk. Writes are group-committed: requests
 * arriving while a write is in flight share the next write.
 */
import type { GossipData, Gossiper, PeerName } from '../router/mesh'
import type { Cidr, Range } from './address'
import type { AllocatorConfig, AllocatorDeps, InitMode } from './allocator-config'
import { AllocatorState } from './allocator-state'
import * as bootstrap from './bootstrap'
import { IpamError } from './errors'
import * as gossiper from './gossiper'
import * as handOff from './hand-off'
import * as ops from './operations'
import type { IpamState } from './persistence'
import type { RingView } from './ring'
import * as rmpeer from './rmpeer'
import type { Space } from './space'

export { IpamError }
export type { AllocatorConfig, AllocatorDeps, InitMode }

export class Allocator implements Gossiper {
  private readonly s: AllocatorState
  private stopTimer: (() => void) | undefined
  private unsubscribePeers: (() => void) | undefined

  constructor(readonly config: AllocatorConfig, deps: AllocatorDeps) {
    this.s = new AllocatorState(config, deps)
    this.s.retryPending = () => ops.retryPending(this.s)
  }

  get self(): PeerName {
    return this.s.self
  }

  get universe(): Range {
    return this.s.universe
  }

  /** The ring, to read: only the allocator's parts change it. */
  get ring(): RingView {
    return this.s.ring
  }

  /** Our owned ranges and the leases in them (tests check its invariants). */
  get space(): Space {
    return this.s.space
  }

  get clusterSize(): number {
    return this.s.clusterSize
  }

  get quorum(): number {
    return this.s.quorum
  }

  // ---- lifecycle ----

  /** Restore saved state (refusing a foreign one by throwing). */
  restore(state: IpamState | undefined): void {
    bootstrap.restore(this.s, state)
  }

  /** Register the channel and start ticking. */
  start(): void {
    if (this.config.disabled) {
      this.scheduleTick() // the die grace of claimed leases still runs
      return
    }
    this.s.gossipHandle = this.s.deps.host.newGossip('ipam', this)
    this.unsubscribePeers = this.s.view.onPeersChanged(() => gossiper.announce(this.s))
    this.scheduleTick()
    gossiper.announce(this.s)
  }

  /** Stop ticking, fail pending requests, and resolve once the last write is done. */
  async stop(): Promise<void> {
    this.s.stopped = true
    this.stopTimer?.()
    this.unsubscribePeers?.()
    this.s.announceTimer?.()
    this.s.failPending(new IpamError(503, 'IPAM is shutting down'))
    await this.s.commit.idle()
    await this.s.deps.store.close?.()
  }

  private scheduleTick(): void {
    if (this.s.stopped) return
    this.stopTimer = this.s.deps.clock.setTimer(this.s.tickMs, () => {
      this.tick()
      this.scheduleTick()
    })
  }

  private tick(): void {
    const s = this.s
    const now = s.now()
    ops.expire(s, now)
    ops.releaseDead(s, now)
    if (s.ring.isEmpty() && s.pending.length > 0) bootstrap.needRing(s)
    bootstrap.allowPartialQuorum(s, now)
    ops.retryPending(s)
    if (s.freeDirty && !s.ring.isEmpty()) {
      s.freeDirty = false
      if (s.ring.reportFree(s.self, s.freeOf)) s.persisted().then(() => s.broadcast(), () => {})
    }
  }

  // ---- public operations (the API calls these; operations.ts) ----

  /** Allocate an address for `id` in `subnet` (default subnet when undefined); idempotent. */
  allocate(id: string, subnet: Cidr = this.config.defaultSubnet): Promise<Cidr> {
    return ops.allocate(this.s, id, subnet)
  }

  /** Claim `cidr.ip` for `id` (its subnet prefix kept for lookups); idempotent for the same ID. */
  claim(id: string, cidr: Cidr): Promise<void> {
    return ops.claim(this.s, id, cidr)
  }

  /** Resolve once the ring exists (triggering consensus if needed): `weave prime`. */
  prime(): Promise<void> {
    return ops.prime(this.s)
  }

  /** Addresses of `id`, optionally only those inside `subnet`. */
  lookup(id: string, subnet?: Cidr): Cidr[] {
    return ops.lookup(this.s, id, subnet)
  }

  /** Every ID with its addresses. */
  owned(): Array<{ containerid: string; addrs: string[] }> {
    return ops.owned(this.s)
  }

  /** Release `addr` of `id`, or all of its addresses; false when there was nothing to release. Resolves once persisted. */
  release(id: string, addr?: number): Promise<boolean> {
    return ops.release(this.s, id, addr)
  }

  /** The container `id` died: its leases go after the grace unless it shows a sign of life first. */
  containerDied(id: string): void {
    if (this.s.leases.get(id).length) this.s.deaths.died(id, this.s.now())
  }

  /** The container `id` (re)started: it keeps its leases. */
  containerStarted(id: string): void {
    this.s.deaths.alive(id)
  }

  /** Leases of dead containers waiting for their grace to end. */
  dyingCount(): number {
    return this.s.deaths.size
  }

  /** rmpeer: take over every range of a dead peer (rmpeer.ts). */
  removePeer(peerOrNick: string, also: string[] = []): Promise<{ peer: PeerName; addresses: number }> {
    return rmpeer.removePeer(this.s, peerOrNick, also)
  }

  /** weave reset: hand our ranges to a live peer, confirmed (hand-off.ts); resolves with the heir. */
  reset(): Promise<PeerName | undefined> {
    return handOff.reset(this.s)
  }

  // ---- status ----

  /** One-line state as in `weave status`: idle, awaiting consensus (...), ready, ... */
  statusText(): string {
    return this.s.statusText()
  }

  isRemoved(): boolean {
    return this.s.removedSelf
  }

  activeCount(): number {
    return this.s.space.leaseCount() + this.s.outside.size
  }

  pendingCount(): number {
    return this.s.pending.length
  }

  /** Pending operations by kind (Weave's weave_ipam_pending_allocates / _claims). */
  /** Weave's Paxos status while the first ring awaits consensus (an observer priming: not an elector). */
  paxosStatus(): { Elector: boolean; KnownNodes: number; Quorum: number } | undefined {
    const s = this.s
    if (!s.ring.isEmpty() || s.config.disabled) return undefined
    if (s.config.init.kind === 'observer') return s.pending.length ? { Elector: false, KnownNodes: 0, Quorum: 0 } : undefined
    return s.paxos && { Elector: true, KnownNodes: s.paxos.known(), Quorum: s.quorum }
  }

  /** Waiting allocations (container IDs) and claims (ID and address), as Weave's report lists them. */
  pendingOps(): { allocates: string[]; claims: Array<{ id: string; cidr: Cidr }> } {
    const allocates: string[] = []
    const claims: Array<{ id: string; cidr: Cidr }> = []
    for (const op of this.s.pending) {
      if (op.kind === 'alloc') allocates.push(op.id)
      else if (op.kind === 'claim') claims.push({ id: op.id, cidr: op.cidr })
    }
    return { allocates, claims }
  }

  pendingByKind(): { allocates: number; claims: number } {
    let allocates = 0
    for (const op of this.s.pending) if (op.kind === 'alloc') allocates++
    return { allocates, claims: this.s.pending.length - allocates }
  }

  describe(peer: PeerName): string {
    return this.s.describe(peer)
  }

  // ---- Gossiper (gossiper.ts) ----

  onGossipUnicast(src: PeerName, bytes: Uint8Array): void {
    gossiper.onGossipUnicast(this.s, src, bytes)
  }

  onGossipBroadcast(src: PeerName, update: Uint8Array): GossipData | undefined {
    return gossiper.onGossipBroadcast(this.s, src, update)
  }

  onGossip(update: Uint8Array): GossipData | undefined {
    return gossiper.onGossip(this.s, update)
  }

  gossip(): GossipData | undefined {
    return this.s.gossip()
  }
}
