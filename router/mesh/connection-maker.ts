/**
 * The connection maker: which addresses to dial and when. A reducer with no I/O: the router
 * feeds it events (connect/forget requests, dial results, closed connections, what gossip
 * revealed) and the current time, and carries out the effects it returns ({kind:'dial', addr},
 * {kind:'persist', ...}); `nextWake()` says when to call `tick` again.
 *
 * Targets are "host:port" strings. Direct targets come from `weave launch PEER...` and
 * `weave connect`; discovered ones from connections other peers have to peers we lack (only
 * with discovery on, and only while under the connection limit).
 */
import type { Rng } from '../deps'
import type { HandshakeFailure } from './connection-contract'

export const DEFAULT_MESH_PORT = 6783

export interface ConnectionMakerConfig {
  /** Our mesh port: the port of port-less direct peers and of discovered inbound-only peers. */
  port: number
  /** Dials of discovered peers stop at this many connections (0: no limit). */
  connLimit: number
  discovery: boolean
  /** First retry interval (Weave: 2 s); grows ×1.5 per failure up to maxIntervalMs (6 min). */
  initialIntervalMs?: number
  maxIntervalMs?: number
  /** A connection that lived this long after its try is retried at once, backoff reset (1 min). */
  resetAfterMs?: number
}

export type TargetState = 'waiting' | 'connecting' | 'connected' | 'retrying' | 'failed'

export interface Target {
  addr: string
  kind: 'direct' | 'discovered'
  state: TargetState
  /** Current backoff interval (the retry delay is drawn around it). */
  intervalMs: number
  /** When the next try is due (meaningful in 'waiting'/'retrying'). */
  tryAfter: number
  /** When the last dial started. */
  lastAttempt: number
  lastError?: string
  /** Retrying cannot help (self-connection, name collision): never dialled again. */
  permanent?: boolean
}

export type MakerEffect = { kind: 'dial'; addr: string } | { kind: 'persist'; direct: string[] }

/** What the router knows right now, for deciding dials. */
export interface MakerWorld {
  /** Addresses ("ip:port") of our outbound connections, and "ip" of inbound ones' remotes. */
  connectedAddrs: Set<string>
  connectedIps: Set<string>
  /** Number of live connections. */
  connectionCount: number
  /** Addresses of peers gossip tells us about that we have no connection to. */
  discovered: string[]
}

const INITIAL_INTERVAL_MS = 2_000
const MAX_INTERVAL_MS = 6 * 60_000
const RESET_AFTER_MS = 60_000

/**
 * The backoff step after a failure: the next try is uniform in [i/2, 3i/2) from now, where i is
 * the current interval; then i grows ×1.5, capped at `maxMs`.
 */
export function nextTryLater(t: Target, now: number, rng: Rng, maxMs = MAX_INTERVAL_MS): Target {
  const i = t.intervalMs
  const delay = i / 2 + rng.next() * i
  return { ...t, tryAfter: now + delay, intervalMs: Math.min(maxMs, i * 1.5) }
}

/** "host" → "host:6783"; "host:port" and "[v6]:port" kept; bare IPv6 bracketed. Undefined when unusable. */
export function normalizeAddr(peer: string, port = DEFAULT_MESH_PORT): string | undefined {
  const p = peer.trim()
  if (!p || /\s/.test(p)) return undefined
  if (p.startsWith('[')) return /^\[[0-9a-fA-F:.]+\](:\d+)?$/.test(p) ? (p.includes(']:') ? p : `${p}:${port}`) : undefined
  const colons = (p.match(/:/g) ?? []).length
  if (colons > 1) return `[${p}]:${port}`
  if (colons === 1) {
    const [h, po] = p.split(':')
    const n = Number(po)
    return h && Number.isInteger(n) && n > 0 && n < 65536 ? p : undefined
  }
  return `${p}:${port}`
}

/** The host part of "host:port" / "[v6]:port". */
export function addrHost(addr: string): string {
  if (addr.startsWith('[')) return addr.slice(1, addr.indexOf(']'))
  const i = addr.lastIndexOf(':')
  return i < 0 ? addr : addr.slice(0, i)
}

export class ConnectionMaker {
  private readonly targets = new Map<string, Target>()
  private direct: string[] = []
  private readonly initialMs: number
  private readonly maxMs: number
  private readonly resetMs: number

  constructor(private readonly config: ConnectionMakerConfig, private readonly rng: Rng) {
    this.initialMs = config.initialIntervalMs ?? INITIAL_INTERVAL_MS
    this.maxMs = config.maxIntervalMs ?? MAX_INTERVAL_MS
    this.resetMs = config.resetAfterMs ?? RESET_AFTER_MS
  }

  /** Direct targets, in the order given. */
  directPeers(): string[] {
    return [...this.direct]
  }

  allTargets(): Target[] {
    return [...this.targets.values()]
  }

  target(addr: string): Target | undefined {
    return this.targets.get(addr)
  }

