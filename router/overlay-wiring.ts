/**
 * The data plane inside the daemon, wired: the Sleeve driver on the bridge's `vethwe-pcap` end
 * and UDP `meshHost:meshPort`; the fast overlay chosen for this host; the overlay switch that
 * picks one per peer and falls back (overlay/overlay-switch); and the attach API (attach-api).
 * Kept out of weaver.ts so the daemon's wiring stays one screen per component.
 *
 * The choice of fast overlay (routerLink, before the bridge is made): OVS fastdp on the kernel
 * datapath when the openvswitch module is there and OVSDB answers (overlay/ovs-overlay); else the
 * kernel's vxlan on the weave bridge (overlay/vxlan-overlay); the userspace OVS datapath only with
 * --fastdp-userspace (it is slower than sleeve); none with --no-fastdp, or with a password where
 * kernel ESP is missing. The sleeve is always there as the fallback; status says which and why.
 *
 * API: the attach/detach/ps/expose/hide routes (attach-api), and
 *   GET  /status/overlay                         → text, one line per overlay connection
 */
import type { Clock, Logger } from './deps'
import type { WeaverConfig } from './config'
import type { ContainerNet } from './container-net'
import type { ApiRouter } from './api'
import { DEFAULT_BRIDGE, SLEEVE_PCAP_END, type BridgeInfo, type NetHost } from './net'
import {
  NullOverlay, Sleeve, createOverlaySwitch, createOvsOverlay, createVxlanOverlay, kernelOvsModule, openVxlanIo, overlayConnectionLine, probeOvsdb,
  sleeveCryptoReady, startFastdp, type FastPeerTraffic, type Fastdp, type FastdpConfig, type FastdpDeps, type HeartbeatSender, type Overlay, type OverlayConnectionStatus,
  type OverlayMeshHost, type VxlanIo,
} from './overlay'
import type { PeerTraffic } from './metrics'
import { createXfrm, probeEsp as probeKernelEsp, removeAllEsp, type Xfrm } from './net'
import { createAttachApi, type PsSource } from './attach-api'
import { parseTrustedSubnets } from './trusted-subnets'
import type { Allocator } from '../ipam'

export { chooseOverlay } from './overlay'

export interface OverlayWiring {
  /** The mesh whose connections carry the overlay; call before start(). */
  useMesh(mesh: OverlayMeshHost): void
  start(): Promise<void>
  stop(): Promise<void>
  statusLines(): Array<[string, string]>
  report(): Record<string, unknown>
  /** Weave's NetworkRouterStatus fields: Interface, CaptureStats, MACs, OverlayDiagnostics. */
  routerReport(): Record<string, unknown>
  /**
   * What `weave status connections` can append for the connection to `peer`: `sleeve mtu=1448`
   * once the sleeve path is established, `sleeve pending` / `sleeve stale` before or after;
   * undefined when the overlay has no connection to it.
   */
  connectionInfo(peer: string): string | undefined
  /**
   * Before the bridge is made: `ovs` when fastdp may run here (an OVSDB server answers and fastdp
   * is not turned off), else `pcap`; the reason is kept for status.
   */
  routerLink(): Promise<'ovs' | 'pcap'>
  /** The bridge as ensureBridge made it (call before start()). */
  useBridge(br: BridgeInfo): void
  /** The overlay's connections (data path, state, MTU, encryption per peer), for metrics and /ui. */
  connections(): OverlayConnectionStatus[]
  /** fastdp→sleeve fallbacks since start, by the switch's reason. */
  fallbacks(): ReadonlyMap<string, number>
  /** Flows in the fastdp datapath (ours and learnt); undefined without fastdp. */
  flows(): number | undefined
  /**
   * Data frames and bytes exchanged with each neighbour, per data path: the sleeve's as of now,
   * the fast path's as of the last refreshTraffic().
   */
  traffic(): PeerTraffic[]
  /**
   * Read the fast path's counters (kernel or datapath: one nft or ovs-ofctl per read). Reads
   * younger than `maxAgeMs` are reused, and concurrent callers share one read.
   */
  refreshTraffic(maxAgeMs?: number): Promise<void>
}

