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
  type OverlayMeshHost, type OverlaySwitch, type OvsOverlay, type VxlanIo, type VxlanOverlay,
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

/** What the wiring's pieces share. */
interface Wired {
  readonly config: WeaverConfig
  readonly deps: OverlayWiringDeps
  readonly log: Logger
  readonly fastLog: (what: string) => (err: Error) => void
  readonly ovs: OvsOverlay
  readonly vx: VxlanOverlay
  readonly none: NullOverlay
  /** The fast overlay in force: OVS fastdp once chosen, else none (its reason in status). */
  fast: Overlay & { sleeveOnly?(shortId: number): void }
  bridge: BridgeInfo | undefined
  mesh: OverlayMeshHost | undefined
  sleeve: Sleeve | undefined
  unavailable: string | undefined
  readonly sw: OverlaySwitch
  /** The fast path's counters as last read, and when (a clock time). */
  fastTraffic: { at: number; peers: FastPeerTraffic[] } | undefined
  reading: Promise<void> | undefined
}

export function wireOverlay(config: WeaverConfig, deps: OverlayWiringDeps): OverlayWiring {
  const log = deps.logger
  const xfrm = deps.xfrm ?? createXfrm()
  const trusted = parseTrustedSubnets((config.trustedSubnets ?? []).join(','))
  const none = new NullOverlay('not started')
  const w: Wired = {
    config, deps, log, fastLog: (what) => (err) => log.warn(`fastdp: ${what}: ${err.message}`), ...fastOverlays(config, deps), none,
    fast: none, bridge: undefined, mesh: undefined, sleeve: undefined, unavailable: 'not started', fastTraffic: undefined, reading: undefined,
    sw: createOverlaySwitch(
      {
        udpPort: config.meshPort, encrypt: config.password !== undefined && config.password !== '', espRotateMs: config.espRotateMs,
        trusts: (ip) => trusted.trusts(ip),
      },
      { clock: deps.clock, logger: log, fast: () => w.fast, xfrm: () => xfrm },
    ),
  }
  const { sw } = w
  const overlay = sw.sleeve

  createAttachApi(config, deps, {
    attached(mac) { w.fast.learnLocal?.(mac) },
  }).register(deps.router)
  deps.router.route('GET', '/status/overlay', () => ({ text: overlay.connections().map(overlayConnectionLine).join('\n') }))

  return {
    useMesh(m) { w.mesh = m; sw.useMesh(m) },
    useBridge(br) { w.bridge = br },
    routerLink: () => chooseFast(w),
    start: () => startOverlay(w),
    async stop() {
      overlay.detach()
      w.sleeve?.stop()
      w.sleeve = undefined
      sw.stop()
      const hadFast = w.fast !== none
      await w.fast.stop()
      if (sw.esp) {
        // only now: with the tunnels gone no vxlan can leave in clear without the policies
        await sw.esp.stop().catch(w.fastLog('ESP stop'))
        if (hadFast) await (deps.removeAllEsp ?? removeAllEsp)().catch(w.fastLog('ESP cleanup'))
      }
    },
    statusLines() {
      const conns = overlay.connections()
      const established = conns.filter((c) => c.state === 'established').length
      const lines: Array<[string, string]> = [
        ['Service', 'overlay'],
        ['Sleeve', w.unavailable ?? `udp ${config.meshHost}:${config.meshPort} on ${SLEEVE_PCAP_END}${config.password ? ', encrypted' : ''}`],
        ['Fastdp', w.fast.statusLine()],
        ['Connections', `${conns.length} (${established} established)`],
      ]
      for (const c of conns) lines.push(['Connection', overlayConnectionLine(c)])
      return lines
    },
    connectionInfo: (peer) => sw.connectionInfo(peer),
    connections: () => overlay.connections(),
    fallbacks: () => sw.fallbacks(),
    flows() {
      if (w.fast.unavailable() !== undefined) return undefined
      const d = w.fast.report().Datapath as { Flows?: number; LearntFlows?: number } | undefined
      return d?.Flows === undefined ? undefined : d.Flows + (d.LearntFlows ?? 0)
    },
    refreshTraffic: (maxAgeMs = 0) => refreshFastTraffic(w, maxAgeMs),
    traffic() {
      const out = sleeveTraffic(w)
      const encrypted = sw.esp !== undefined
      for (const t of w.fastTraffic?.peers ?? []) out.push({ ...t, datapath: 'fastdp', encrypted })
      return out
    },
    routerReport: () => overlayRouterReport(w),
    report: () => overlayReport(w),
  }
}

