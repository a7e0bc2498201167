/**
 * Gossip channels: named channels over the mesh's connections, each with one Gossiper here.
 *
 * - unicast: hop by hop along the gossip unicast routes;
 * - broadcast: along the source's broadcast tree, each hop merging and relaying what was new;
 * - neighbour subset: to min(2·log2 N, neighbours) random neighbours; a receiver relays what
 *   was new to it the same way;
 * - unknown channels get a surrogate that relays without understanding.
 *
 * Sends go through per-(connection, channel) senders that merge pending data until the next
 * flush (one timer per host), so a burst of updates leaves as one message per neighbour.
 */
import { BoundedMap, type Clock, type Logger, type Rng } from '../deps'
import type { MeshMessage } from './connection-contract'
import type { Gossip, GossipData, Gossiper, PeerName } from './gossip-contract'

/** Gossiper as the channel calls it: with the sending neighbour for plain gossip (a contract Gossiper ignores it). */
export interface ChannelGossiper {
  onGossipUnicast(src: PeerName, msg: Uint8Array): void
  onGossipBroadcast(src: PeerName, update: Uint8Array): GossipData | undefined
  gossip(): GossipData | undefined
  onGossip(update: Uint8Array, from: PeerName): GossipData | undefined
}

/** What the channels need from the router. */
export interface ChannelHostDeps {
  self: PeerName
  clock: Clock
  rng: Rng
  logger: Logger
  /** Gossip next hop toward `dst`, or undefined when unreachable. */
  nextHop(dst: PeerName): PeerName | undefined
  /** Our children in `src`'s broadcast tree. */
  broadcastChildren(src: PeerName): PeerName[]
  /** Peers we have a connection to. */
  neighbours(): PeerName[]
  /** Number of peers in the topology (for the fan-out). */
  peerCount(): number
  /** Put a message on the connection to `peer`; false when there is none. */
  send(peer: PeerName, msg: MeshMessage): boolean
}

/** Raw payloads as GossipData (for the surrogate and for unicast): merging concatenates. */
export class BytesGossipData implements GossipData {
  constructor(readonly parts: Uint8Array[]) {}
  encode(): Uint8Array[] {
    return this.parts
  }
  merge(other: GossipData): GossipData {
    return new BytesGossipData([...this.parts, ...other.encode()])
  }
}

/** Fan-out of neighbour-subset gossip: 2·log2 N, as Weave. */
export function fanout(peerCount: number, neighbours: number): number {
  return Math.min(neighbours, Math.max(1, Math.ceil(2 * Math.log2(Math.max(2, peerCount)))))
}

type SendKind = 'gossip' | 'broadcast'

/** Unknown channels remembered at once (Weave has two channels; a peer inventing more gets LRU). */
const MAX_SURROGATES = 256
/** Distinct updates one surrogate remembers within its window. */
const MAX_SURROGATE_SEEN = 4096

interface PendingSend {
  peer: PeerName
  channel: string
  kind: SendKind
  src: PeerName
  data: GossipData
}

export class GossipChannels {
  private readonly channels = new Map<string, ChannelGossiper>()
  /** One per channel name a peer used that nobody here registered: the peer picks the names, so bounded. */
  private readonly surrogates = new BoundedMap<string, SurrogateGossiper>(MAX_SURROGATES)
  private readonly pending = new Map<string, PendingSend>()
  private flushCancel: (() => void) | undefined
  private readonly log: Logger

  constructor(private readonly deps: ChannelHostDeps, private readonly surrogateWindowMs = 30_000) {
    this.log = deps.logger
  }

  /** Register the gossiper of `channel`; returns the handle it sends with. */
  newGossip(channel: string, gossiper: Gossiper | ChannelGossiper): Gossip {
    if (this.channels.has(channel)) throw new Error(`gossip channel ${channel} registered twice`)
    this.channels.set(channel, gossiper)
    const surrogate = this.surrogates.get(channel)
    this.surrogates.delete(channel)
    this.catchUp(channel, gossiper, surrogate)
    return {
      gossipUnicast: (dst, msg) => this.sendUnicast(channel, this.deps.self, dst, msg),
      gossipBroadcast: (update) => this.relayBroadcast(channel, this.deps.self, update),
      gossipNeighbourSubset: (update) => this.neighbourSubset(channel, update, undefined),
    }
  }

