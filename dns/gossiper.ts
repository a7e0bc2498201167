/**
 * The `dns` gossip channel's receiving side: decodes, refuses gossip from a peer whose clock is
 * too far from ours (tombstone ages are measured in the owner's clock, so a skewed peer would
 * collect or keep them at the wrong time), merges into Records, and hands back what was new.
 */
import type { Gossip, GossipData, Gossiper, PeerName } from '../router/mesh'
import type { Clock, Logger } from '../router/deps'
import type { Records, Entry } from './records'
import { DnsGossipData, decodeDnsMsg } from './wire'

export interface DnsGossiperDeps {
  records: Records
  clock: Clock
  logger: Logger
  self: string
  maxClockSkewMs: number
  isKnownPeer(origin: string): boolean
  /**
   * Entries of owners not (yet) in our topology. Gossip on a new connection can arrive before the
   * topology says who is there (after a heal), so these are held, not dropped.
   */
  onUnknownOrigin(entries: Entry[]): void
  /** Entries of ours we re-issued to outbid stale gossip: broadcast them to everyone. */
  onOwnChanged(entries: Entry[]): void
  /** Anything changed (for status/metrics). */
  onChanged(): void
}

export interface GossipCounters { refusedSkew: number; malformed: number; merged: number }

export class DnsGossiper implements Gossiper {
  readonly counters: GossipCounters = { refusedSkew: 0, malformed: 0, merged: 0 }
  private readonly skewLogged = new Set<string>()
  constructor(private readonly d: DnsGossiperDeps) {}

  onGossipUnicast(): void { /* the dns channel has no unicast messages */ }

  onGossipBroadcast(src: PeerName, update: Uint8Array): GossipData | undefined {
    return this.receive(update, src)
  }

  onGossip(update: Uint8Array): GossipData | undefined {
    return this.receive(update, 'a neighbour')
  }

  gossip(): GossipData | undefined {
    const all = this.d.records.all()
    return all.length ? DnsGossipData.of(all, () => this.d.clock.now()) : undefined
  }

  /** Data for our own changes. */
  data(entries: Entry[]): DnsGossipData {
    return DnsGossipData.of(entries, () => this.d.clock.now())
  }

  private receive(update: Uint8Array, from: string): GossipData | undefined {
    const r = decodeDnsMsg(update)
    if (!r.ok) {
      this.d.logger.warn(`dropping DNS gossip from ${from}: ${r.reason}`)
      this.counters.malformed++
      return undefined
    }
    const now = this.d.clock.now()
    const skew = r.msg.sentAt - now
    if (Math.abs(skew) > this.d.maxClockSkewMs) {
      this.counters.refusedSkew++
      if (!this.skewLogged.has(from)) {
        this.skewLogged.add(from)
        this.d.logger.warn(`refusing DNS gossip from ${from}: its clock is ${Math.round(skew / 1000)} s off ours (limit ${Math.round(this.d.maxClockSkewMs / 1000)} s); fix the clocks (NTP)`)
      }
      return undefined
    }
    this.skewLogged.delete(from)
    const unknown = r.msg.entries.filter((e) => e.origin !== this.d.self && !this.d.isKnownPeer(e.origin))
    if (unknown.length) this.d.onUnknownOrigin(unknown)
    const changed = this.d.records.merge(r.msg.entries, now, (o) => this.d.isKnownPeer(o))
    if (!changed.length) return undefined
    this.counters.merged += changed.length
    const own = changed.filter((e) => e.origin === this.d.self)
    if (own.length) this.d.onOwnChanged(own)
    this.d.onChanged()
    const others = changed.filter((e) => e.origin !== this.d.self)
    return others.length ? this.data(others) : undefined
  }
}

export type { Gossip }