/** The two fast overlays, made (no I/O) before the choice between them. */
function fastOverlays(config: WeaverConfig, deps: OverlayWiringDeps): { ovs: OvsOverlay; vx: VxlanOverlay } {
  const ovs = createOvsOverlay({ ovsdb: config.ovsdb, ovsRundir: config.ovsRundir, mtu: config.mtu },
    { clock: deps.clock, logger: deps.logger, startFastdp: deps.startFastdp, heartbeatSender: deps.heartbeatSender })
  const kv = deps.net.kernelVxlan as NetHost['kernelVxlan'] | undefined // absent in fakes of tests that never start it
  const vx = createVxlanOverlay({ mtu: config.mtu, bridge: DEFAULT_BRIDGE }, {
    clock: deps.clock, logger: deps.logger, openIo: deps.vxlanIo ?? openVxlanIo,
    host: {
      ensure: (o) => kv!.ensure(o), remove: () => kv!.remove(), applyFdb: (ops) => kv!.applyFdb(ops), localMacs: (b) => kv!.localMacs(b),
      counters: kv?.counters,
    },
  })
  return { ovs, vx }
}

/** No fast path here, and why (status, and our hellos). */
function noFast(w: Wired, why: string): 'pcap' {
  w.none.setWhy(why)
  w.fast = w.none
  return 'pcap'
}

/** routerLink(): which fast overlay runs here (before the bridge is made), and so the bridge's layout. */
async function chooseFast(w: Wired): Promise<'ovs' | 'pcap'> {
  const { config, deps, ovs, vx } = w
  if (config.noFastdp) return noFast(w, 'fastdp turned off (--no-fastdp)')
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
    if (no !== undefined) return noFast(w, `encrypted fastdp needs kernel ESP (${no})`)
  }
  if (noOvsdb === undefined && (kernel || config.fastdpUserspace)) {
    // Without the kernel module, only when asked for: the userspace datapath is slower than sleeve.
    ovs.datapathType = kernel ? 'system' : 'netdev'
    ovs.setWhy('not started')
    w.fast = ovs
    return 'ovs'
  }
  vx.setChoice(noOvsdb !== undefined
    ? `no OVS datapath (${kernel ? '' : 'no openvswitch kernel module, and '}no OVSDB server at ${config.ovsdb}: ${noOvsdb})`
    : 'no openvswitch kernel module (the userspace OVS datapath only with --fastdp-userspace)')
  w.fast = vx
  return 'pcap'
}

async function startOverlay(w: Wired): Promise<void> {
  const { config, deps, log, ovs, vx, sw, mesh } = w
  const overlay = sw.sleeve
  if (!mesh) { w.unavailable = 'no mesh in this daemon'; return }
  // what a killed daemon left: policies naming SAs that no longer exist would block the tunnel
  if (sw.esp && w.fast !== w.none) await (deps.removeAllEsp ?? removeAllEsp)().catch(w.fastLog('removing old ESP state'))
  if (w.fast === ovs) {
    ovs.useRouterPort(w.bridge?.routerPort, w.bridge?.mac)
    await ovs.start(mesh.identity.shortId())
    if (ovs.unavailable() !== undefined) {
      // back to today's layout: the sleeve straight on the bridge
      w.bridge = await deps.net.ensureBridge({ mtu: config.mtu, routerLink: 'pcap' })
    }
  }
  if (w.fast === vx) {
    vx.useBridgeMac(w.bridge?.mac)
    await vx.start(mesh.identity.shortId())
  }
  sw.start()
  if (config.password) await sleeveCryptoReady()
  const s = new Sleeve(
    { self: mesh.identity.shortId(), bridgeIf: SLEEVE_PCAP_END, bindAddr: config.meshHost, port: config.meshPort },
    {
      clock: deps.clock, logger: log, routes: overlay.routes,
      // a middle host: sleeve peers' frames for a neighbour the fast overlay reaches
      toDatapath: (hop, src, dst, frames) => w.fast.relayFrames?.(hop, src, dst, frames) ?? 0,
    },
  )
  try {
    s.start()
  } catch (err) {
    // Refuse, say why, keep the control plane running: status shows the reason.
    w.unavailable = `sleeve cannot start: ${(err as Error).message}`
    log.error(w.unavailable)
    return
  }
  w.sleeve = s
  w.unavailable = undefined
  await overlay.attach(mesh, s)
}

