/**
 * The overlay switch: one overlay per peer, with fallback. Every hello over a mesh connection
 * says whether our fast overlay (OVS fastdp or the kernel's vxlan) is ready here, or why not; a
 * peer goes by the fast overlay when both ends say ready and full-size heartbeats cross its
 * tunnel both ways (fastdp-health; ten a second, so a blocked vxlan port falls back to the sleeve
 * within about half a second and returns when they get through again), else by the sleeve, and
 * status says why. With a password the fast overlay's tunnel is protected by kernel ESP
 * (fast-esp-gate) before it carries anything.
 *
 * The sleeve overlay is both the fallback and the control channel (hellos, heartbeat verdicts,
 * ESP key epochs travel over the mesh connection through it).
 */
import type { Clock, Logger } from '../deps'
import { createSleeveOverlay, type OverlayMeshHost, type OverlayPeerHello, type SleeveOverlay } from './sleeve-overlay'
import { chooseOverlay, type Overlay, type OverlayConnection } from './overlay'
import { createFastEspGate, type FastEspGate } from './fast-esp-gate'
import type { Xfrm } from '../net'

export { chooseOverlay }

export interface OverlaySwitchConfig {
  udpPort: number
  /** A password: sleeve encrypted, fast overlay only under kernel ESP. */
  encrypt: boolean
  espRotateMs?: number
  /** `--trusted-subnets`: whether we trust a peer's underlay address (mutual trust → no encryption). */
  trusts?: (ip: string) => boolean
}

export interface OverlaySwitchDeps {
  clock: Clock
  logger: Logger
  /** The fast overlay in force (chosen before start; NullOverlay when none). */
  fast: () => Overlay & { sleeveOnly?(shortId: number): void }
  /** Encrypted fast path's host changes (with a password). */
  xfrm: () => Xfrm
}

export interface OverlaySwitch {
  readonly sleeve: SleeveOverlay
  readonly esp: FastEspGate | undefined
  useMesh(m: OverlayMeshHost): void
  /** After the fast overlay started: heartbeats and route following begin. */
  start(): void
  /** Before the fast overlay stops. */
  stop(): void
  /** `fastdp`, `fastdp encrypted esp`, `sleeve mtu=1448 (not fastdp: why)`...; undefined: no connection. */
  connectionInfo(peer: string): string | undefined
  /** `weave report`'s heartbeat part. */
  heartbeatReport(): Record<string, unknown> | undefined
  /** fastdp→sleeve fallbacks since start, by the reason given (metrics). */
  fallbacks(): ReadonlyMap<string, number>
}

interface Candidate { peer: string; ip: string; via: 'fastdp' | 'sleeve'; why: string | undefined; conn: OverlayConnection }

/** What the switch's pieces share. */
interface SwitchCtx {
  readonly deps: OverlaySwitchDeps
  readonly log: Logger
  readonly fastLog: (what: string) => (err: Error) => void
  readonly ready: () => boolean
  /** Peers that offered the fast path: their underlay IP, connection and the switch's current choice. */
  readonly candidates: Map<number, Candidate>
  /** Peers whose hello arrived on a live connection (direct neighbours). */
  readonly neighbours: Set<number>
  /** What we last told each peer about its heartbeats (re-sent on change, and every ~second). */
  readonly toldRx: Map<number, boolean>
  readonly fallbacks: Map<string, number>
  mesh: OverlayMeshHost | undefined
  sleeve: SleeveOverlay
  esp: FastEspGate | undefined
}

