/**
 * The data plane inside the daemon: the Sleeve driver on the bridge's `vethwe-pcap` end and UDP
 * `meshHost:meshPort`, the sleeve overlay joining it to the mesh's connections, and the API the
 * `weave attach | detach | ps | expose | hide` commands call. Kept out of weaver.ts so the
 * daemon's wiring stays one screen per component.
 *
 * fastdp and the overlay switch: where an OVSDB server answers (config.ovsdb) the bridge is linked
 * to the OVS bridge `datapath` (routerLink `ovs`), whose router port `vethwe-ovsrtr` hands the
 * Sleeve (on its veth peer `vethwe-pcap`) what the datapath does not tunnel itself — one egress.
 * Every hello over a mesh connection says whether fastdp is ready here, or why not; a peer is
 * reached by fastdp when both ends say ready and full-size heartbeats cross the tunnel both ways
 * (fastdp-health; ten a second through one OpenFlow connection, so a blocked vxlan port falls
 * back to sleeve within about half a second and returns when they get through again), else by
 * sleeve, and status says why. Frames for peers we hold no connection to follow the mesh's
 * unicast routes: to the next hop with their own key, and that hop's datapath relays them.
 *
 * API (bodies JSON):
 *   POST /attach {target, addresses?: string[]}  → {id, mac, addresses}
 *   POST /detach {target, addresses?: string[]}  → {id, removed}
 *   GET  /ps                                     → text, `id MAC cidr…` a line
 *   POST /expose {addresses?: string[]}          → {addresses}
 *   POST /hide   {addresses?: string[]}          → {removed}
 *   GET  /status/overlay                         → text, one line per overlay connection
 * A target is a Docker container (name or id, looked up through the Docker API), a pid, a
 * network namespace path, or the name of one under /var/run/netns. Addresses use WEAVE_CIDR's
 * grammar (net:default, net:CIDR, ip:CIDR, bare CIDR); none means net:default.
 */
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import type { Clock, Logger } from './deps'
import type { WeaverConfig } from './config'
import type { ContainerNet } from './container-net'
import { ApiError, type ApiRouter } from './api'
import { EXPOSE_ID, SLEEVE_PCAP_END, formatPsLine, type BridgeInfo, type NetHost, type NetnsRef } from './net'
import {
  Sleeve, createSleeveOverlay, overlayConnectionLine, sleeveCryptoReady, startFastdp, type Fastdp, type FastdpConfig,
  type FastdpDeps, type OverlayMeshHost, type SleeveOverlay,
} from './overlay'
import type { OverlayPeerHello } from './overlay/sleeve-overlay'
import { rundirFor } from './overlay/fastdp'
import { createOpenFlowConn, type OpenFlowConn } from './overlay/fastdp-openflow'
import { FLOW_COOKIE, LEARNT_COOKIE } from './overlay/fastdp-flows'
import {
  FASTDP_COUNTER_INTERVAL_MS, FASTDP_COUNTER_TIMEOUT_MS, FASTDP_FULL_HEARTBEAT_TIMEOUT_MS, FASTDP_HEARTBEAT_INTERVAL_MS, FASTDP_HEARTBEAT_TIMEOUT_MS,
  FastdpHealth, heartbeatCounts, openflowHeartbeats, type HeartbeatSender,
} from './overlay/fastdp-health'
import { connectOvsdb } from './ovsdb'
import { EspDriver } from './overlay/fastdp-esp'
import { ESP_VXLAN_PORT } from './overlay/fastdp-ipsec'
import { createXfrm, probeEsp as probeKernelEsp, removeAllEsp, type Xfrm } from './net/xfrm'
import { createEngineClient, parseDockerHost, parseWeaveCidr, type CidrItem } from '../proxy'
import { formatCidr, parseCidr, type Allocator } from '../ipam'

export interface OverlayWiring {
  /** The mesh whose connections carry the overlay; call before start(). */
  useMesh(mesh: OverlayMeshHost): void
  start(): Promise<void>
  stop(): Promise<void>
  statusLines(): Array<[string, string]>
  report(): Record<string, unknown>
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
}

export interface OverlayWiringDeps {
  clock: Clock
  logger: Logger
  net: NetHost
  containerNet: ContainerNet
  allocator: Allocator
  router: ApiRouter
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
}

/** How often fastdp checks that the switch still holds our flows (ovs-vswitchd restarts lose them). */
const FASTDP_VERIFY_INTERVAL_MS = 30_000

async function probeOvsdb(target: string): Promise<void> {
  const c = await connectOvsdb(target)
  try { await c.echo('weave') } finally { c.close() }
}

