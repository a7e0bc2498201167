/**
 * The kernel vxlan path as an Overlay ("fastdp vxlan"): the kernel's own vxlan device
 * `vxlan-6784` on the weave bridge (net/vxlan.ts) carries frames between peers at kernel speed,
 * without Open vSwitch, as flannel's vxlan backend does; the router keeps Weave's per-peer choice.
 *
 * - No kernel learning: peers announce their local MACs in their heartbeats (vxlan-heartbeat);
 *   the router installs a peer's MACs and its all-zeros (flood) entry when the switch puts the
 *   peer on this path, and removes them when it falls back (vxlan-fdb).
 * - Heartbeats go through the peer's vxlan decapsulation (UDP 6784, our VNI), ten a second,
 *   with DF set and one in ten full-size: a blocked port or a too-small path MTU falls back.
 * - Relays: the kernel cannot relay (the vxlan and sleeve ports are isolated from each other, so
 *   nothing loops). A neighbour that is our next hop to other peers goes by sleeve, which relays:
 *   peers not reached directly go by sleeve, and status says so.
 */
import type { Clock, Logger } from '../deps'
import type { FdbOp, VxlanOptions } from '../net'
import { KERNEL_VXLAN_DEV, KERNEL_VXLAN_PORT, KERNEL_VXLAN_VNI } from '../net'
import { FASTDP_FULL_HEARTBEAT_EVERY, type HeartbeatSender } from './fastdp-health'
import { TunnelHeartbeats } from './tunnel-heartbeats'
import { MacAnnouncer, MacCollector, decodeHeartbeat, encodeHeartbeat, macsPerFrame } from './vxlan-heartbeat'
import { emptyFdb, planFdb, wantedFdb, type FdbState } from './vxlan-fdb'
import type { FastPeerTraffic, Overlay, OverlayConnection, OverlayHealth, OverlayPeer } from './overlay'
import { VxlanTraffic, type VxlanCounterHost } from './vxlan-traffic'

/** How often our local MACs are read from the bridge (a new container is announced within this). */
const LOCAL_MACS_INTERVAL_MS = 1_000
/** At most this many MACs in a small heartbeat (it grows from 60 bytes to ~220). */
const SMALL_PAGE_MACS = 32

/** The host side (NetHost.kernelVxlan). */
export interface KernelVxlanHost {
  ensure(o: VxlanOptions): Promise<void>
  remove(): Promise<boolean>
  applyFdb(ops: readonly FdbOp[]): Promise<void>
  localMacs(bridge?: string): Promise<string[]>
  /** Per-peer traffic counters (nftables); none: the path's traffic goes uncounted. */
  counters?: VxlanCounterHost
}

/** Heartbeat datagrams out (UDP, DF set) and inner heartbeat frames in (a packet socket on vxlan-6784). */
export interface VxlanIo {
  /** 0 when sent, else an errno name (EMSGSIZE: above the path MTU). */
  send(ip: string, port: number, datagram: Uint8Array): 0 | string
  onFrames(fn: (frames: Uint8Array[]) => void): void
  close(): void
}

export interface VxlanOverlayConfig { mtu: number; bridge: string }

export interface VxlanOverlayDeps {
  clock: Clock
  logger: Logger
  host: KernelVxlanHost
  /** Open the sockets (after the device exists). */
  openIo: () => VxlanIo
}

export interface VxlanOverlay extends Overlay {
  /** Why this path was chosen (status: `weave status` says which and why). */
  setChoice(why: string): void
  /** Our bridge's MAC (announced with the containers'). */
  useBridgeMac(mac: string | undefined): void
}

interface VxPeer { peer: string; ip: string; forwarding: boolean; macs: MacCollector; cursor: number; sent: number }

/** What the overlay's pieces share while it runs. */
interface VxState {
  why: string | undefined
  choice: string
  bridgeMac: string | undefined
  self: number
  io: VxlanIo | undefined
  beats: TunnelHeartbeats | undefined
  readonly peers: Map<number, VxPeer>
  /** Neighbours that are our next hop to other peers (the sleeve relays; the kernel cannot), with those peers' names. */
  relayFor: Map<number, string[]>
  readonly announcer: MacAnnouncer
  installed: FdbState
}