  /**
   * A channel registered after connections came up (a subsystem that starts after the mesh, as
   * DNS and IPAM do in the daemon) missed the full state each neighbour sent on connect, and its
   * neighbours have not had ours: without this both sides wait for the periodic gossip (30 s).
   * What neighbours sent meanwhile was kept by the channel's surrogate: hand it over, then send
   * our state to every neighbour.
   */
  private catchUp(channel: string, gossiper: Gossiper | ChannelGossiper, surrogate: SurrogateGossiper | undefined): void {
    try {
      for (const u of surrogate?.recent() ?? []) gossiper.onGossip(u.bytes, u.from)
      const data = gossiper.gossip()
      if (data) for (const n of this.deps.neighbours()) this.queue(n, channel, 'gossip', this.deps.self, data)
    } catch (err) {
      this.log.warn(`gossip channel ${channel}: catching up on registration failed: ${(err as Error).message}`)
    }
  }

  channelNames(): string[] {
    return [...this.channels.keys()]
  }

  /** Relay `update` to a random subset of neighbours, never back to `exclude`. */
  neighbourSubset(channel: string, update: GossipData, exclude: PeerName | undefined): void {
    const ns = this.deps.neighbours().filter((n) => n !== exclude)
    const k = fanout(this.deps.peerCount(), ns.length)
    // Partial Fisher-Yates: the first k of a random permutation.
    for (let i = 0; i < k; i++) {
      const j = i + this.deps.rng.int(ns.length - i)
      ;[ns[i], ns[j]] = [ns[j], ns[i]]
      this.queue(ns[i], channel, 'gossip', this.deps.self, update)
    }
  }

  /** Send `update` to exactly `peers` (e.g. the full state to one new neighbour). */
  gossipTo(peer: PeerName, channel: string, update: GossipData): void {
    this.queue(peer, channel, 'gossip', this.deps.self, update)
  }

  sendUnicast(channel: string, src: PeerName, dst: PeerName, msg: Uint8Array): boolean {
    if (dst === this.deps.self) return false
    // A neighbour is reached directly even before routes catch up with the new connection.
    const hop = this.deps.neighbours().includes(dst) ? dst : this.deps.nextHop(dst)
    if (!hop) return false
    return this.deps.send(hop, { type: 'gossip-unicast', channel, src, dst, payload: msg })
  }

  /** Broadcast from us along our broadcast tree (skipping `exclude`, who told us). */
  broadcast(channel: string, update: GossipData, exclude?: PeerName): void {
    for (const child of this.deps.broadcastChildren(this.deps.self)) {
      if (child !== exclude) this.queue(child, channel, 'broadcast', this.deps.self, update)
    }
  }

  private relayBroadcast(channel: string, src: PeerName, update: GossipData): void {
    for (const child of this.deps.broadcastChildren(src)) this.queue(child, channel, 'broadcast', src, update)
  }

  /** Full state of every channel to a new neighbour, and periodically to random ones. */
  gossipAllTo(peer: PeerName): void {
    for (const [name, g] of this.channels) {
      const data = g.gossip()
      if (data) this.queue(peer, name, 'gossip', this.deps.self, data)
    }
  }

  /** Periodic gossip: each channel's full state to a random neighbour subset. */
  periodic(): void {
    for (const [name, g] of this.channels) {
      const data = g.gossip()
      if (data) this.neighbourSubset(name, data, undefined)
    }
  }

  /** Handle a gossip message that arrived on the connection to `from`. */
  handle(from: PeerName, msg: MeshMessage): void {
    if (msg.type === 'overlay') return
    const g = this.channels.get(msg.channel) ?? this.surrogate(msg.channel)
    try {
      switch (msg.type) {
        case 'gossip-unicast':
          if (msg.dst === this.deps.self) g.onGossipUnicast(msg.src, msg.payload)
          else this.sendUnicast(msg.channel, msg.src, msg.dst, msg.payload)
          return
        case 'gossip-broadcast': {
          const news = g.onGossipBroadcast(msg.src, msg.payload)
          if (news) this.relayBroadcast(msg.channel, msg.src, news)
          return
        }
        case 'gossip': {
          const news = g.onGossip(msg.payload, from)
          if (news) this.neighbourSubset(msg.channel, news, from)
          return
        }
      }
    } catch (err) {
      // A gossiper that throws on a peer's input is a bug there; keep the router alive.
      this.log.warn(`gossip channel ${msg.channel}: message from ${from} failed: ${(err as Error).message}`)
    }
  }