export interface OverlayWiringDeps {
  clock: Clock
  logger: Logger
  net: NetHost
  containerNet: ContainerNet
  allocator: Allocator
  router: ApiRouter
  /** More `weave ps` lines (the Docker plugin's containers; see attach-api). */
  psSources?: PsSource[]
  /** Default: whether /sys/module/openvswitch exists (the kernel datapath). */
  kernelDatapath?: () => boolean
  /** Default: connect to the OVSDB server and echo. */
  probeOvsdb?: (target: string) => Promise<void>
  /** With a password: undefined when kernel ESP can protect fastdp here, else why not. Default: net/xfrm probeEsp. */
  probeEsp?: () => Promise<string | undefined>
  /** Encrypted fastdp's host changes. Default: net/xfrm createXfrm (ip xfrm + iptables). */
  xfrm?: Xfrm
  /** Remove every SA/policy of ours (start and stop with a password). Default: net/xfrm removeAllEsp. */
  removeAllEsp?: () => Promise<unknown>
  /** Default: router/overlay's startFastdp. */
  startFastdp?: (cfg: FastdpConfig, deps: FastdpDeps) => ReturnType<typeof startFastdp>
  /** Default: packet-out through ovs-ofctl. */
  heartbeatSender?: (self: number, fastdp: Fastdp) => HeartbeatSender
  /** The kernel vxlan path's sockets. Default: native packet + UDP sockets (overlay/vxlan-io). */
  vxlanIo?: () => VxlanIo
}