export function createVxlanOverlay(config: VxlanOverlayConfig, deps: VxlanOverlayDeps): VxlanOverlay {
  const log = deps.logger
  const warn = (what: string) => (err: Error) => log.warn(`kernel vxlan: ${what}: ${err.message}`)
  const st: VxState = {
    why: 'not started', choice: '', bridgeMac: undefined, self: 0, io: undefined, beats: undefined,
    peers: new Map(), relayFor: new Map(), announcer: new MacAnnouncer(), installed: emptyFdb(),
  }
  const fdb = fdbSyncer(st, deps.host, warn)
  const sync = fdb.sync
  let cancelPoll: (() => void) | undefined
  const traffic = new VxlanTraffic(deps.host.counters, log)
  /** Count the traffic of exactly the peers we hold (their underlay addresses). */
  const track = () => traffic.track(new Set([...st.peers.values()].map((p) => p.ip)))

  function pollLocalMacs(): void {
    cancelPoll = deps.clock.setTimer(LOCAL_MACS_INTERVAL_MS, () => {
      deps.host.localMacs(config.bridge).then((macs) => {
        if (st.announcer.set(st.bridgeMac ? [...macs, st.bridgeMac.toLowerCase()] : macs)) log.debug(`kernel vxlan: announcing ${st.announcer.size} local MACs`)
      }, warn('reading local MACs')).finally(() => { if (st.io) pollLocalMacs() })
    })
  }

  const o: VxlanOverlay = {
    name: 'fastdp vxlan',
    kind: 'vxlan',
    setChoice(w) { st.choice = w },
    useBridgeMac(mac) { st.bridgeMac = mac },
    unavailable: () => st.why,

    async start(selfId) {
      st.self = selfId
      try {
        await deps.host.ensure({ bridge: config.bridge, mtu: config.mtu })
      } catch (err) {
        st.why = `no kernel vxlan: ${(err as Error).message.trim().split('\n').pop()}`
        log.warn(`${st.why}; sleeve only`)
        return
      }
      try {
        st.io = deps.openIo()
      } catch (err) {
        st.why = `no kernel vxlan heartbeats: ${(err as Error).message}`
        log.warn(`${st.why}; sleeve only`)
        await deps.host.remove().catch(warn('removing the device'))
        return
      }
      await traffic.start()
      if (st.bridgeMac) st.announcer.set([st.bridgeMac.toLowerCase()])
      st.beats = new TunnelHeartbeats(vxlanSender(st, config.mtu, sync), deps.clock, undefined, `packet socket on ${KERNEL_VXLAN_DEV}`)
      st.why = undefined
      pollLocalMacs()
      log.info(`kernel vxlan: ${KERNEL_VXLAN_DEV} (vni ${KERNEL_VXLAN_VNI}, udp ${KERNEL_VXLAN_PORT}, mtu ${config.mtu}) on ${config.bridge}${st.choice ? `: ${st.choice}` : ''}`)
    },

    connect: (p) => vxlanConnection(st, p, sync, track),
    heartbeats: () => st.beats,
    syncRoutes(hop, neighbours, names, broadcastTo) { st.relayFor = relaysBySleeve(hop, neighbours, names, broadcastTo) },
    relayed: () => [...st.relayFor.values()].reduce((n, l) => n + l.length, 0),

    async traffic(): Promise<FastPeerTraffic[]> {
      const byIp = await traffic.read()
      const out: FastPeerTraffic[] = []
      for (const p of st.peers.values()) {
        const t = byIp.get(p.ip)
        if (t) out.push({ peer: p.peer, ...t })
      }
      return out
    },

    async stop() {
      cancelPoll?.()
      cancelPoll = undefined
      st.beats?.close()
      st.beats = undefined
      st.io = undefined
      st.peers.clear()
      await fdb.idle()
      await traffic.stop()
      st.installed = emptyFdb()
      st.why = 'stopped'
      // the device goes with its fdb: without the router nothing would check the peers' health
      await deps.host.remove().catch(warn('removing the device'))
    },

    statusLine: () => vxlanStatusLine(st, o.relayed!()),
    report: () => vxlanReport(st, config.mtu),
  }
  return o
}

/** Bring the device's fdb to what the peers want; one change at a time, bursts merged. */
function fdbSyncer(st: VxState, host: KernelVxlanHost, warn: (what: string) => (err: Error) => void): { sync(this: void): Promise<unknown>; idle(this: void): Promise<unknown> } {
  let chain: Promise<unknown> = Promise.resolve()
  let queued = false
  return {
    sync() {
      if (queued) return chain
      queued = true
      chain = chain.then(async () => {
        queued = false
        if (!st.io) return
        const want = wantedFdb([...st.peers.values()].map((p) => ({ ip: p.ip, forwarding: p.forwarding, macs: p.macs.macs() })))
        const ops = planFdb(st.installed, want)
        if (!ops.length) return
        try {
          await host.applyFdb(ops)
          st.installed = want
        } catch (err) {
          // unknown what stuck: the next sync starts over from nothing installed
          st.installed = { flood: new Set(), macs: new Map([...st.installed.macs, ...want.macs]) }
          throw err
        }
      }).catch(warn('fdb'))
      return chain
    },
    idle: () => chain,
  }
}

