/**
 * Simulation harness for the mesh router: many routers in one process over the in-memory
 * transport ('direct' mode), on virtual time with a per-hop latency, seeded randomness.
 *
 *   const sim = createMeshSim({ seed: 1, latencyMs: 5 })
 *   const a = await sim.addPeer([]); const b = await sim.addPeer([a.addr])
 *   await sim.runUntil(() => sim.converged(), 10_000)
 *
 * Time only moves inside `run`/`runUntil`: timers fire in deadline order, and between timer
 * deadlines the microtask queue (the transport's deliveries, dial promises) is drained.
 */
import { createMemoryNetwork, type MemoryNetwork } from '../../router/mesh/memory-transport'
import { createMesh, type Mesh, type MeshConfig } from '../../router/mesh/mesh-router'
import { bytesToPeerName } from '../../router/mesh/identity'
import type { MeshMessage, MeshTransport, PeerConnection } from '../../router/mesh/connection-contract'
import type { PeerName } from '../../router/mesh/gossip-contract'
import { nullLogger, seededRng, type Clock, type Logger, type Rng } from '../../router/deps'

/** A Clock on a binary heap: O(log n) per timer, for simulations with many thousands of timers. */
export class HeapClock implements Clock {
  private t = 0
  private seq = 0
  private heap: Array<{ at: number; seq: number; fn: () => void; dead: boolean }> = []
  now(): number {
    return this.t
  }
  setTimer(ms: number, fn: () => void): () => void {
    const item = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, dead: false }
    this.push(item)
    return () => {
      item.dead = true
    }
  }
  /** Deadline of the earliest live timer. */
  nextAt(): number | undefined {
    while (this.heap.length && this.heap[0].dead) this.pop()
    return this.heap.length ? this.heap[0].at : undefined
  }
  /** Fire every timer due at or before `t` (in order), then set the time to `t`. */
  advanceTo(t: number): void {
    for (;;) {
      const at = this.nextAt()
      if (at === undefined || at > t) break
      const item = this.pop()!
      this.t = Math.max(this.t, item.at)
      item.fn()
    }
    this.t = Math.max(this.t, t)
  }
  private less(a: { at: number; seq: number }, b: { at: number; seq: number }): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq)
  }
  private push(x: (typeof this.heap)[number]): void {
    const h = this.heap
    h.push(x)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!this.less(h[i], h[p])) break
      ;[h[i], h[p]] = [h[p], h[i]]
      i = p
    }
  }
  private pop(): (typeof this.heap)[number] | undefined {
    const h = this.heap
    if (!h.length) return undefined
    const top = h[0]
    const last = h.pop()!
    if (h.length) {
      h[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1, r = l + 1
        let m = i
        if (l < h.length && this.less(h[l], h[m])) m = l
        if (r < h.length && this.less(h[r], h[m])) m = r
        if (m === i) break
        ;[h[i], h[m]] = [h[m], h[i]]
        i = m
      }
    }
    return top
  }
}

/** A connection whose sends arrive `latencyMs` later (the transport below delivers at once). */
function delayed(conn: PeerConnection, clock: Clock, latencyMs: number): PeerConnection {
  return {
    get remote() { return conn.remote },
    get outbound() { return conn.outbound },
    get remoteAddr() { return conn.remoteAddr },
    get localAddr() { return conn.localAddr },
    get connUid() { return conn.connUid },
    get encrypted() { return conn.encrypted },
    send: (msg: MeshMessage) => { clock.setTimer(latencyMs, () => conn.send(msg)) },
    close: (reason: string) => conn.close(reason),
    onMessage: (fn) => conn.onMessage(fn),
    onClose: (fn) => conn.onClose(fn),
  }
}

function delayedTransport(t: MeshTransport, clock: Clock, latencyMs: number): MeshTransport {
  if (latencyMs <= 0) return t
  return {
    async dial(addr) {
      // A TCP connect and the handshake cost a couple of round trips.
      await new Promise<void>((r) => clock.setTimer(4 * latencyMs, r))
      return delayed(await t.dial(addr), clock, latencyMs)
    },
    listen: (onConn, onRefused) => t.listen((c) => onConn(delayed(c, clock, latencyMs)), onRefused),
    close: () => t.close(),
  }
}

export interface SimPeer {
  index: number
  addr: string
  mesh: Mesh
  name: PeerName
  alive: boolean
}

export interface MeshSimOptions {
  seed: number
  latencyMs?: number
  connLimit?: number
  discovery?: boolean
  /** Heartbeats on connections (needed to notice silent cuts; off for speed in big sims). */
  heartbeats?: boolean
  logger?: Logger
  mesh?: Partial<MeshConfig>
}