export function wireOverlay(config: WeaverConfig, deps: OverlayWiringDeps): OverlayWiring {
  const log = deps.logger
  const fastLog = (what: string) => (err: Error) => log.warn(`fastdp: ${what}: ${err.message}`)
  const ovs = createOvsOverlay({ ovsdb: config.ovsdb, ovsRundir: config.ovsRundir, mtu: config.mtu },
    { clock: deps.clock, logger: log, startFastdp: deps.startFastdp, heartbeatSender: deps.heartbeatSender })
  const kv = deps.net.kernelVxlan as NetHost['kernelVxlan'] | undefined // absent in fakes of tests that never start it
  const vx = createVxlanOverlay({ mtu: config.mtu, bridge: DEFAULT_BRIDGE }, {
    clock: deps.clock, logger: log, openIo: deps.vxlanIo ?? openVxlanIo,
    host: {
      ensure: (o) => kv!.ensure(o), remove: () => kv!.remove(), applyFdb: (ops) => kv!.applyFdb(ops), localMacs: (b) => kv!.localMacs(b),
      counters: kv?.counters,
    },
  })
  const none = new NullOverlay('not started')
  /** The fast overlay in force: OVS fastdp once chosen, else none (its reason in status). */
  let fast: Overlay & { sleeveOnly?(shortId: number): void } = none
  let bridge: BridgeInfo | undefined
  let mesh: OverlayMeshHost | undefined
  let sleeve: Sleeve | undefined
  let unavailable: string | undefined = 'not started'
  const xfrm = deps.xfrm ?? createXfrm()
  /** The fast path's counters as last read, and when (a clock time). */
  let fastTraffic: { at: number; peers: FastPeerTraffic[] } | undefined
  let reading: Promise<void> | undefined

  const trusted = parseTrustedSubnets((config.trustedSubnets ?? []).join(','))
  const sw = createOverlaySwitch(
    {
      udpPort: config.meshPort, encrypt: config.password !== undefined && config.password !== '', espRotateMs: config.espRotateMs,
      trusts: (ip) => trusted.trusts(ip),
    },
    { clock: deps.clock, logger: log, fast: () => fast, xfrm: () => xfrm },
  )
  const overlay = sw.sleeve
  const esp = sw.esp

  createAttachApi(config, deps, {
    attached(mac) { fast.learnLocal?.(mac) },
  }).register(deps.router)
  deps.router.route('GET', '/status/overlay', () => ({ text: overlay.connections().map(overlayConnectionLine).join('\n') }))

  /** The sleeve's data frames with each neighbour (by name), since start. */
  function sleeveTraffic(): PeerTraffic[] {
    const counts = sleeve?.trafficByPeer()
    if (!counts || !counts.size || !mesh) return []
    const nameOf = new Map<number, string>()
    for (const r of mesh.topology.records()) if (r.shortId !== undefined) nameOf.set(r.shortId, r.name)
    const encrypted = new Map(overlay.connections().map((c) => [c.peer, c.encrypted]))
    const out: PeerTraffic[] = []
    for (const [id, t] of counts) {
      const peer = nameOf.get(id)
      if (peer === undefined) continue
      out.push({
        peer, datapath: 'sleeve', encrypted: encrypted.get(peer) ?? !!config.password,
        txBytes: t.txBytes, rxBytes: t.rxBytes, txPackets: t.txFrames, rxPackets: t.rxFrames,
      })
    }
    return out
  }

  /** No fast path here, and why (status, and our hellos). */
  function noFast(why: string): 'pcap' {
    none.setWhy(why)
    fast = none
    return 'pcap'
  }

  return {
    useMesh(m) { mesh = m; sw.useMesh(m) },
    useBridge(br) { bridge = br },
    async routerLink() {
      if (config.noFastdp) return noFast('fastdp turned off (--no-fastdp)')
      const kernel = (deps.kernelDatapath ?? kernelOvsModule)()
      let noOvsdb: string | undefined
      try {
        await (deps.probeOvsdb ?? probeOvsdb)(config.ovsdb)
      } catch (err) {
        noOvsdb = (err as Error).message.split(': ').pop() // e.g. `connect ENOENT /run/…/db.sock`
      }
      if (config.password) {
        // With a password the fast path must be encrypted (kernel ESP, for OVS and vxlan alike); without it, sleeve only.
        const no = await (deps.probeEsp ?? (() => probeKernelEsp()))()
        if (no !== undefined) return noFast(`encrypted fastdp needs kernel ESP (${no})`)
      }
      if (noOvsdb === undefined && (kernel || config.fastdpUserspace)) {
        // Without the kernel module, only when asked for: the userspace datapath is slower than sleeve.
        ovs.datapathType = kernel ? 'system' : 'netdev'
        ovs.setWhy('not started')
        fast = ovs
        return 'ovs'
      }
      vx.setChoice(noOvsdb !== undefined
        ? `no OVS datapath (${kernel ? '' : 'no openvswitch kernel module, and '}no OVSDB server at ${config.ovsdb}: ${noOvsdb})`
        : 'no openvswitch kernel module (the userspace OVS datapath only with --fastdp-userspace)')
      fast = vx
      return 'pcap'
    },
    async start() {
      if (!mesh) { unavailable = 'no mesh in this daemon'; return }
      // what a killed daemon left: policies naming SAs that no longer exist would block the tunnel
      if (esp && fast !== none) await (deps.removeAllEsp ?? removeAllEsp)().catch(fastLog('removing old ESP state'))
      if (fast === ovs) {
        ovs.useRouterPort(bridge?.routerPort, bridge?.mac)
        await ovs.start(mesh.identity.shortId())
        if (ovs.unavailable() !== undefined) {
          // back to today's layout: the sleeve straight on the bridge
          bridge = await deps.net.ensureBridge({ mtu: config.mtu, routerLink: 'pcap' })
        }
      }
      if (fast === vx) {
        vx.useBridgeMac(bridge?.mac)
        await vx.start(mesh.identity.shortId())
      }
      sw.start()
      if (config.password) await sleeveCryptoReady()
      const s = new Sleeve(
        { self: mesh.identity.shortId(), bridgeIf: SLEEVE_PCAP_END, bindAddr: config.meshHost, port: config.meshPort },
        {
          clock: deps.clock, logger: log, routes: overlay.routes,
          // a middle host: sleeve peers' frames for a neighbour the fast overlay reaches
          toDatapath: (hop, src, dst, frames) => fast.relayFrames?.(hop, src, dst, frames) ?? 0,
        },
      )
      try {
        s.start()
      } catch (err) {
        // Refuse, say why, keep the control plane running: status shows the reason.
        unavailable = `sleeve cannot start: ${(err as Error).message}`
        log.error(unavailable)
        return
      }
      sleeve = s
      unavailable = undefined
      await overlay.attach(mesh, s)
    },
    async stop() {
      overlay.detach()
      sleeve?.stop()
      sleeve = undefined
      sw.stop()
      const hadFast = fast !== none
      await fast.stop()
      if (esp) {
        // only now: with the tunnels gone no vxlan can leave in clear without the policies
        await esp.stop().catch(fastLog('ESP stop'))
        if (hadFast) await (deps.removeAllEsp ?? removeAllEsp)().catch(fastLog('ESP cleanup'))
      }
    },
    statusLines() {
      const conns = overlay.connections()
      const established = conns.filter((c) => c.state === 'established').length
      const lines: Array<[string, string]> = [
        ['Service', 'overlay'],
        ['Sleeve', unavailable ?? `udp ${config.meshHost}:${config.meshPort} on ${SLEEVE_PCAP_END}${config.password ? ', encrypted' : ''}`],
        ['Fastdp', fast.statusLine()],
        ['Connections', `${conns.length} (${established} established)`],
      ]
      for (const c of conns) lines.push(['Connection', overlayConnectionLine(c)])
      return lines
    },
    connectionInfo: (peer) => sw.connectionInfo(peer),
    connections: () => overlay.connections(),
    fallbacks: () => sw.fallbacks(),
    flows() {
      if (fast.unavailable() !== undefined) return undefined
      const d = fast.report().Datapath as { Flows?: number; LearntFlows?: number } | undefined
      return d?.Flows === undefined ? undefined : d.Flows + (d.LearntFlows ?? 0)
    },
    refreshTraffic(maxAgeMs = 0) {
      const read = fast.traffic
      if (!read || fast.unavailable() !== undefined) { fastTraffic = undefined; return Promise.resolve() }
      if (fastTraffic && deps.clock.now() - fastTraffic.at < maxAgeMs) return Promise.resolve()
      reading ??= read.call(fast).then(
        (peers) => { fastTraffic = { at: deps.clock.now(), peers } },
        (err: Error) => { fastLog('reading traffic counters')(err) },
      ).finally(() => { reading = undefined })
      return reading
    },
    traffic() {
      const out = sleeveTraffic()
      const encrypted = esp !== undefined
      for (const t of fastTraffic?.peers ?? []) out.push({ ...t, datapath: 'fastdp', encrypted })
      return out
    },
    routerReport() {
      const up = fast.unavailable() === undefined
      const nick = new Map<string | number, string>()
      if (mesh) for (const r of mesh.topology.records()) if (r.shortId !== undefined) nick.set(r.shortId, `${r.name}\0${r.nickname}`)
      return {
        // Weave's: the device frames are captured on; ours names the data planes too
        Interface: fast === ovs && up ? `${DEFAULT_BRIDGE} (fastdp ${ovs.datapathType}) + sleeve on ${SLEEVE_PCAP_END}` : `${SLEEVE_PCAP_END} (sleeve${up ? ` + ${fast.kind ?? 'fastdp'}` : ''})`,
        CaptureStats: sleeve ? { FramesCaptured: sleeve.stats.captured, FramesInjected: sleeve.stats.injected } : {},
        MACs: sleeve ? sleeve.macs.dump().slice(0, 500).map((e) => {
          const [name = '', nickName = ''] = (nick.get(e.owner) ?? '').split('\0')
          return { Mac: e.mac, Name: name, NickName: nickName, LastSeen: new Date(deps.clock.now() - e.ageMs).toISOString() }
        }) : [],
        OverlayDiagnostics: { sleeve: overlay.stats, ...(up ? { fastdp: fast.report() } : {}) },
      }
    },
    report() {
      const up = fast.unavailable() === undefined
      return {
        Overlay: up ? 'fastdp+sleeve' : 'sleeve',
        Unavailable: unavailable,
        Fastdp: up ? { ...fast.report(), Heartbeats: sw.heartbeatReport(), ...(esp ? { Esp: esp.report() } : {}) } : { Unavailable: fast.unavailable() },
        Connections: overlay.connections(),
        Control: overlay.stats,
        Sleeve: sleeve ? { ...sleeve.stats, MacTableSize: sleeve.macs.size, LocalMacs: localMacs(sleeve) } : undefined,
      }
    },
  }
}

/** MACs the sleeve holds as behind our own bridge (a few hundred at most are shown). */
function localMacs(s: Sleeve): string[] {
  const self = s.macs.self
  return s.macs.dump().filter((e) => e.owner === self).slice(0, 500).map((e) => e.mac)
}