/** fastdp's side of the overlay switch: its driver, or why it is not running here. */
interface FastdpState {
  driver: Fastdp | undefined
  datapathType: 'system' | 'netdev' | undefined
  /** Why there is no fastdp here (host-neutral: it also goes to peers in our hellos). */
  why: string | undefined
}

/** The overlay switch's choice for one peer: fastdp when both ends are ready, else sleeve and why. */
export function chooseOverlay(
  here: { ready: boolean; why?: string; encrypt?: boolean },
  h: Pick<OverlayPeerHello, 'ip' | 'fastdp'> & { esp?: unknown },
): { via: 'fastdp' | 'sleeve'; why?: string } {
  if (!here.ready) return { via: 'sleeve', why: `here: ${here.why ?? 'no fastdp'}` }
  if (h.fastdp === undefined) return { via: 'sleeve', why: 'peer without fastdp' }
  if (h.fastdp !== true) return { via: 'sleeve', why: `on the peer: ${h.fastdp}` }
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(h.ip)) return { via: 'sleeve', why: `peer address ${h.ip} is not IPv4` }
  // With a password the tunnel must be encrypted: an offer without ESP keys is a peer that
  // would send vxlan in clear (older version, or it lost ESP since its fastdp offer).
  if (here.encrypt && h.esp === undefined) return { via: 'sleeve', why: 'the peer offers fastdp without ESP encryption' }
  return { via: 'fastdp' }
}

