/**
 * The mesh's own gossip channel, `topology`:
 * - our own changes are batched for `topologyBatchMs` and broadcast as a delta along our
 *   broadcast tree (exactly once per peer when views agree); news learnt from a neighbour's
 *   answer (a join, a healed partition) is broadcast along our own tree the same way, instead
 *   of Weave's relays to 2·log2 N random neighbours per hop, which multiply the bytes;
 * - a new connection starts with a digest each way (name, uid, version of every record held);
 *   each side answers with exactly what the other lacks, so joining costs O(N), not O(N²);
 * - a delta that does not follow on from what we hold is a gap: we ask its sender for the rest;
 * - anti-entropy: every `antiEntropyMs` a digest goes to one random neighbour (repairs what a
 *   broadcast missed while views disagreed);
 * - after a change: routes recomputed, unreachable peers collected, the connection maker run,
 *   and subsystems told that the peers changed.
 */
import { LogOnce } from '../deps'
import type { ChannelGossiper } from './gossip-channel'
import type { GossipData, PeerName } from './gossip-contract'
import type { MeshCore } from './mesh-core'
import { TOPOLOGY_CHANNEL } from './mesh-types'
import { combineUpdates, decodeTopologyMessage, encodeDigest, encodeUpdate, type RecordUpdate } from './topology'

/** Immutable: the same object may be pending for several neighbours, so it encodes once. */
class TopologyData implements GossipData {
  private encoded: Uint8Array[] | undefined
  constructor(readonly updates: RecordUpdate[]) {}
  encode(): Uint8Array[] {
    return (this.encoded ??= this.updates.length ? [encodeUpdate(this.updates)] : [])
  }
  merge(other: GossipData): GossipData {
    return other instanceof TopologyData ? new TopologyData(combineUpdates(this.updates, other.updates)) : this
  }
}

export class TopologyGossip {
  private lastSentVersion = 0
  // keyed by the sender a message names (a peer's choice): bounded
  private readonly warnedBadFrom: LogOnce
  private readonly peersChangedFns = new Set<() => void>()
  /** Bad topology messages received, by any peer. */
  badMessages = 0

  constructor(private readonly core: MeshCore) {
    this.warnedBadFrom = new LogOnce((m) => core.log.warn(m), 1024)
    core.channels.newGossip(TOPOLOGY_CHANNEL, this.gossiper())
  }

  /** Subsystems (IPAM, DNS) hear when the set of peers or their reachability changed. */
  onPeersChanged(fn: () => void): () => void {
    this.peersChangedFns.add(fn)
    return () => this.peersChangedFns.delete(fn)
  }

  /** Our own record changed: re-route now, and broadcast the change after the batching delay. */
  ownChanged(): void {
    this.topologyChanged(true)
    this.core.timers.schedule('own', this.core.opt.topologyBatchMs, () => this.sendOwnUpdate())
  }

  /** Tell a new neighbour what we hold; its answer carries what we lack. */
  greet(peer: PeerName): void {
    const { channels, identity, topology } = this.core
    channels.sendUnicast(TOPOLOGY_CHANNEL, identity.name, peer, encodeDigest(topology.digest()))
  }

  /** Start the periodic digest to one random neighbour (jittered, so peers started together do not gossip in lockstep). */
  startAntiEntropy(): void {
    this.core.timers.schedule('anti-entropy', this.core.opt.antiEntropyMs * (0.5 + this.core.rng.next() * 0.5), () => this.antiEntropy())
  }

  private gossiper(): ChannelGossiper {
    const { channels, identity, topology } = this.core
    return {
      onGossip: (update, from) => this.applyUpdateBytes(update, from),
      onGossipBroadcast: (src, update) => this.applyUpdateBytes(update, src),
      onGossipUnicast: (src, msg) => {
        const m = decodeTopologyMessage(msg)
        if (!m.ok) return this.badMessage(src, m.reason)
        if (m.kind === 'digest') {
          const lack = topology.deltaForDigest(m.digest, m.listedOnly)
          if (lack.length) channels.sendUnicast(TOPOLOGY_CHANNEL, identity.name, src, encodeUpdate(lack))
          return
        }
        // News a neighbour brought (joining, a healed partition) goes along our own tree: every
        // peer that knows our part of the topology can compute it, so each gets it once.
        // The neighbour's own record is left out: it broadcasts its own changes itself, and a
        // joiner answering N new neighbours would otherwise be re-broadcast N times.
        const news = this.applyUpdates(m.updates, src)
        const relay = news?.updates.filter((u) => u.rec.name !== src)
        if (relay?.length) channels.broadcast(TOPOLOGY_CHANNEL, new TopologyData(relay), src)
      },
      gossip: () => undefined, // anti-entropy is digest-based, see antiEntropy()
    }
  }