export function createOverlaySwitch(config: OverlaySwitchConfig, deps: OverlaySwitchDeps): OverlaySwitch {
  const log = deps.logger
  const ctx: SwitchCtx = {
    deps, log, fastLog: (what) => (err) => log.warn(`fastdp: ${what}: ${err.message}`), ready: () => deps.fast().unavailable() === undefined,
    candidates: new Map(), neighbours: new Set(), toldRx: new Map(), fallbacks: new Map(), mesh: undefined, sleeve: undefined as never, esp: undefined,
  }
  const { ready, candidates, fastLog } = ctx
  let cancelHealth: (() => void) | undefined
  let unsubscribeRoutes: (() => void) | undefined
  /** When the next health tick is due (a late tick means our event loop stalled: no verdicts then). */
  let healthDue = 0
  let healthTicks = 0
  let heartbeatErrors = 0
  let running = false

  /** Every heartbeat interval: heartbeats out, (counters in), tell each peer what reached us, re-decide. */
  async function healthTick(): Promise<void> {
    const beats = deps.fast().heartbeats?.()
    if (!beats || !running) return
    await beats.tick([...candidates].map(([shortId, c]) => ({ shortId, ip: c.ip, peer: c.peer })), (peer, err) => {
      if (heartbeatErrors++ === 0) log.warn(`fastdp heartbeat to ${peer}: ${err.message}`)
    })
    const now = deps.clock.now()
    // Late by more than a period: this process stalled, and heartbeats that arrived meanwhile
    // are still unread behind this timer. Judge at the next tick instead of falling back now.
    const stalled = now - healthDue > beats.intervalMs
    const periodic = healthTicks++ % Math.max(1, Math.round(1_000 / beats.intervalMs)) === 0
    for (const id of candidates.keys()) {
      const rx = beats.health.rxOk(id, now)
      if (periodic || ctx.toldRx.get(id) !== rx) {
        ctx.sleeve.sendFastdpStatus(id, rx)
        ctx.toldRx.set(id, rx)
      }
      if (!stalled) reevaluate(ctx, id)
    }
  }

  function scheduleHealth(): void {
    const beats = deps.fast().heartbeats?.()
    if (!beats) return
    healthDue = deps.clock.now() + beats.intervalMs
    cancelHealth = deps.clock.setTimer(beats.intervalMs, () => {
      healthTick().catch(fastLog('health')).finally(() => { if (running && ready()) scheduleHealth() })
    })
  }

  const syncRoutes = () => syncFastRoutes(ctx)
  const sleeve: SleeveOverlay = ctx.sleeve = createSleeveOverlay(
    {
      udpPort: config.udpPort, encrypt: config.encrypt,
      fastdp: () => deps.fast().unavailable() ?? true,
      fastdpKind: () => deps.fast().kind,
      esp: () => ctx.esp !== undefined && ready(),
      trusts: config.trusts,
    },
    {
      clock: deps.clock, logger: log,
      onPeerHello: (h) => onPeerHello(ctx, h, syncRoutes),
      onPeerGone(p) {
        const c = candidates.get(p.shortId)
        candidates.delete(p.shortId)
        deps.fast().heartbeats?.()?.health.remove(p.shortId)
        ctx.neighbours.delete(p.shortId)
        const conn = c?.conn ?? deps.fast().connect({ shortId: p.shortId, peer: p.peer, ip: '' })
        const out = ready() ? conn.stop().catch(fastLog(`removing peer ${p.peer}`)) : undefined
        ctx.esp?.gone(p.shortId, out) // after the fast path stopped tunnelling to it: else vxlan would leave in clear
        syncRoutes() // still reachable through another peer: back in as a relayed one
      },
      onFastdpStatus(p) {
        deps.fast().heartbeats?.()?.health.onRemote(p.shortId, p.ok)
        reevaluate(ctx, p.shortId)
      },
      onEsp(p) { ctx.esp?.onControl(p.shortId, p.m) },
    },
  )

  const esp = ctx.esp = config.encrypt ? createFastEspGate({ rotateMs: config.espRotateMs }, {
    clock: deps.clock, logger: log, xfrm: deps.xfrm, sleeve: () => sleeve, ready, why: () => deps.fast().unavailable(), kind: () => deps.fast().kind,
    selfName: () => ctx.mesh?.identity.name ?? '',
    fallback: (h) => deps.fast().sleeveOnly?.(h.shortId),
  }) : undefined

  return {
    sleeve,
    esp,
    useMesh(m) { ctx.mesh = m },
    start() {
      running = true
      if (!ready() || !ctx.mesh) return
      scheduleHealth()
      unsubscribeRoutes = ctx.mesh.view.onPeersChanged(syncRoutes)
      syncRoutes()
    },
    stop() {
      running = false
      cancelHealth?.()
      ctx.toldRx.clear()
      unsubscribeRoutes?.()
      unsubscribeRoutes = undefined
      ctx.neighbours.clear()
    },
    connectionInfo: (peer) => connectionInfo(ctx, peer),
    fallbacks: () => ctx.fallbacks,
    heartbeatReport: () => heartbeatReport(ctx),
  }
}

