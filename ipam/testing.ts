/**
 * An in-memory mesh for IPAM simulations and tests: every peer gets a GossipHost whose messages go
 * through one queue, delivered in rounds (each round is `latencyMs` of virtual time on a
 * FakeClock), so a run is deterministic for a given seed. Partitions, heals and stopped peers are
 * modelled; periodic gossip goes to a few random reachable peers every `gossipIntervalMs`.
 * Broadcasts reach every reachable peer directly (the real mesh relays along spanning trees).
 */
import { FakeClock, type Rng, seededRng } from '../router/deps'
import type { Gossip, GossipData, GossipHost, Gossiper, MeshView, PeerInfo, PeerName } from '../router/mesh'

interface SimPeer {
  info: PeerInfo
  gossiper?: Gossiper
  up: boolean
  group: number
  listeners: Set<() => void>
}

export class SimBus {
  readonly clock: FakeClock
  readonly rng: Rng
  readonly peers = new Map<PeerName, SimPeer>()
  private queue: Array<() => void> = []
  delivered = 0
  /** Drop every message while > 0 (used to model a lossy moment). */
  constructor(readonly seed: number, readonly opts: { latencyMs?: number; gossipIntervalMs?: number; fanout?: number } = {}) {
    this.clock = new FakeClock(0)
    this.rng = seededRng(seed)
    this.scheduleGossip()
  }

  get latencyMs(): number {
    return this.opts.latencyMs ?? 1
  }

  /** A peer with a MAC-style name from `index` (or the given name), in group 0, up. */
  addPeer(name: PeerName, nickname = name.slice(-5)): GossipHost {
    const peer: SimPeer = { info: { name, nickname, uid: BigInt(this.peers.size + 1) }, up: true, group: 0, listeners: new Set() }
    this.peers.set(name, peer)
    this.notify()
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the gossip host's methods below are called with another `this`
    const bus = this
    const view: MeshView = {
      self: peer.info,
      peers: () => [...this.peers.values()].filter((p) => p.up && this.sameGroup(peer, p)).map((p) => p.info),
      isReachable: (n) => {
        const other = this.peers.get(n)
        return !!other && other !== peer && other.up && peer.up && this.sameGroup(peer, other)
      },
      onPeersChanged(fn) {
        peer.listeners.add(fn)
        return () => peer.listeners.delete(fn)
      },
    }
    return {
      view,
      newGossip(channel: string, gossiper: Gossiper): Gossip {
        if (channel !== 'ipam') throw new Error(`sim bus carries ipam only, not ${channel}`)
        peer.gossiper = gossiper
        return {
          gossipUnicast: (dst, msg) => {
            if (!view.isReachable(dst)) return false
            bus.enqueue(peer, dst, (g) => g.onGossipUnicast(name, msg))
            return true
          },
          gossipBroadcast: (data) => {
            const msgs = data.encode()
            for (const p of bus.peers.values()) {
              if (p === peer || !view.isReachable(p.info.name)) continue
              for (const m of msgs) bus.enqueue(peer, p.info.name, (g) => g.onGossipBroadcast(name, m))
            }
          },
          gossipNeighbourSubset: (data) => bus.sendToSome(peer, data),
        }
      },
    }
  }

  /** Split the peers: each listed group becomes its own partition; unlisted peers stay together. */
  partition(groups: PeerName[][]): void {
    for (const p of this.peers.values()) p.group = 0
    groups.forEach((g, i) => g.forEach((n) => { const p = this.peers.get(n); if (p) p.group = i + 1 }))
    this.notify()
  }

  heal(): void {
    this.partition([])
  }

  /** A stopped peer: unreachable, receives nothing; its gossiper is dropped (a restart registers anew). */
  stopPeer(name: PeerName): void {
    const p = this.peers.get(name)
    if (!p) return
    p.up = false
    p.gossiper = undefined
    this.notify()
  }

  /** Bring a stopped peer back; returns a fresh GossipHost (new uid, as after a restart). */
  restartPeer(name: PeerName): GossipHost {
    const p = this.peers.get(name)!
    this.peers.delete(name)
    const host = this.addPeer(name, p.info.nickname)
    this.peers.get(name)!.group = p.group
    return host
  }

  /** Deliver rounds until nothing is queued and no pending promise queues more; returns rounds. */
  async flush(maxRounds = 100_000): Promise<number> {
    for (let i = 0; i < maxRounds; i++) {
      await settle()
      if (this.queue.length === 0) {
        await settle()
        if (this.queue.length === 0) return i
      }
      this.deliverRound()
    }
    throw new Error(`sim bus did not go quiet after ${maxRounds} rounds (seed ${this.seed})`)
  }

  /** Run `ms` of virtual time: deliver messages as they come, fire timers, in small steps. */
  async run(ms: number, stepMs = 50): Promise<void> {
    const end = this.clock.now() + ms
    while (this.clock.now() < end) {
      await settle()
      if (this.queue.length > 0) this.deliverRound()
      else this.clock.advance(Math.min(stepMs, end - this.clock.now()))
    }
  }

  /** Run until `cond()` holds (checked between rounds), at most `maxMs`; returns virtual ms taken. */
  async until(cond: () => boolean, maxMs: number, stepMs = 50): Promise<number> {
    const start = this.clock.now()
    while (!cond()) {
      if (this.clock.now() - start >= maxMs) throw new Error(`condition not met within ${maxMs} ms virtual (seed ${this.seed})`)
      await settle()
      if (this.queue.length > 0) this.deliverRound()
      else this.clock.advance(stepMs)
    }
    return this.clock.now() - start
  }

  private deliverRound(): void {
    const round = this.queue
    this.queue = []
    for (const d of round) d()
    this.clock.advance(this.latencyMs)
  }

  private enqueue(from: SimPeer, dst: PeerName, fn: (g: Gossiper) => void): void {
    this.queue.push(() => {
      const to = this.peers.get(dst)
      // Checked again at delivery: a partition or stop in between loses the message.
      if (!to || !to.up || !from.up || !to.gossiper || !this.sameGroup(from, to)) return
      this.delivered++
      fn(to.gossiper)
    })
  }

  private sendToSome(from: SimPeer, data: GossipData): void {
    const cands = [...this.peers.values()].filter((p) => p !== from && p.up && this.sameGroup(from, p))
    const n = Math.min(this.opts.fanout ?? 3, cands.length)
    for (let i = 0; i < n; i++) {
      const j = i + this.rng.int(cands.length - i)
      ;[cands[i], cands[j]] = [cands[j], cands[i]]
      for (const m of data.encode()) this.enqueue(from, cands[i].info.name, (g) => { g.onGossip(m) })
    }
  }

  private scheduleGossip(): void {
    this.clock.setTimer(this.opts.gossipIntervalMs ?? 1000, () => {
      for (const p of this.peers.values()) {
        if (!p.up || !p.gossiper) continue
        const data = p.gossiper.gossip()
        if (data) this.sendToSome(p, data)
      }
      this.scheduleGossip()
    })
  }

  private sameGroup(a: SimPeer, b: SimPeer): boolean {
    return a.group === b.group
  }

  private notify(): void {
    for (const p of this.peers.values()) for (const fn of p.listeners) fn()
  }
}

/** Let every pending promise chain (saves, answers) run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/** A MAC-style peer name from a small integer: 00:00:00:00:01:2c. */
export function simPeerName(i: number): PeerName {
  const hex = i.toString(16).padStart(12, '0')
  return hex.match(/../g)!.join(':') as PeerName
}