  /**
   * Add direct targets (`replace`: they become the whole list). Returns the addresses that were
   * not usable, and effects (persist; dials come from the next tick).
   */
  connect(peers: string[], replace: boolean, now: number): { effects: MakerEffect[]; invalid: string[] } {
    const invalid: string[] = []
    const addrs: string[] = []
    for (const p of peers) {
      const a = normalizeAddr(p, this.config.port)
      if (a) addrs.push(a)
      else invalid.push(p)
    }
    if (invalid.length) return { effects: [], invalid }
    if (replace) {
      for (const a of this.direct) if (!addrs.includes(a)) this.dropDirect(a)
      this.direct = []
    }
    for (const a of addrs) {
      if (!this.direct.includes(a)) this.direct.push(a)
      const t = this.targets.get(a)
      if (!t) this.targets.set(a, this.fresh(a, 'direct', now))
      else {
        // Asked again explicitly: promote, and retry now even a permanently failed one.
        t.kind = 'direct'
        if (t.state === 'failed' || t.state === 'retrying') Object.assign(t, { state: 'waiting', tryAfter: now, permanent: false })
      }
    }
    return { effects: [{ kind: 'persist', direct: this.directPeers() }], invalid }
  }

  forget(peers: string[]): MakerEffect[] {
    for (const p of peers) {
      const a = normalizeAddr(p, this.config.port) ?? p
      this.direct = this.direct.filter((d) => d !== a)
      this.dropDirect(a)
    }
    return [{ kind: 'persist', direct: this.directPeers() }]
  }

  private dropDirect(a: string): void {
    const t = this.targets.get(a)
    if (t && t.kind === 'direct' && t.state !== 'connecting' && t.state !== 'connected') this.targets.delete(a)
    else if (t) t.kind = 'discovered'
  }

  private fresh(addr: string, kind: Target['kind'], now: number): Target {
    return { addr, kind, state: 'waiting', intervalMs: this.initialMs, tryAfter: now, lastAttempt: 0 }
  }

  /** Decide dials for now. */
  tick(now: number, world: MakerWorld): MakerEffect[] {
    this.updateDiscovered(now, world)
    const effects: MakerEffect[] = []
    let inFlight = 0
    for (const t of this.targets.values()) if (t.state === 'connecting') inFlight++
    const underLimit = () => this.config.connLimit <= 0 || world.connectionCount + inFlight < this.config.connLimit
    const due = [...this.targets.values()].filter((t) => (t.state === 'waiting' || t.state === 'retrying') && !t.permanent && t.tryAfter <= now)
    // Direct targets first, in order; discovered ones in random order so load spreads.
    const direct = due.filter((t) => t.kind === 'direct')
    const disc = due.filter((t) => t.kind === 'discovered')
    for (let i = disc.length - 1; i > 0; i--) {
      const j = this.rng.int(i + 1)
      ;[disc[i], disc[j]] = [disc[j], disc[i]]
    }
    for (const t of direct) {
      if (this.satisfied(t.addr, world)) {
        t.tryAfter = now + this.initialMs // look again later: that connection may go away
        continue
      }
      effects.push(this.startDial(t, now))
      inFlight++
    }
    for (const t of disc) {
      if (!underLimit()) break // the rest wait for a connection to end (the router ticks then)
      if (this.satisfied(t.addr, world)) {
        t.tryAfter = now + this.initialMs
        continue
      }
      effects.push(this.startDial(t, now))
      inFlight++
    }
    return effects
  }

  private startDial(t: Target, now: number): MakerEffect {
    t.state = 'connecting'
    t.lastAttempt = now
    return { kind: 'dial', addr: t.addr }
  }

  /** Already connected to that address, or (Weave's rule) the peer at that IP connected to us. */
  private satisfied(addr: string, world: MakerWorld): boolean {
    return world.connectedAddrs.has(addr) || world.connectedIps.has(addrHost(addr))
  }

  private updateDiscovered(now: number, world: MakerWorld): void {
    const want = new Set(this.config.discovery ? world.discovered : [])
    for (const [a, t] of this.targets) {
      // A discovered target gossip no longer mentions is dropped (unless a dial is under way).
      if (t.kind === 'discovered' && !want.has(a) && t.state !== 'connecting' && t.state !== 'connected') this.targets.delete(a)
    }
    for (const a of want) if (!this.targets.has(a)) this.targets.set(a, this.fresh(a, 'discovered', now))
  }

  dialSucceeded(addr: string): void {
    const t = this.targets.get(addr)
    if (t) Object.assign(t, { state: 'connected', lastError: undefined })
  }

  dialFailed(addr: string, failure: HandshakeFailure | undefined, message: string, now: number): void {
    const t = this.targets.get(addr)
    if (!t) return
    if (failure?.permanent) {
      Object.assign(t, { state: 'failed', permanent: true, lastError: message })
      return
    }
    Object.assign(t, nextTryLater(t, now, this.rng, this.maxMs), { state: 'retrying', lastError: message })
  }

  /** The connection made from target `addr` ended. */
  connectionClosed(addr: string, reason: string, now: number): void {
    const t = this.targets.get(addr)
    if (!t) return
    if (now - t.lastAttempt >= this.resetMs) {
      // It lived long enough: a fresh problem, retry at once with the backoff reset.
      Object.assign(t, { state: 'waiting', tryAfter: now, intervalMs: this.initialMs, lastError: reason })
    } else {
      Object.assign(t, nextTryLater(t, now, this.rng, this.maxMs), { state: 'retrying', lastError: reason })
    }
  }

  /** When the next waiting target falls due after `now` (undefined: nothing scheduled). */
  nextWake(now: number): number | undefined {
    let best: number | undefined
    for (const t of this.targets.values()) {
      if ((t.state === 'waiting' || t.state === 'retrying') && !t.permanent && t.tryAfter > now) best = best === undefined ? t.tryAfter : Math.min(best, t.tryAfter)
    }
    return best
  }
}