/** Apply the health verdict for one candidate peer (only when the choice or its reason changed). */
function reevaluate(ctx: SwitchCtx, id: number): void {
  const { candidates, fallbacks, sleeve, log, fastLog } = ctx
  const c = candidates.get(id)
  if (!c) return
  const v = c.conn.health(ctx.deps.clock.now())
  const via = v.ok ? 'fastdp' : 'sleeve'
  const why = v.ok ? undefined : v.why
  if (via === c.via && why === c.why) return
  if (via !== c.via) log.info(`peer ${c.peer}: ${c.via} → ${via}${why ? ` (${why})` : ''}`)
  if (c.via === 'fastdp' && via === 'sleeve') fallbacks.set(why ?? '', (fallbacks.get(why ?? '') ?? 0) + 1)
  c.via = via
  c.why = why
  // Into the fast path first when moving to it, out of the sleeve's routes after (the fast
  // path hands the peer's frames to the sleeve until it changes); the reverse when falling
  // back: the sleeve takes the peer at once, before the tunnel goes.
  if (via === 'sleeve') {
    sleeve.setVia(id, via, why)
    c.conn.forward(false).catch(fastLog(`peer ${c.peer}`))
  } else {
    const done = () => { if (candidates.get(id) === c && c.via === 'fastdp') sleeve.setVia(id, 'fastdp') }
    if (!ctx.ready()) return
    c.conn.forward(true).then(done, (err: Error) => { fastLog(`peer ${c.peer}`)(err); done() })
  }
}

/** A peer's hello: the fast overlay when both ends can (sleeve until heartbeats prove the tunnel), else sleeve and why. */
function onPeerHello(ctx: SwitchCtx, h: OverlayPeerHello, syncRoutes: () => void): void {
  const { deps, esp, sleeve } = ctx
  if (esp && !esp.first(h, () => onPeerHello(ctx, h, syncRoutes))) return
  const c = chooseOverlay({ ready: ctx.ready(), why: deps.fast().unavailable(), encrypt: esp !== undefined, kind: deps.fast().kind }, h)
  ctx.neighbours.add(h.shortId)
  ctx.toldRx.delete(h.shortId) // a new connection: tell it about its heartbeats at the next tick
  const fast = deps.fast()
  if (c.via === 'fastdp') {
    // Both ends can: sleeve until heartbeats prove the tunnel both ways (healthTick).
    const beats = fast.heartbeats?.()
    beats?.health.remove(h.shortId)
    beats?.health.add(h.shortId, deps.clock.now())
    const why = 'waiting for fastdp heartbeats'
    const conn = fast.connect({ shortId: h.shortId, peer: h.peer, ip: h.ip, localIp: localIpTo(ctx.mesh, h.peer) })
    ctx.candidates.set(h.shortId, { peer: h.peer, ip: h.ip, via: 'sleeve', why, conn })
    sleeve.setVia(h.shortId, 'sleeve', why)
    conn.start().catch(ctx.fastLog(`peer ${h.peer}`))
    syncRoutes()
    return
  }
  ctx.candidates.delete(h.shortId)
  sleeve.setVia(h.shortId, c.via, c.why)
  fast.sleeveOnly?.(h.shortId)
  syncRoutes()
}