  private badMessage(from: PeerName, reason: string): undefined {
    this.badMessages++
    this.warnedBadFrom.once(from, `bad topology message from ${from}: ${reason} (further ones from it not logged)`)
    return undefined
  }

  private applyUpdateBytes(bytes: Uint8Array, from: PeerName): GossipData | undefined {
    const m = decodeTopologyMessage(bytes)
    if (!m.ok) return this.badMessage(from, m.reason)
    if (m.kind !== 'update') return this.badMessage(from, 'digest outside unicast')
    return this.applyUpdates(m.updates, from)
  }

  /** Merge, react, and return what was new (to relay). */
  private applyUpdates(updates: RecordUpdate[], from: PeerName): TopologyData | undefined {
    const { channels, identity, topology, timers } = this.core
    const res = topology.merge(updates)
    if (res.gaps.length) channels.sendUnicast(TOPOLOGY_CHANNEL, identity.name, from, encodeDigest(res.gaps, true))
    if (res.selfBumped) {
      this.lastSentVersion = 0 // others hold an old incarnation of us: send our whole record
      timers.schedule('own', 0, () => this.sendOwnUpdate())
    }
    if (!res.delta.length) return undefined
    this.topologyChanged()
    return new TopologyData(res.delta)
  }

  private sendOwnUpdate(): void {
    const { channels, topology } = this.core
    const d = topology.ownDeltaSince(this.lastSentVersion)
    this.lastSentVersion = topology.self().version
    // Along our broadcast tree: each peer gets it once when views agree (a star in a full mesh).
    channels.broadcast(TOPOLOGY_CHANNEL, new TopologyData([d]))
  }

  /**
   * Our own changes take effect in the routes at once; merged ones are coalesced for
   * `routeDelayMs` (Weave: 100 ms), since a burst of updates would otherwise rebuild the graph
   * per message.
   */
  private topologyChanged(own = false): void {
    const { identity, log, opt, routes, rng, timers, topology } = this.core
    if (own) routes.invalidate()
    else timers.schedule('routes', opt.routeDelayMs, () => {
      routes.invalidate()
      const id = topology.resolveShortIdCollision(rng)
      if (id !== undefined) {
        identity.setShortId(id)
        log.info(`short ID collision: now using ${id}`)
        this.ownChanged()
      }
    })
    // Our own change (a connection gone) may have cut the last path to a peer: collect it now, so
    // a killed peer leaves the peer list at once. Merged changes are coalesced like routes.
    if (own) timers.reschedule('gc', 0, () => this.runGc())
    else timers.schedule('gc', opt.gcDelayMs, () => this.runGc())
    timers.schedule('maker', own ? 0 : opt.routeDelayMs, () => this.core.hooks.runMaker())
    timers.schedule('peers-changed', opt.routeDelayMs, () => this.notifyPeersChanged())
  }

  private notifyPeersChanged(): void {
    for (const fn of [...this.peersChangedFns]) {
      try {
        fn()
      } catch (err) {
        this.core.log.warn(`peers-changed listener failed: ${(err as Error).message}`)
      }
    }
  }

  private runGc(): void {
    const { clock, log, opt, timers, topology } = this.core
    const removed = topology.gc(clock.now(), opt.gcGraceMs)
    if (removed.length) {
      log.debug(`collected ${removed.length} unreachable peer(s)`)
      this.topologyChanged()
    }
    if (topology.hasUnreachablePending()) timers.schedule('gc', opt.gcGraceMs, () => this.runGc())
  }

  private antiEntropy(): void {
    const { live, opt, rng, timers } = this.core
    const ns = [...live.keys()]
    if (ns.length) this.greet(ns[rng.int(ns.length)])
    timers.schedule('anti-entropy', opt.antiEntropyMs * (0.75 + rng.next() * 0.5), () => this.antiEntropy())
  }
}