/** Heartbeats out through our UDP socket, the peers' in off the device (their MAC pages with them). */
function vxlanSender(st: VxState, mtu: number, sync: () => Promise<unknown>): HeartbeatSender {
  let hear: ((src: number, full: boolean) => void) | undefined
  st.io!.onFrames((frames) => {
    for (const f of frames) {
      const h = decodeHeartbeat(f)
      if (!h || h.dst !== st.self) continue
      hear?.(h.src, h.full)
      const p = st.peers.get(h.src)
      if (p && h.page && p.macs.add(h.page) && p.forwarding) void sync()
    }
  })
  return {
    send(peer) {
      const p = st.peers.get(peer.shortId)
      if (!st.io || !p) return Promise.resolve()
      const full = p.sent++ % FASTDP_FULL_HEARTBEAT_EVERY === 0
      const fullBytes = mtu + 14 // a full-size frame: MTU problems show too
      const { page, next } = st.announcer.page(p.cursor, full ? macsPerFrame(fullBytes) : SMALL_PAGE_MACS)
      p.cursor = next
      const r = st.io.send(peer.ip, KERNEL_VXLAN_PORT, encodeHeartbeat({ vni: KERNEL_VXLAN_VNI, src: st.self, dst: peer.shortId, full, fullBytes, page }))
      return r === 0 ? Promise.resolve() : Promise.reject(new Error(`heartbeat to ${peer.ip}: ${r}`))
    },
    onReceive(fn) { hear = fn },
    close() { st.io?.close() },
  }
}

function vxlanConnection(st: VxState, p: OverlayPeer, sync: () => Promise<unknown>, track: () => Promise<unknown>): OverlayConnection {
  const id = p.shortId
  return {
    async start() {
      const prev = st.peers.get(id)
      st.peers.set(id, { peer: p.peer, ip: p.ip, forwarding: false, macs: prev?.ip === p.ip ? prev.macs : new MacCollector(), cursor: 0, sent: 0 })
      await track()
      if (prev?.forwarding) await sync()
    },
    health(now): OverlayHealth {
      const relays = st.relayFor.get(id)
      if (relays) return { ok: false, why: `${relays.join('; ')}: peers not reached directly go by sleeve, which relays (the kernel path cannot)` }
      return st.beats ? st.beats.health.verdict(id, now) : { ok: false, why: st.why ?? 'no kernel vxlan' }
    },
    async forward(on) {
      const x = st.peers.get(id)
      if (!x || x.forwarding === on) return
      x.forwarding = on
      await sync()
    },
    async stop() {
      if (!st.peers.delete(id)) return
      await Promise.all([sync(), track()])
    },
    status: () => 'fastdp vxlan',
  }
}

/**
 * Neighbours that must go by sleeve, with why: either way a frame would cross this host between
 * the tunnel and the sleeve, which the isolated ports forbid; the sleeve relays.
 */
function relaysBySleeve(hop: ReadonlyMap<number, number>, neighbours: ReadonlySet<number>, names: ReadonlyMap<number, string>,
  broadcastTo: ReadonlyMap<number, readonly number[]> | undefined): Map<number, string[]> {
  const next = new Map<number, string[]>()
  const add = (via: number, what: string) => next.set(via, [...(next.get(via) ?? []), what])
  for (const [dst, via] of hop) {
    if (dst !== via && neighbours.has(via)) add(via, `next hop to ${names.get(dst) ?? String(dst)}`)
  }
  for (const [child, sources] of broadcastTo ?? []) {
    if (neighbours.has(child)) add(child, `gets broadcasts of ${sources.map((s) => names.get(s) ?? String(s)).join(', ')} through us`)
  }
  return next
}

function vxlanStatusLine(st: VxState, relayed: number): string {
  if (st.why === 'not started' && st.choice) return `off: not started (kernel vxlan: ${st.choice})`
  if (st.why !== undefined) return `off: ${st.why}`
  const on = [...st.peers.values()].filter((p) => p.forwarding).length
  return `${KERNEL_VXLAN_DEV} (kernel vxlan${st.choice ? `: ${st.choice}` : ''}) ${on} of ${st.peers.size} peers, ${st.installed.macs.size} remote MACs` +
    `${relayed ? `, ${relayed} relayed by sleeve` : ''}`
}

function vxlanReport(st: VxState, mtu: number): Record<string, unknown> {
  if (st.why !== undefined) return { Unavailable: st.why }
  return {
    Device: KERNEL_VXLAN_DEV, Vni: KERNEL_VXLAN_VNI, Port: KERNEL_VXLAN_PORT, Mtu: mtu, Choice: st.choice,
    LocalMacs: st.announcer.size,
    Peers: Object.fromEntries([...st.peers].map(([id, p]) => [p.peer, { ShortId: id, Ip: p.ip, Forwarding: p.forwarding, Macs: p.macs.macs().size }])),
    Fdb: { Flood: [...st.installed.flood], Macs: st.installed.macs.size },
    RelayedBySleeve: Object.fromEntries([...st.relayFor].map(([id, l]) => [st.peers.get(id)?.peer ?? String(id), l])),
  }
}