/** Read the fast path's counters unless a read younger than `maxAgeMs` is at hand; callers meanwhile share one read. */
function refreshFastTraffic(w: Wired, maxAgeMs: number): Promise<void> {
  const fast = w.fast
  if (!fast.traffic || fast.unavailable() !== undefined) { w.fastTraffic = undefined; return Promise.resolve() }
  if (w.fastTraffic && w.deps.clock.now() - w.fastTraffic.at < maxAgeMs) return Promise.resolve()
  w.reading ??= fast.traffic().then(
    (peers) => { w.fastTraffic = { at: w.deps.clock.now(), peers } },
    (err: Error) => { w.fastLog('reading traffic counters')(err) },
  ).finally(() => { w.reading = undefined })
  return w.reading
}

/** The sleeve's data frames with each neighbour (by name), since start. */
function sleeveTraffic(w: Wired): PeerTraffic[] {
  const counts = w.sleeve?.trafficByPeer()
  if (!counts || !counts.size || !w.mesh) return []
  const nameOf = new Map<number, string>()
  for (const r of w.mesh.topology.records()) if (r.shortId !== undefined) nameOf.set(r.shortId, r.name)
  const encrypted = new Map(w.sw.sleeve.connections().map((c) => [c.peer, c.encrypted]))
  const out: PeerTraffic[] = []
  for (const [id, t] of counts) {
    const peer = nameOf.get(id)
    if (peer === undefined) continue
    out.push({
      peer, datapath: 'sleeve', encrypted: encrypted.get(peer) ?? !!w.config.password,
      txBytes: t.txBytes, rxBytes: t.rxBytes, txPackets: t.txFrames, rxPackets: t.rxFrames,
    })
  }
  return out
}

/** Weave's NetworkRouterStatus fields: Interface, CaptureStats, MACs, OverlayDiagnostics. */
function overlayRouterReport(w: Wired): Record<string, unknown> {
  const { fast, ovs, sleeve, mesh, deps } = w
  const overlay = w.sw.sleeve
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
}

function overlayReport(w: Wired): Record<string, unknown> {
  const { fast, sw, sleeve } = w
  const overlay = sw.sleeve
  const up = fast.unavailable() === undefined
  return {
    Overlay: up ? 'fastdp+sleeve' : 'sleeve',
    Unavailable: w.unavailable,
    Fastdp: up ? { ...fast.report(), Heartbeats: sw.heartbeatReport(), ...(sw.esp ? { Esp: sw.esp.report() } : {}) } : { Unavailable: fast.unavailable() },
    Connections: overlay.connections(),
    Control: overlay.stats,
    Sleeve: sleeve ? { ...sleeve.stats, MacTableSize: sleeve.macs.size, LocalMacs: localMacs(sleeve) } : undefined,
  }
}

/** MACs the sleeve holds as behind our own bridge (a few hundred at most are shown). */
function localMacs(s: Sleeve): string[] {
  const self = s.macs.self
  return s.macs.dump().filter((e) => e.owner === self).slice(0, 500).map((e) => e.mac)
}