  private surrogate(channel: string): SurrogateGossiper {
    let s = this.surrogates.get(channel)
    if (!s) {
      s = new SurrogateGossiper(this.deps.clock, this.surrogateWindowMs)
      this.surrogates.set(channel, s)
      if (this.surrogates.evicted === 1 || (this.surrogates.evicted > 0 && this.surrogates.evicted % 1000 === 0)) {
        this.log.warn(`more than ${MAX_SURROGATES} unknown gossip channels from peers: forgetting the oldest (${this.surrogates.evicted} so far)`)
      }
    }
    return s
  }

  private queue(peer: PeerName, channel: string, kind: SendKind, src: PeerName, data: GossipData): void {
    const key = `${peer}|${channel}|${kind}|${src}`
    const cur = this.pending.get(key)
    if (cur) cur.data = cur.data.merge(data)
    else this.pending.set(key, { peer, channel, kind, src, data })
    this.flushCancel ??= this.deps.clock.setTimer(0, () => this.flush())
  }

  /** Send everything pending, in queueing order. */
  flush(): void {
    this.flushCancel?.()
    this.flushCancel = undefined
    const all = [...this.pending.values()]
    this.pending.clear()
    for (const p of all) {
      for (const payload of p.data.encode()) {
        const msg: MeshMessage =
          p.kind === 'broadcast'
            ? { type: 'gossip-broadcast', channel: p.channel, src: p.src, payload }
            : { type: 'gossip', channel: p.channel, src: p.src, payload }
        this.deps.send(p.peer, msg)
      }
    }
  }

  /** Drop pending sends (on stop). */
  clear(): void {
    this.flushCancel?.()
    this.flushCancel = undefined
    this.pending.clear()
  }
}

/**
 * Stand-in for a channel nobody here registered: ignores unicasts to us (transit ones are relayed
 * before reaching it), relays broadcasts as they are, and relays gossip unless the same bytes
 * passed within the window (so two surrogates do not bounce a message forever).
 */
export class SurrogateGossiper implements ChannelGossiper {
  /** Bounded too: a flood of distinct updates within the window keeps only the newest. */
  private readonly seen = new BoundedMap<string, { at: number; bytes: Uint8Array; from: PeerName }>(MAX_SURROGATE_SEEN)
  constructor(private readonly clock: Clock, private readonly windowMs: number) {}

  onGossipUnicast(): void {}
  onGossipBroadcast(_src: PeerName, update: Uint8Array): GossipData | undefined {
    return new BytesGossipData([update])
  }
  gossip(): GossipData | undefined {
    return undefined
  }
  onGossip(update: Uint8Array, from: PeerName): GossipData | undefined {
    const now = this.clock.now()
    this.expire(now)
    const key = `${fnv1a(update)}:${update.length}`
    const prev = this.seen.get(key)
    if (prev && equalBytes(prev.bytes, update)) return undefined
    this.seen.set(key, { at: now, bytes: update, from })
    return new BytesGossipData([update])
  }

  /** Full-state gossip seen within the window, oldest first (for a channel registered late). */
  recent(): Array<{ bytes: Uint8Array; from: PeerName }> {
    this.expire(this.clock.now())
    return [...this.seen.values()].map(({ bytes, from }) => ({ bytes, from }))
  }

  private expire(now: number): void {
    for (const [k, v] of this.seen) if (now - v.at > this.windowMs) this.seen.delete(k)
  }
}

function fnv1a(b: Uint8Array): number {
  let h = 0x811c9dc5
  for (const x of b) h = Math.imul(h ^ x, 0x01000193) >>> 0
  return h
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
