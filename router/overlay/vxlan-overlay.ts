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

export function createVxlanOverlay(config: VxlanOverlayConfig, deps: VxlanOverlayDeps): VxlanOverlay {
  const log = deps.logger
  const warn = (what: string) => (err: Error) => log.warn(`kernel vxlan: ${what}: ${err.message}`)
  let why: string | undefined = 'not started'
  let choice = ''
  let bridgeMac: string | undefined
  let self = 0
  let io: VxlanIo | undefined
  let beats: TunnelHeartbeats | undefined
  let cancelPoll: (() => void) | undefined
  const peers = new Map<number, VxPeer>()
  /** Neighbours that are our next hop to other peers (the sleeve relays; the kernel cannot), with those peers' names. */
  let relayFor = new Map<number, string[]>()
  const announcer = new MacAnnouncer()
  let installed: FdbState = emptyFdb()
  let chain: Promise<unknown> = Promise.resolve()
  let queued = false
  const traffic = new VxlanTraffic(deps.host.counters, log)
  /** Count the traffic of exactly the peers we hold (their underlay addresses). */
  const track = () => traffic.track(new Set([...peers.values()].map((p) => p.ip)))

  /** Bring the device's fdb to what the peers want; one change at a time, bursts merged. */
  function sync(): Promise<unknown> {
    if (queued) return chain
    queued = true
    chain = chain.then(async () => {
      queued = false
      if (!io) return
      const want = wantedFdb([...peers.values()].map((p) => ({ ip: p.ip, forwarding: p.forwarding, macs: p.macs.macs() })))
      const ops = planFdb(installed, want)
      if (!ops.length) return
      try {
        await deps.host.applyFdb(ops)
        installed = want
      } catch (err) {
        // unknown what stuck: the next sync starts over from nothing installed
        installed = { flood: new Set(), macs: new Map([...installed.macs, ...want.macs]) }
        throw err
      }
    }).catch(warn('fdb'))
    return chain
  }

  function sender(): HeartbeatSender {
    let hear: ((src: number, full: boolean) => void) | undefined
    io!.onFrames((frames) => {
      for (const f of frames) {
        const h = decodeHeartbeat(f)
        if (!h || h.dst !== self) continue
        hear?.(h.src, h.full)
        const p = peers.get(h.src)
        if (p && h.page && p.macs.add(h.page) && p.forwarding) void sync()
      }
    })
    return {
      send(peer) {
        const p = peers.get(peer.shortId)
        if (!io || !p) return Promise.resolve()
        const full = p.sent++ % FASTDP_FULL_HEARTBEAT_EVERY === 0
        const fullBytes = config.mtu + 14 // a full-size frame: MTU problems show too
        const { page, next } = announcer.page(p.cursor, full ? macsPerFrame(fullBytes) : SMALL_PAGE_MACS)
        p.cursor = next
        const r = io.send(peer.ip, KERNEL_VXLAN_PORT, encodeHeartbeat({ vni: KERNEL_VXLAN_VNI, src: self, dst: peer.shortId, full, fullBytes, page }))
        return r === 0 ? Promise.resolve() : Promise.reject(new Error(`heartbeat to ${peer.ip}: ${r}`))
      },
      onReceive(fn) { hear = fn },
      close() { io?.close() },
    }
  }

  function pollLocalMacs(): void {
    cancelPoll = deps.clock.setTimer(LOCAL_MACS_INTERVAL_MS, () => {
      deps.host.localMacs(config.bridge).then((macs) => {
        if (announcer.set(bridgeMac ? [...macs, bridgeMac.toLowerCase()] : macs)) log.debug(`kernel vxlan: announcing ${announcer.size} local MACs`)
      }, warn('reading local MACs')).finally(() => { if (io) pollLocalMacs() })
    })
  }

  const o: VxlanOverlay = {
    name: 'fastdp vxlan',
    kind: 'vxlan',
    setChoice(w) { choice = w },
    useBridgeMac(mac) { bridgeMac = mac },
    unavailable: () => why,

    async start(selfId) {
      self = selfId
      try {
        await deps.host.ensure({ bridge: config.bridge, mtu: config.mtu })
      } catch (err) {
        why = `no kernel vxlan: ${(err as Error).message.trim().split('\n').pop()}`
        log.warn(`${why}; sleeve only`)
        return
      }
      try {
        io = deps.openIo()
      } catch (err) {
        why = `no kernel vxlan heartbeats: ${(err as Error).message}`
        log.warn(`${why}; sleeve only`)
        await deps.host.remove().catch(warn('removing the device'))
        return
      }
      await traffic.start()
      if (bridgeMac) announcer.set([bridgeMac.toLowerCase()])
      beats = new TunnelHeartbeats(sender(), deps.clock, undefined, `packet socket on ${KERNEL_VXLAN_DEV}`)
      why = undefined
      pollLocalMacs()
      log.info(`kernel vxlan: ${KERNEL_VXLAN_DEV} (vni ${KERNEL_VXLAN_VNI}, udp ${KERNEL_VXLAN_PORT}, mtu ${config.mtu}) on ${config.bridge}${choice ? `: ${choice}` : ''}`)
    },

    connect(p: OverlayPeer): OverlayConnection {
      const id = p.shortId
      return {
        async start() {
          const prev = peers.get(id)
          peers.set(id, { peer: p.peer, ip: p.ip, forwarding: false, macs: prev?.ip === p.ip ? prev.macs : new MacCollector(), cursor: 0, sent: 0 })
          await track()
          if (prev?.forwarding) await sync()
        },
        health(now): OverlayHealth {
          const relays = relayFor.get(id)
          if (relays) return { ok: false, why: `${relays.join('; ')}: peers not reached directly go by sleeve, which relays (the kernel path cannot)` }
          return beats ? beats.health.verdict(id, now) : { ok: false, why: why ?? 'no kernel vxlan' }
        },
        async forward(on) {
          const x = peers.get(id)
          if (!x || x.forwarding === on) return
          x.forwarding = on
          await sync()
        },
        async stop() {
          if (!peers.delete(id)) return
          await Promise.all([sync(), track()])
        },
        status: () => 'fastdp vxlan',
      }
    },

    heartbeats: () => beats,

    syncRoutes(hop, neighbours, names, broadcastTo) {
      // Either way a frame would cross this host between the tunnel and the sleeve, which the
      // isolated ports forbid: such a neighbour goes by sleeve, which relays.
      const next = new Map<number, string[]>()
      const add = (via: number, what: string) => next.set(via, [...(next.get(via) ?? []), what])
      for (const [dst, via] of hop) {
        if (dst !== via && neighbours.has(via)) add(via, `next hop to ${names.get(dst) ?? String(dst)}`)
      }
      for (const [child, sources] of broadcastTo ?? []) {
        if (neighbours.has(child)) add(child, `gets broadcasts of ${sources.map((s) => names.get(s) ?? String(s)).join(', ')} through us`)
      }
      relayFor = next
    },

    relayed: () => [...relayFor.values()].reduce((n, l) => n + l.length, 0),

    async traffic(): Promise<FastPeerTraffic[]> {
      const byIp = await traffic.read()
      const out: FastPeerTraffic[] = []
      for (const p of peers.values()) {
        const t = byIp.get(p.ip)
        if (t) out.push({ peer: p.peer, ...t })
      }
      return out
    },

    async stop() {
      cancelPoll?.()
      cancelPoll = undefined
      beats?.close()
      beats = undefined
      io = undefined
      peers.clear()
      await chain
      await traffic.stop()
      installed = emptyFdb()
      why = 'stopped'
      // the device goes with its fdb: without the router nothing would check the peers' health
      await deps.host.remove().catch(warn('removing the device'))
    },

    statusLine() {
      if (why === 'not started' && choice) return `off: not started (kernel vxlan: ${choice})`
      if (why !== undefined) return `off: ${why}`
      const on = [...peers.values()].filter((p) => p.forwarding).length
      const relayed = o.relayed!()
      return `${KERNEL_VXLAN_DEV} (kernel vxlan${choice ? `: ${choice}` : ''}) ${on} of ${peers.size} peers, ${installed.macs.size} remote MACs` +
        `${relayed ? `, ${relayed} relayed by sleeve` : ''}`
    },

    report() {
      if (why !== undefined) return { Unavailable: why }
      return {
        Device: KERNEL_VXLAN_DEV, Vni: KERNEL_VXLAN_VNI, Port: KERNEL_VXLAN_PORT, Mtu: config.mtu, Choice: choice,
        LocalMacs: announcer.size,
        Peers: Object.fromEntries([...peers].map(([id, p]) => [p.peer, { ShortId: id, Ip: p.ip, Forwarding: p.forwarding, Macs: p.macs.macs().size }])),
        Fdb: { Flood: [...installed.flood], Macs: installed.macs.size },
        RelayedBySleeve: Object.fromEntries([...relayFor].map(([id, l]) => [peers.get(id)?.peer ?? String(id), l])),
      }
    },
  }
  return o
}