export interface MeshSim {
  clock: HeapClock
  net: MemoryNetwork
  rng: Rng
  peers: SimPeer[]
  addPeer(targets: string[], opts?: { name?: PeerName; addr?: string }): Promise<SimPeer>
  /** Stop a peer's router (its connections close as a departing daemon's would). */
  stopPeer(p: SimPeer): Promise<void>
  /** Stop and start again at the same address with the same name (a new UID). */
  restartPeer(p: SimPeer, targets: string[]): Promise<SimPeer>
  run(ms: number): Promise<void>
  /** Run until `pred` holds (checked every `stepMs`); returns the virtual ms taken, or -1 on timeout. */
  runUntil(pred: () => boolean, maxMs: number, stepMs?: number): Promise<number>
  alive(): SimPeer[]
  /** Every live peer holds exactly the live peers, each at its current UID and version. */
  converged(): boolean
  stop(): Promise<void>
}

const tick = () => new Promise<void>((r) => setImmediate(r))

export function createMeshSim(o: MeshSimOptions): MeshSim {
  const clock = new HeapClock()
  const rng = seededRng(o.seed)
  const logger = o.logger ?? nullLogger
  const latency = o.latencyMs ?? 5
  const net = createMemoryNetwork({ clock, rng, logger }, { mode: 'direct' })
  const peers: SimPeer[] = []

  const addrOf = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${(i & 255) + 1}:6783`

  async function start(index: number, addr: string, name: PeerName, targets: string[]): Promise<SimPeer> {
    const mesh = createMesh(
      { name, nickname: `p${index}`, port: 6783, connLimit: o.connLimit ?? 0, discovery: o.discovery ?? true, peers: targets, encryption: false, ...o.mesh },
      {
        clock,
        rng,
        logger,
        transport: (local) => delayedTransport(net.transport(addr, local, { heartbeats: o.heartbeats ?? false }), clock, latency),
      },
    )
    await mesh.start()
    return { index, addr, mesh, name, alive: true }
  }

  const sim: MeshSim = {
    clock,
    net,
    rng,
    peers,
    async addPeer(targets, opts = {}) {
      const i = peers.length
      const name = opts.name ?? bytesToPeerName(new Uint8Array([0x02, (i >> 16) & 255, (i >> 8) & 255, i & 255, 0, 1]))
      const p = await start(i, opts.addr ?? addrOf(i), name, targets)
      peers.push(p)
      return p
    },
    async stopPeer(p) {
      p.alive = false
      await p.mesh.stop()
    },
    async restartPeer(p, targets) {
      if (p.alive) await sim.stopPeer(p)
      const q = await start(p.index, p.addr, p.name, targets)
      peers[p.index] = q
      return q
    },
    async run(ms) {
      const end = clock.now() + ms
      await tick()
      for (;;) {
        const at = clock.nextAt()
        if (at === undefined || at > end) break
        clock.advanceTo(at)
        await tick()
      }
      clock.advanceTo(end)
      await tick()
    },
    async runUntil(pred, maxMs, stepMs = 10) {
      const start = clock.now()
      while (clock.now() - start <= maxMs) {
        if (pred()) return clock.now() - start
        await sim.run(stepMs)
      }
      return -1
    },
    alive: () => peers.filter((p) => p.alive),
    converged() {
      const live = sim.alive()
      for (const p of live) {
        const t = p.mesh.topology
        if (t.size() !== live.length) return false
        for (const q of live) {
          const r = t.get(q.name)
          const own = q.mesh.topology.self()
          if (!r || r.uid !== own.uid || r.version !== own.version) return false
        }
      }
      return true
    },
    async stop() {
      for (const p of peers) if (p.alive) await p.mesh.stop()
    },
  }
  return sim
}

/** Every pair of live peers can reach each other along gossip routes (checked hop by hop). */
export function allRoutesWork(sim: MeshSim, sample = Infinity): { ok: boolean; maxHops: number; failed?: string } {
  const live = sim.alive()
  const byName = new Map(live.map((p) => [p.name, p]))
  let maxHops = 0
  let checked = 0
  for (const a of live) {
    for (const b of live) {
      if (a === b) continue
      if (checked++ >= sample) return { ok: true, maxHops }
      let cur = a
      let hops = 0
      while (cur !== b) {
        const next = cur.mesh.routes.unicastAll().get(b.name)
        if (!next || next === cur.name || !cur.mesh.connections().has(next)) return { ok: false, maxHops, failed: `${a.name} -> ${b.name} stuck at ${cur.name}` }
        cur = byName.get(next)!
        if (++hops > live.length) return { ok: false, maxHops, failed: `${a.name} -> ${b.name} loops` }
      }
      maxHops = Math.max(maxHops, hops)
    }
  }
  return { ok: true, maxHops }
}