/** Short ID ⇄ name of every peer in the topology with one, and the next hop to each. */
function syncFastRoutes(ctx: SwitchCtx): void {
  const fast = ctx.deps.fast()
  const m = ctx.mesh
  if (!fast.syncRoutes || !m || !ctx.ready()) return
  const idOf = new Map<string, number>(), nameOf = new Map<number, string>()
  for (const r of m.topology.records()) {
    if (r.shortId === undefined) continue
    idOf.set(r.name, r.shortId)
    nameOf.set(r.shortId, r.name)
  }
  const hop = new Map<number, number>()
  for (const [dst, via] of m.routes.unicast()) {
    const dstId = idOf.get(dst), viaId = idOf.get(via)
    if (dstId !== undefined && viaId !== undefined && dst !== m.identity.name && via !== m.identity.name) hop.set(dstId, viaId)
  }
  // Broadcasts we pass on: the children at us of each other peer's broadcast tree (none in a full mesh)
  const bcastTo = new Map<number, number[]>()
  for (const [src, srcId] of idOf) {
    if (src === m.identity.name) continue
    for (const child of m.routes.broadcast(src as never)) {
      const c = idOf.get(child)
      if (c !== undefined && c !== srcId) bcastTo.set(c, [...(bcastTo.get(c) ?? []), srcId])
    }
  }
  fast.syncRoutes(hop, ctx.neighbours, nameOf, bcastTo)
}

/** Our underlay address on the mesh connection to `peer` (IPv4 only; the tunnels are IPv4). */
function localIpTo(mesh: OverlayMeshHost | undefined, peer: string): string | undefined {
  const conn = mesh?.connections().get(peer as never)
  const ip = conn?.localAddr.replace(/:\d+$/, '').replace(/^::ffff:/, '')
  return ip && /^\d{1,3}(\.\d{1,3}){3}$/.test(ip) ? ip : undefined
}

/** For `weave status connections`: how frames reach a peer we hold no connection to. */
function relayInfo(ctx: SwitchCtx, peer: string): string | undefined {
  if (!ctx.mesh) return undefined
  const via = ctx.mesh.routes.unicast().get(peer as never)
  if (via === undefined || via === peer) return undefined
  const c = ctx.sleeve.connections().find((x) => x.peer === via)
  if (!c) return undefined
  return `via ${c.peer}(${c.nickname}) ${c.overlay}`
}

function connectionInfo(ctx: SwitchCtx, peer: string): string | undefined {
  const c = ctx.sleeve.connections().find((x) => x.peer === peer)
  if (!c) return relayInfo(ctx, peer)
  if (c.overlay === 'fastdp') {
    const enc = ctx.esp?.protects(peer) ? ' encrypted esp' : ''
    const name = [...ctx.candidates.values()].find((x) => x.peer === peer)?.conn.status() ?? 'fastdp'
    return c.state === 'established' ? `${name}${enc}` : `${name} ${c.state}${enc}`
  }
  const why = c.why === undefined ? '' : ` (not fastdp: ${c.why})`
  return (c.state === 'established' ? `sleeve${c.mtu === undefined ? '' : ` mtu=${c.mtu}`}${c.encrypted ? ` encrypted${c.cipher ? ` ${c.cipher}` : ''}` : ''}` : `sleeve ${c.state}`) + why
}

function heartbeatReport(ctx: SwitchCtx): Record<string, unknown> | undefined {
  const beats = ctx.deps.fast().heartbeats?.()
  if (!beats) return undefined
  const now = ctx.deps.clock.now()
  return {
    IntervalMs: beats.intervalMs,
    Via: beats.via,
    Peers: Object.fromEntries([...ctx.candidates].map(([id, c]) => [c.peer, { ShortId: id, Via: c.via, RxOk: beats.health.rxOk(id, now), Why: c.why }])),
  }
}