export function wireOverlay(config: WeaverConfig, deps: OverlayWiringDeps): OverlayWiring {
  const log = deps.logger
  const fdp: FastdpState = { driver: undefined, datapathType: undefined, why: 'not started' }
  let bridge: BridgeInfo | undefined
  let cancelVerify: (() => void) | undefined
  const fastdpLog = (what: string) => (err: Error) => log.warn(`fastdp: ${what}: ${err.message}`)
  let health = new FastdpHealth()
  /** Heartbeat period: fast with packet-ins, slow when only flow counters tell (see fastdp-health). */
  let healthIntervalMs = FASTDP_HEARTBEAT_INTERVAL_MS
  /** When the next health tick is due (a late tick means our event loop stalled: no verdicts then). */
  let healthDue = 0
  let healthTicks = 0
  /** What we last told each peer about its heartbeats (re-sent on change, and every ~second). */
  const toldRx = new Map<number, boolean>()
  /** Peers that offered fastdp: their underlay IP and the switch's current choice. */
  const candidates = new Map<number, { peer: string; ip: string; via: 'fastdp' | 'sleeve'; why: string | undefined }>()
  let cancelHealth: (() => void) | undefined
  /** Peers whose hello arrived on a live connection (the datapath's direct neighbours). */
  const neighbours = new Set<number>()
  /** Reachable peers without a connection of ours, told to the datapath so relayed frames reach them. */
  const relayed = new Set<number>()
  let unsubscribeRoutes: (() => void) | undefined
  let sender: HeartbeatSender | undefined
  /** fastdp's OpenFlow connection to the bridge (heartbeats, and the instant part of a fallback). */
  let ofConn: OpenFlowConn | undefined
  let heartbeatErrors = 0

  /** Apply the health verdict for one candidate peer (only when the choice or its reason changed). */
  function reevaluate(id: number): void {
    const c = candidates.get(id)
    if (!c) return
    const v = health.verdict(id, deps.clock.now())
    const via = v.ok ? 'fastdp' : 'sleeve'
    const why = v.ok ? undefined : v.why
    if (via === c.via && why === c.why) return
    if (via !== c.via) log.info(`peer ${c.peer}: ${c.via} → ${via}${why ? ` (${why})` : ''}`)
    c.via = via
    c.why = why
    // Into the datapath first when moving to fastdp, out of the sleeve's routes after (the
    // datapath hands the peer's frames to the sleeve until its flows change); the reverse when
    // falling back: the sleeve takes the peer at once, before the tunnel flows go.
    if (via === 'sleeve') {
      overlay.setVia(id, via, why)
      // At once over our OpenFlow connection: without learnt flows the peer's frames flood, and
      // the router's flood copy goes out by sleeve (floodToRouter) before the bundle lands.
      ofConn?.deleteByCookie(LEARNT_COOKIE)
      fdp.driver?.setPeer(id, { via }).catch(fastdpLog(`peer ${c.peer}`))
    } else {
      const d = fdp.driver
      const done = () => { if (candidates.get(id) === c && c.via === 'fastdp') overlay.setVia(id, 'fastdp') }
      if (!d) return
      d.setPeer(id, { via }).then(done, (err: Error) => { fastdpLog(`peer ${c.peer}`)(err); done() })
    }
  }

  /** Every heartbeat interval: heartbeats out, (counters in), tell each peer what reached us, re-decide. */
  async function healthTick(): Promise<void> {
    const d = fdp.driver
    if (!d || !sender) return
    await Promise.all([...candidates].map(([id, c]) => sender!.send({ shortId: id, ip: c.ip }).catch((err: Error) => {
      if (heartbeatErrors++ === 0) log.warn(`fastdp heartbeat to ${c.peer}: ${err.message}`)
    })))
    if (!sender.onReceive) {
      const stats = await d.stats().catch((err: Error) => { fastdpLog('reading heartbeat counters')(err); return [] })
      health.onCounters(heartbeatCounts(stats, self()), deps.clock.now())
    }
    const now = deps.clock.now()
    // Late by more than a period: this process stalled, and heartbeats that arrived meanwhile
    // are still unread behind this timer. Judge at the next tick instead of falling back now.
    const stalled = now - healthDue > healthIntervalMs
    const periodic = healthTicks++ % Math.max(1, Math.round(1_000 / healthIntervalMs)) === 0
    for (const id of candidates.keys()) {
      const rx = health.rxOk(id, now)
      if (periodic || toldRx.get(id) !== rx) {
        overlay.sendFastdpStatus(id, rx)
        toldRx.set(id, rx)
      }
      if (!stalled) reevaluate(id)
    }
  }

  function scheduleHealth(): void {
    healthDue = deps.clock.now() + healthIntervalMs
    cancelHealth = deps.clock.setTimer(healthIntervalMs, () => {
      healthTick().catch(fastdpLog('health')).finally(() => { if (fdp.driver) scheduleHealth() })
    })
  }
  let selfId = 0
  const self = () => selfId

  /** Short ID ⇄ name of every peer in the topology with one. */
  function shortIds(m: OverlayMeshHost): { idOf: Map<string, number>; nameOf: Map<number, string> } {
    const idOf = new Map<string, number>(), nameOf = new Map<number, string>()
    for (const r of m.topology.records()) {
      if (r.shortId === undefined) continue
      idOf.set(r.name, r.shortId)
      nameOf.set(r.shortId, r.name)
    }
    return { idOf, nameOf }
  }

  /**
   * The datapath follows the mesh's unicast routes: every reachable peer is in its table (peers
   * we have no connection to as well, so frames for them go to their next hop with their own key
   * and that hop's datapath relays them), and each peer's frames go to the next hop the mesh
   * names. Whether that hop is reached by fastdp or by the sleeve is the overlay switch's choice
   * per neighbour, as for direct traffic. Run on every topology change.
   */
  function syncRoutes(): void {
    const d = fdp.driver
    if (!d || !mesh) return
    const m = mesh
    const { idOf, nameOf } = shortIds(m)
    const unicast = m.routes.unicast()
    const hop = new Map<number, number>()
    for (const [dst, via] of unicast) {
      const dstId = idOf.get(dst), viaId = idOf.get(via)
      if (dstId !== undefined && viaId !== undefined && dst !== m.identity.name && via !== m.identity.name) hop.set(dstId, viaId)
    }
    for (const id of hop.keys()) {
      if (id === selfId || neighbours.has(id) || relayed.has(id)) continue
      relayed.add(id)
      if (hop.get(id) !== id) log.info(`fastdp: peer ${nameOf.get(id)} (short ID ${id}) reached through ${nameOf.get(hop.get(id)!)}`)
      // `fastdp`: its frames (relayed to us by a fastdp hop) teach the datapath its MACs; as a
      // hop it has no address, so it is never tunnelled to directly
      d.setPeer(id, { via: 'fastdp', heartbeat: false }).catch(fastdpLog(`relayed peer ${nameOf.get(id)}`))
    }
    for (const id of [...relayed]) {
      if (hop.has(id) && !neighbours.has(id)) continue
      relayed.delete(id)
      if (!neighbours.has(id)) d.removePeer(id).catch(fastdpLog(`relayed peer ${id}`))
    }
    d.setRoutes((dst) => hop.get(dst)).catch(fastdpLog('routes'))
  }

  /** For `weave status connections`: how frames reach a peer we hold no connection to. */
  function relayInfo(peer: string): string | undefined {
    if (!mesh) return undefined
    const via = mesh.routes.unicast().get(peer as never)
    if (via === undefined || via === peer) return undefined
    const c = overlay.connections().find((x) => x.peer === via)
    if (!c) return undefined
    return `via ${c.peer}(${c.nickname}) ${c.overlay}`
  }

  const overlay: SleeveOverlay = createSleeveOverlay(
    {
      udpPort: config.meshPort, encrypt: config.password !== undefined && config.password !== '',
      fastdp: () => fdp.driver ? true : fdp.why ?? 'no fastdp',
      esp: () => esp !== undefined && fdp.driver !== undefined,
    },
    {
      clock: deps.clock, logger: log,
      onPeerHello(h) {
        if (!espFirst(h, () => this.onPeerHello?.(h))) return
        const c = chooseOverlay({ ready: fdp.driver !== undefined, why: fdp.why, encrypt: esp !== undefined }, h)
        neighbours.add(h.shortId)
        relayed.delete(h.shortId)
        toldRx.delete(h.shortId) // a new connection: tell it about its heartbeats at the next tick
        const local = localIpTo(h.peer)
        if (c.via === 'fastdp') {
          // Both ends can: sleeve until heartbeats prove the tunnel both ways (healthTick).
          health.remove(h.shortId)
          health.add(h.shortId, deps.clock.now())
          const why = 'waiting for fastdp heartbeats'
          candidates.set(h.shortId, { peer: h.peer, ip: h.ip, via: 'sleeve', why })
          overlay.setVia(h.shortId, 'sleeve', why)
          fdp.driver?.setPeer(h.shortId, { ip: h.ip, via: 'sleeve', heartbeat: true, localIp: local }).catch(fastdpLog(`peer ${h.peer}`))
          syncRoutes()
          return
        }
        candidates.delete(h.shortId)
        overlay.setVia(h.shortId, c.via, c.why)
        // Tell the datapath about sleeve peers too: they make floods go to the router port.
        fdp.driver?.setPeer(h.shortId, { via: 'sleeve', heartbeat: false }).catch(fastdpLog(`peer ${h.peer}`))
        syncRoutes()
      },
      onPeerGone(p) {
        candidates.delete(p.shortId)
        health.remove(p.shortId)
        neighbours.delete(p.shortId)
        const out = fdp.driver?.removePeer(p.shortId).catch(fastdpLog(`removing peer ${p.peer}`))
        espGone(p.shortId, out) // after the datapath stopped tunnelling to it: else vxlan would leave in clear
        syncRoutes() // still reachable through another peer: back in as a relayed one
      },
      onFastdpStatus(p) {
        health.onRemote(p.shortId, p.ok)
        reevaluate(p.shortId)
      },
      onEsp(p) { esp?.onControl(p.shortId, p.m) },
    },
  )
  let mesh: OverlayMeshHost | undefined
  let sleeve: Sleeve | undefined

  // ---- encrypted fastdp (with a password): kernel ESP on the vxlan tunnel, see fastdp-ipsec ----
  const esp = config.password ? new EspDriver(
    { rotation: config.espRotateMs ? { intervalMs: config.espRotateMs } : undefined },
    { clock: deps.clock, logger: log, xfrm: deps.xfrm ?? createXfrm(), send: (id, m) => { overlay.sendEsp(id, m) } },
  ) : undefined
  /** The hello whose ESP setup is under way or done, per peer (a reconnect brings a new one). */
  const espFor = new Map<number, { h: OverlayPeerHello; done: boolean }>()

  /**
   * Before a fastdp candidate gets any tunnel flow, its SAs, policies and plaintext drop must be
   * in place: true when that is so (or no ESP is needed), else starts the setup, keeps the peer
   * on sleeve meanwhile and calls `again` once it is done.
   */
  function espFirst(h: OverlayPeerHello, again: () => void): boolean {
    if (!esp || !h.esp) return true // no password, or chooseOverlay refuses fastdp without ESP
    if (chooseOverlay({ ready: fdp.driver !== undefined, why: fdp.why, encrypt: true }, h).via !== 'fastdp') return true
    const cur = espFor.get(h.shortId)
    if (cur?.h === h && cur.done) return true
    if (cur?.h === h) return false
    const local = h.esp.localIp
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(local)) return true // not IPv4: chooseOverlay's IPv4 rule applies to the peer only
    const entry = { h, done: false }
    espFor.set(h.shortId, entry)
    overlay.setVia(h.shortId, 'sleeve', 'setting up ESP')
    esp.add(h.shortId, {
      self: { name: mesh?.identity.name ?? '', ip: local, nonce: h.esp.ours },
      peer: { name: h.peer, ip: h.ip, nonce: h.esp.theirs },
      secret: h.esp.secret, port: ESP_VXLAN_PORT,
    }).then(() => {
      if (espFor.get(h.shortId) !== entry) return // gone meanwhile (espGone removes it)
      entry.done = true
      log.info(`peer ${h.peer}: ESP in place for fastdp (${local} ⇄ ${h.ip})`)
      again()
    }, (err: Error) => {
      if (espFor.get(h.shortId) !== entry) return
      espFor.delete(h.shortId)
      log.warn(`peer ${h.peer}: ESP setup failed, sleeve only: ${err.message}`)
      overlay.setVia(h.shortId, 'sleeve', `ESP setup failed: ${err.message.slice(0, 120)}`)
      fdp.driver?.setPeer(h.shortId, { via: 'sleeve', heartbeat: false }).catch(fastdpLog(`peer ${h.peer}`))
    })
    return false
  }

  /** The peer's connection is gone: its ESP goes once `datapathOut` (its flows' removal) settled. */
  function espGone(shortId: number, datapathOut: Promise<unknown> | undefined): void {
    if (!esp || !espFor.has(shortId)) return
    espFor.delete(shortId)
    esp.remove(shortId, datapathOut).catch(fastdpLog(`removing ESP of peer ${shortId}`))
  }
  /** Our underlay address on the mesh connection to `peer` (IPv4 only; fastdp's tunnel is IPv4). */
  function localIpTo(peer: string): string | undefined {
    const conn = mesh?.connections().get(peer as never)
    const ip = conn?.localAddr.replace(/:\d+$/, '').replace(/^::ffff:/, '')
    return ip && /^\d{1,3}(\.\d{1,3}){3}$/.test(ip) ? ip : undefined
  }
  let unavailable: string | undefined = 'not started'
  const attachApi = createAttachApi(config, deps, {
    attached(mac) { fdp.driver?.learnLocal(mac).catch(fastdpLog(`local MAC ${mac}`)) },
  })

  async function startFastdpHere(self_: number): Promise<void> {
    if (!fdp.datapathType || !bridge?.routerPort) return
    const start = deps.startFastdp ?? startFastdp
    let r: Awaited<ReturnType<typeof startFastdp>>
    try {
      r = await start({
        ovsdbTarget: config.ovsdb, datapathType: fdp.datapathType, self: self_, mtu: config.mtu,
        routerPort: bridge.routerPort, routerPortType: 'system', ovsRundir: config.ovsRundir, learn: true, floodToRouter: true,
      }, { clock: deps.clock, logger: log })
    } catch (err) {
      r = { ok: false, reason: (err as Error).message } // e.g. a short ID fastdp's 12-bit key cannot carry
    }
    if (!r.ok) {
      fdp.why = r.reason.replace(' on this host', '')
      log.warn(`fastdp unavailable, sleeve only: ${fdp.why}`)
      // back to today's layout: the sleeve straight on the bridge
      bridge = await deps.net.ensureBridge({ mtu: config.mtu, routerLink: 'pcap' })
      return
    }
    fdp.driver = r.fastdp
    fdp.why = undefined
    selfId = self_
    ofConn = deps.heartbeatSender ? undefined
      : createOpenFlowConn(path.join(config.ovsRundir ?? rundirFor(config.ovsdb), `${r.info.bridge}.mgmt`), { clock: deps.clock, logger: log })
    sender = deps.heartbeatSender ? deps.heartbeatSender(self_, r.fastdp) : openflowHeartbeats(ofConn!,
      { self: self_, ports: () => r.fastdp.info()?.ports, frameBytes: config.mtu + 14, cookie: FLOW_COOKIE }, // a full-size frame: MTU problems show too
    )
    const fast = sender.onReceive !== undefined
    healthIntervalMs = fast ? FASTDP_HEARTBEAT_INTERVAL_MS : FASTDP_COUNTER_INTERVAL_MS
    health = fast ? new FastdpHealth(FASTDP_HEARTBEAT_TIMEOUT_MS, FASTDP_FULL_HEARTBEAT_TIMEOUT_MS) : new FastdpHealth(FASTDP_COUNTER_TIMEOUT_MS)
    sender.onReceive?.((src, full) => health.onHeartbeat(src, deps.clock.now(), full))
    scheduleHealth()
    if (bridge.mac) await r.fastdp.learnLocal(bridge.mac).catch(fastdpLog('bridge MAC'))
    const verify = () => {
      cancelVerify = deps.clock.setTimer(FASTDP_VERIFY_INTERVAL_MS, () => {
        fdp.driver?.verify().catch(fastdpLog('verify')).finally(() => { if (fdp.driver) verify() })
      })
    }
    verify()
  }

  /** `weave report`'s fastdp part: the datapath, its ports and flow counts, routes and heartbeats. */
  function fastdpReport(d: Fastdp): Record<string, unknown> {
    const i = d.info()
    const now = deps.clock.now()
    return {
      ...i,
      Ovsdb: config.ovsdb,
      Datapath: i ? { Bridge: i.bridge, Type: i.datapathType, Ports: i.portNames, Flows: i.flows, LearntFlows: i.learntFlows } : undefined,
      RelayedPeers: [...relayed],
      Heartbeats: {
        IntervalMs: healthIntervalMs,
        Via: sender?.onReceive ? 'openflow packet-out/packet-in' : 'flow counters',
        Peers: Object.fromEntries([...candidates].map(([id, c]) => [c.peer, { ShortId: id, Via: c.via, RxOk: health.rxOk(id, now), Why: c.why }])),
      },
    }
  }

  /** `weave status`: `datapath (netdev) 12 flows, ovsdb unix:…` or `off: why`. */
  function fastdpLine(): string {
    const i = fdp.driver?.info()
    if (!i) return `off: ${fdp.why ?? 'not started'}`
    return `${i.bridge} (${i.datapathType}) ${i.flows} flows, ${i.peers} peers${relayed.size ? ` (${relayed.size} relayed)` : ''}, ovsdb ${config.ovsdb}`
  }
  attachApi.register(deps.router)
  deps.router.route('GET', '/status/overlay', () => ({ text: overlay.connections().map(overlayConnectionLine).join('\n') }))

  return {
    useMesh(m) { mesh = m },
    useBridge(br) { bridge = br },
    async routerLink() {
      if (config.noFastdp) { fdp.why = 'fastdp turned off (--no-fastdp)'; return 'pcap' }
      const kernel = (deps.kernelDatapath ?? (() => fs.existsSync('/sys/module/openvswitch')))()
      try {
        await (deps.probeOvsdb ?? probeOvsdb)(config.ovsdb)
      } catch (err) {
        const cause = (err as Error).message.split(': ').pop() // e.g. `connect ENOENT /run/…/db.sock`
        fdp.why = `no OVS datapath (${kernel ? '' : 'no openvswitch kernel module, and '}no OVSDB server at ${config.ovsdb}: ${cause})`
        return 'pcap'
      }
      if (config.password) {
        // With a password fastdp must be encrypted (kernel ESP); without it, sleeve only.
        const no = await (deps.probeEsp ?? (() => probeKernelEsp()))()
        if (no !== undefined) {
          fdp.why = `encrypted fastdp needs kernel ESP (${no})`
          return 'pcap'
        }
      }
      // Without the kernel module, an OVSDB server that answers means a userspace switch (the lab).
      fdp.datapathType = kernel ? 'system' : 'netdev'
      fdp.why = 'not started'
      return 'ovs'
    },
    async start() {
      if (!mesh) { unavailable = 'no mesh in this daemon'; return }
      // what a killed daemon left: policies naming SAs that no longer exist would block the tunnel
      if (esp && fdp.datapathType) await (deps.removeAllEsp ?? removeAllEsp)().catch(fastdpLog('removing old ESP state'))
      await startFastdpHere(mesh.identity.shortId())
      if (fdp.driver) {
        unsubscribeRoutes = mesh.view.onPeersChanged(syncRoutes)
        syncRoutes()
      }
      if (config.password) await sleeveCryptoReady()
      const s = new Sleeve(
        { self: mesh.identity.shortId(), bridgeIf: SLEEVE_PCAP_END, bindAddr: config.meshHost, port: config.meshPort },
        { clock: deps.clock, logger: log, routes: overlay.routes },
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
      cancelVerify?.()
      cancelHealth?.()
      sender?.close?.()
      sender = undefined
      ofConn = undefined
      toldRx.clear()
      unsubscribeRoutes?.()
      unsubscribeRoutes = undefined
      neighbours.clear()
      relayed.clear()
      const d = fdp.driver
      fdp.driver = undefined
      fdp.why = 'stopped'
      // flows go; the OVS bridge stays for the next launch (weave reset removes the links)
      await d?.stop().catch(fastdpLog('stop'))
      if (esp) {
        // only now: with the tunnel flows gone no vxlan can leave in clear without the policies
        espFor.clear()
        await esp.stop().catch(fastdpLog('ESP stop'))
        if (fdp.datapathType) await (deps.removeAllEsp ?? removeAllEsp)().catch(fastdpLog('ESP cleanup'))
      }
    },
    statusLines() {
      const conns = overlay.connections()
      const established = conns.filter((c) => c.state === 'established').length
      const lines: Array<[string, string]> = [
        ['Service', 'overlay'],
        ['Sleeve', unavailable ?? `udp ${config.meshHost}:${config.meshPort} on ${SLEEVE_PCAP_END}${config.password ? ', encrypted' : ''}`],
        ['Fastdp', fastdpLine()],
        ['Connections', `${conns.length} (${established} established)`],
      ]
      for (const c of conns) lines.push(['Connection', overlayConnectionLine(c)])
      return lines
    },
    connectionInfo(peer) {
      const c = overlay.connections().find((x) => x.peer === peer)
      if (!c) return relayInfo(peer)
      if (c.overlay === 'fastdp') {
        const enc = esp && [...espFor.values()].some((e) => e.done && e.h.peer === peer) ? ' encrypted esp' : ''
        return c.state === 'established' ? `fastdp${enc}` : `fastdp ${c.state}${enc}`
      }
      const why = c.why === undefined ? '' : ` (not fastdp: ${c.why})`
      return (c.state === 'established' ? `sleeve${c.mtu === undefined ? '' : ` mtu=${c.mtu}`}${c.encrypted ? ` encrypted${c.cipher ? ` ${c.cipher}` : ''}` : ''}` : `sleeve ${c.state}`) + why
    },
    report() {
      return {
        Overlay: fdp.driver ? 'fastdp+sleeve' : 'sleeve',
        Unavailable: unavailable,
        Fastdp: fdp.driver ? { ...fastdpReport(fdp.driver), ...(esp ? { Esp: esp.report() } : {}) } : { Unavailable: fdp.why },
        Connections: overlay.connections(),
        Control: overlay.stats,
        Sleeve: sleeve ? { ...sleeve.stats, MacTableSize: sleeve.macs.size } : undefined,
      }
    },
  }
}

// ---- attach / detach / ps / expose / hide ----

interface Target { id: string; netns: NetnsRef }

function createAttachApi(config: WeaverConfig, deps: OverlayWiringDeps, hooks: { attached(mac: string): void }) {
  const { net, containerNet, allocator } = deps
  const log = deps.logger.child('attach')
  /** Targets attached through the API (for `weave ps`; Docker containers are also found by their leases). */
  const attached = new Map<string, NetnsRef>()

  async function dockerInspect(name: string): Promise<{ id: string; pid: number } | undefined> {
    const ep = parseDockerHost(config.dockerApi)
    if (!ep.ok) return undefined
    let r
    try {
      r = await createEngineClient(ep.endpoint).request('GET', `/containers/${encodeURIComponent(name)}/json`)
    } catch {
      return undefined // no Docker here
    }
    if (r.status === 404) return undefined
    if (r.status !== 200) throw new ApiError(502, `docker inspect ${name}: HTTP ${r.status} ${r.text.trim()}`)
    const j = r.json as { Id?: string; State?: { Pid?: number; Running?: boolean } }
    if (!j.Id) return undefined
    if (!j.State?.Running || !j.State.Pid) throw new ApiError(409, `container ${name} is not running`)
    return { id: j.Id, pid: j.State.Pid }
  }

  async function resolve(target: unknown): Promise<Target> {
    if (typeof target !== 'string' || target === '') throw new ApiError(400, 'expected {"target": container name/id, pid or netns path}')
    if (/^\d+$/.test(target)) {
      if (!fs.existsSync(`/proc/${target}/ns/net`)) throw new ApiError(404, `no process ${target}`)
      return { id: target, netns: { pid: Number(target) } }
    }
    if (target.startsWith('/')) {
      if (!fs.existsSync(target)) throw new ApiError(404, `no network namespace at ${target}`)
      return { id: nsId(target), netns: { path: target } }
    }
    const d = await dockerInspect(target)
    if (d) return { id: d.id, netns: { pid: d.pid } }
    if (/^[A-Za-z0-9_.-]+$/.test(target) && fs.existsSync(`/var/run/netns/${target}`)) {
      return { id: nsId(`/var/run/netns/${target}`), netns: { path: `/var/run/netns/${target}` } }
    }
    throw new ApiError(404, `no container or network namespace named ${target}`)
  }

  function items(addresses: unknown): CidrItem[] {
    if (addresses === undefined) return []
    if (!Array.isArray(addresses) || addresses.some((a) => typeof a !== 'string')) throw new ApiError(400, 'addresses must be a list of strings')
    const r = parseWeaveCidr((addresses as string[]).join(' '))
    if (!r.ok) throw new ApiError(400, r.error.replace('WEAVE_CIDR entry', 'address'))
    if (r.none) throw new ApiError(400, '"none" makes no sense here')
    return r.items
  }

  /** Plain CIDRs for detach/hide (`ip:` prefix allowed). */
  function cidrs(addresses: unknown): string[] | undefined {
    if (addresses === undefined || (Array.isArray(addresses) && addresses.length === 0)) return undefined
    if (!Array.isArray(addresses)) throw new ApiError(400, 'addresses must be a list of strings')
    return addresses.map((a) => {
      const text = String(a).replace(/^ip:/, '')
      const c = parseCidr(text)
      if (!c) throw new ApiError(400, `"${a}" is not an address in CIDR form`)
      return formatCidr(c)
    })
  }

  function body(req: { body: Buffer }): Record<string, unknown> {
    if (!req.body.length) return {}
    try {
      const b = JSON.parse(req.body.toString('utf8'))
      if (typeof b === 'object' && b !== null && !Array.isArray(b)) return b as Record<string, unknown>
    } catch { /* fall through */ }
    throw new ApiError(400, 'expected a JSON object')
  }

  const fail = (err: unknown): never => {
    if (err instanceof ApiError) throw err
    throw new ApiError(500, (err as Error).message)
  }

  async function psTargets(): Promise<Array<{ id: string; netns: NetnsRef }>> {
    const out = new Map(attached)
    for (const o of allocator.owned()) {
      if (out.has(o.containerid) || !/^[0-9a-f]{64}$/.test(o.containerid)) continue
      const d = await dockerInspect(o.containerid).catch(() => undefined)
      if (d) out.set(o.containerid, { pid: d.pid })
    }
    return [...out].map(([id, netns]) => ({ id, netns }))
  }

  return {
    register(router: ApiRouter) {
      router.route('POST', '/attach', async (req) => {
        const b = body(req)
        const t = await resolve(b.target)
        const r = await containerNet.attach({ id: t.id, netns: t.netns, items: items(b.addresses) }).catch(fail)
        attached.set(t.id, t.netns)
        hooks.attached(r.mac)
        return { json: { id: t.id, mac: r.mac, addresses: r.addresses } }
      })
      router.route('POST', '/detach', async (req) => {
        const b = body(req)
        const t = await resolve(b.target)
        const r = await containerNet.detach({ id: t.id, netns: t.netns, addresses: cidrs(b.addresses) }).catch(fail)
        if (!containerNet.addressesOf(t.id).length) attached.delete(t.id)
        return { json: { id: t.id, removed: r.removed } }
      })
      router.route('GET', '/ps', async () => {
        const infos = await net.listAttached(await psTargets()).catch(fail)
        return { text: infos.map(formatPsLine).join('\n') }
      })
      router.route('POST', '/expose', async (req) => {
        const b = body(req)
        const want = items(b.addresses)
        const out: string[] = []
        for (const it of want.length ? want : [{ kind: 'net-default' } as CidrItem]) {
          let cidr: string
          try {
            if (it.kind === 'net-default') cidr = formatCidr(await allocator.allocate(EXPOSE_ID))
            else if (it.kind === 'net') cidr = formatCidr(await allocator.allocate(EXPOSE_ID, parseCidr(it.cidr)!))
            else { await allocator.claim(EXPOSE_ID, parseCidr(it.cidr)!); cidr = it.cidr }
          } catch (err) {
            throw new ApiError(503, `cannot get an address to expose: ${(err as Error).message}`)
          }
          await net.expose(cidr).catch(fail)
          out.push(cidr)
        }
        log.info(`exposed ${out.join(' ')}`)
        return { json: { addresses: out } }
      })
      router.route('POST', '/hide', async (req) => {
        const b = body(req)
        const held = allocator.lookup(EXPOSE_ID).map(formatCidr)
        const which = cidrs(b.addresses) ?? held
        const removed: string[] = []
        for (const cidr of which) {
          await net.hide(cidr).catch(fail)
          const c = parseCidr(cidr)!
          if (held.includes(cidr)) await allocator.release(EXPOSE_ID, c.ip)
          removed.push(cidr)
        }
        return { json: { removed } }
      })
    },
  }
}

/** A stable IPAM id (and `vethwepl` suffix) for a namespace path: distinct paths never share a prefix by accident. */
function nsId(p: string): string {
  let real = p
  try { real = fs.realpathSync(p) } catch { /* keep it */ }
  return 'ns' + crypto.createHash('sha256').update(real).digest('hex').slice(0, 14)
}
