/**
 * OVS fastdp as an Overlay: the OVS bridge `datapath` (kernel module, or the userspace datapath
 * when asked for), linked to the weave bridge, whose router port `vethwe-ovsrtr` hands the
 * sleeve (on its veth peer `vethwe-pcap`) what the datapath does not tunnel itself — one egress.
 * Heartbeats go through one OpenFlow connection to the bridge (packet-out/packet-in), so a
 * blocked vxlan port falls back within about half a second. Frames for peers we hold no
 * connection to follow the mesh's unicast routes: to the next hop with their own key, and that
 * hop's datapath relays them (syncRoutes).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import type { Clock, Logger } from '../deps'
import { connectOvsdb } from '../ovsdb'
import { rundirFor, startFastdp, type Fastdp, type FastdpConfig, type FastdpDeps } from './fastdp'
import { createOpenFlowConn, type OpenFlowConn } from './fastdp-openflow'
import { FLOW_COOKIE, LEARNT_COOKIE, tunnelKey } from './fastdp-flows'
import { heartbeatCounts, openflowHeartbeats, type HeartbeatSender } from './fastdp-health'
import { TunnelHeartbeats } from './tunnel-heartbeats'
import type { FastPeerTraffic, Overlay, OverlayConnection, OverlayPeer } from './overlay'

/** How often fastdp checks that the switch still holds our flows (ovs-vswitchd restarts lose them). */
const FASTDP_VERIFY_INTERVAL_MS = 30_000

export interface OvsOverlayConfig {
  ovsdb: string
  ovsRundir?: string
  mtu: number
}

export interface OvsOverlayDeps {
  clock: Clock
  logger: Logger
  /** Default: router/overlay's startFastdp. */
  startFastdp?: (cfg: FastdpConfig, deps: FastdpDeps) => ReturnType<typeof startFastdp>
  /** Default: packet-out through the bridge's OpenFlow connection. */
  heartbeatSender?: (self: number, fastdp: Fastdp) => HeartbeatSender
}

/** Default: connect to the OVSDB server and echo. */
export async function probeOvsdb(target: string): Promise<void> {
  const c = await connectOvsdb(target)
  try { await c.echo('weave') } finally { c.close() }
}

/** Whether the kernel has the openvswitch module (the kernel datapath). */
export const kernelOvsModule = (): boolean => fs.existsSync('/sys/module/openvswitch')

export interface OvsOverlay extends Overlay {
  /** The datapath type to run (set by the choice, before start). */
  datapathType: 'system' | 'netdev' | undefined
  /** Why there is no fastdp (before start: the choice's reason). */
  setWhy(why: string | undefined): void
  /** The router port of the weave bridge's OVS layout (call before start). */
  useRouterPort(port: string | undefined, bridgeMac: string | undefined): void
  /** Peers on the sleeve only: the datapath floods their frames to the router port. */
  sleeveOnly(shortId: number): void
  /** The datapath driver while running. */
  driver(): Fastdp | undefined
}

/** What the overlay's pieces share while it runs. */
interface OvsState {
  driver: Fastdp | undefined
  why: string | undefined
  ofConn: OpenFlowConn | undefined
  beats: TunnelHeartbeats | undefined
  selfId: number
  /** Reachable peers without a connection of ours, told to the datapath so relayed frames reach them. */
  readonly relayed: Set<number>
  /** Underlay address of each peer we hold a connection to (where a handed-off frame is tunnelled). */
  readonly peerIps: Map<number, string>
  /** Their names (the traffic counters are by address, the metrics by name). */
  readonly peerNames: Map<number, string>
  relayOutErrors: number
}

type WarnFn = (what: string) => (err: Error) => void

export function createOvsOverlay(config: OvsOverlayConfig, deps: OvsOverlayDeps): OvsOverlay {
  const log = deps.logger
  const fastdpLog: WarnFn = (what) => (err) => log.warn(`fastdp: ${what}: ${err.message}`)
  const st: OvsState = {
    driver: undefined, why: 'not started', ofConn: undefined, beats: undefined, selfId: 0,
    relayed: new Set(), peerIps: new Map(), peerNames: new Map(), relayOutErrors: 0,
  }
  let routerPort: string | undefined
  let bridgeMac: string | undefined
  let cancelVerify: (() => void) | undefined

  const o: OvsOverlay = {
    name: 'fastdp',
    datapathType: undefined,
    setWhy(w) { st.why = w },
    useRouterPort(port, mac) { routerPort = port; bridgeMac = mac },
    driver: () => st.driver,
    unavailable: () => st.driver ? undefined : st.why ?? 'no fastdp',

    async start(self) {
      if (!o.datapathType || !routerPort) return
      const start = deps.startFastdp ?? startFastdp
      let r: Awaited<ReturnType<typeof startFastdp>>
      try {
        r = await start({
          ovsdbTarget: config.ovsdb, datapathType: o.datapathType, self, mtu: config.mtu,
          routerPort, routerPortType: 'system', ovsRundir: config.ovsRundir, learn: true, floodToRouter: true,
        }, { clock: deps.clock, logger: log })
      } catch (err) {
        r = { ok: false, reason: (err as Error).message } // e.g. a short ID fastdp's 12-bit key cannot carry
      }
      if (!r.ok) {
        st.why = r.reason.replace(' on this host', '')
        log.warn(`fastdp unavailable, sleeve only: ${st.why}`)
        return
      }
      const d = r.fastdp
      st.driver = d
      st.why = undefined
      st.selfId = self
      startHeartbeats(st, config, deps, d, r.info.bridge)
      if (bridgeMac) await d.learnLocal(bridgeMac).catch(fastdpLog('bridge MAC'))
      const verify = () => {
        cancelVerify = deps.clock.setTimer(FASTDP_VERIFY_INTERVAL_MS, () => {
          st.driver?.verify().catch(fastdpLog('verify')).finally(() => { if (st.driver) verify() })
        })
      }
      verify()
    },

    connect: (p) => ovsConnection(st, p, fastdpLog),

    sleeveOnly(id) {
      // Tell the datapath about sleeve peers too: they make floods go to the router port.
      st.driver?.setPeer(id, { via: 'sleeve', heartbeat: false }).catch(fastdpLog(`peer ${id}`))
    },

    heartbeats: () => st.beats,

    learnLocal(mac) { st.driver?.learnLocal(mac).catch(fastdpLog(`local MAC ${mac}`)) },

    syncRoutes: (hop, neighbours, nameOf) => syncOvsRoutes(st, hop, neighbours, nameOf, log, fastdpLog),

    relayed: () => st.relayed.size,

    traffic: () => ovsTraffic(st),

    relayFrames: (hop, src, dst, frames) => relayToDatapath(st, hop, src, dst, frames, log),

    async stop() {
      cancelVerify?.()
      st.beats?.close()
      st.beats = undefined
      st.ofConn = undefined
      st.relayed.clear()
      st.peerIps.clear()
      st.peerNames.clear()
      const d = st.driver
      st.driver = undefined
      st.why = 'stopped'
      // flows go; the OVS bridge stays for the next launch (weave reset removes the links)
      await d?.stop().catch(fastdpLog('stop'))
    },

    /** `weave status`: `datapath (netdev) 12 flows, ovsdb unix:…` or `off: why`. */
    statusLine() {
      const i = st.driver?.info()
      if (!i) return `off: ${st.why ?? 'not started'}`
      return `${i.bridge} (${i.datapathType}) ${i.flows} flows, ${i.peers} peers${st.relayed.size ? ` (${st.relayed.size} relayed)` : ''}, ovsdb ${config.ovsdb}`
    },

    report: () => ovsReport(st, config.ovsdb),
  }
  return o
}

/** Heartbeats through one OpenFlow connection to the bridge (packet-out/packet-in), unless the deps give a sender. */
function startHeartbeats(st: OvsState, config: OvsOverlayConfig, deps: OvsOverlayDeps, d: Fastdp, bridge: string): void {
  const self = st.selfId
  st.ofConn = deps.heartbeatSender ? undefined
    : createOpenFlowConn(path.join(config.ovsRundir ?? rundirFor(config.ovsdb), `${bridge}.mgmt`), { clock: deps.clock, logger: deps.logger })
  const sender = deps.heartbeatSender ? deps.heartbeatSender(self, d) : openflowHeartbeats(st.ofConn!,
    { self, ports: () => d.info()?.ports, frameBytes: config.mtu + 14, cookie: FLOW_COOKIE }, // a full-size frame: MTU problems show too
  )
  st.beats = new TunnelHeartbeats(sender, deps.clock, async () => heartbeatCounts(await d.stats(), st.selfId), 'openflow packet-out/packet-in')
}

function ovsConnection(st: OvsState, p: OverlayPeer, fastdpLog: WarnFn): OverlayConnection {
  const id = p.shortId
  st.peerIps.set(id, p.ip)
  st.peerNames.set(id, p.peer)
  return {
    start: () => st.driver?.setPeer(id, { ip: p.ip, via: 'sleeve', heartbeat: true, localIp: p.localIp }).catch(fastdpLog(`peer ${p.peer}`)) ?? Promise.resolve(),
    health: (now) => st.beats ? st.beats.health.verdict(id, now) : { ok: false, why: st.why ?? 'no fastdp' },
    forward(on) {
      if (!on) {
        // At once over our OpenFlow connection: without learnt flows the peer's frames flood, and
        // the router's flood copy goes out by sleeve (floodToRouter) before the bundle lands.
        st.ofConn?.deleteByCookie(LEARNT_COOKIE)
      }
      return st.driver?.setPeer(id, { via: on ? 'fastdp' : 'sleeve' }) ?? Promise.resolve()
    },
    stop: () => {
      if (st.peerIps.get(id) === p.ip) { st.peerIps.delete(id); st.peerNames.delete(id) }
      return st.driver?.removePeer(id) ?? Promise.resolve()
    },
    status: () => 'fastdp',
  }
}

/**
 * The datapath follows the mesh's unicast routes: every reachable peer is in its table (peers
 * we have no connection to as well, so frames for them go to their next hop with their own key
 * and that hop's datapath relays them), and each peer's frames go to the next hop the mesh
 * names. Whether that hop is reached by fastdp or by the sleeve is the overlay switch's choice
 * per neighbour, as for direct traffic. Run on every topology change.
 */
function syncOvsRoutes(st: OvsState, hop: ReadonlyMap<number, number>, neighbours: ReadonlySet<number>, nameOf: ReadonlyMap<number, string>,
  log: Logger, fastdpLog: WarnFn): void {
  const d = st.driver
  if (!d) return
  for (const id of hop.keys()) {
    if (id === st.selfId || neighbours.has(id) || st.relayed.has(id)) continue
    st.relayed.add(id)
    if (hop.get(id) !== id) log.info(`fastdp: peer ${nameOf.get(id)} (short ID ${id}) reached through ${nameOf.get(hop.get(id)!)}`)
    // `fastdp`: its frames (relayed to us by a fastdp hop) teach the datapath its MACs; as a
    // hop it has no address, so it is never tunnelled to directly
    d.setPeer(id, { via: 'fastdp', heartbeat: false }).catch(fastdpLog(`relayed peer ${nameOf.get(id)}`))
  }
  for (const id of [...st.relayed]) {
    if (hop.has(id) && !neighbours.has(id)) continue
    st.relayed.delete(id)
    if (!neighbours.has(id)) d.removePeer(id).catch(fastdpLog(`relayed peer ${id}`))
  }
  d.setRoutes((dst) => hop.get(dst)).catch(fastdpLog('routes'))
}

/**
 * One OpenFlow packet-out per frame (the same connection as the heartbeats): slower than a
 * flow, but only frames relayed between a sleeve peer and a fastdp one take this way.
 */
function relayToDatapath(st: OvsState, hop: number, src: number, dst: number, frames: readonly Uint8Array[], log: Logger): number {
  const ports = st.driver?.info()?.ports
  const ip = st.peerIps.get(hop)
  if (!st.ofConn || !ports || ip === undefined) return 0
  const actions = [{ kind: 'set-tun-dst', ip }, { kind: 'set-tun-id', id: tunnelKey(src, dst) }, { kind: 'output', port: ports.vxlan }] as const
  let sent = 0
  for (const f of frames) {
    if (st.ofConn.packetOut(Buffer.from(f.buffer, f.byteOffset, f.length), actions)) sent++
    else if (st.relayOutErrors++ === 0) log.warn('fastdp: cannot hand relayed frames to the datapath: no OpenFlow connection (yet)')
  }
  return sent
}

/** Each connected peer's traffic from the datapath's flow counters (fastdp-traffic), by name. */
async function ovsTraffic(st: OvsState): Promise<FastPeerTraffic[]> {
  const d = st.driver
  if (!d) return []
  const byIp = await d.traffic(new Set(st.peerIps.values()))
  const out: FastPeerTraffic[] = []
  for (const [id, ip] of st.peerIps) {
    const t = byIp.get(ip)
    const peer = st.peerNames.get(id)
    if (peer !== undefined) out.push({ peer, ...(t ?? { txBytes: 0, txPackets: 0, rxBytes: 0, rxPackets: 0 }) })
  }
  return out
}

/** `weave report`'s fastdp part: the datapath, its ports and flow counts, routes and heartbeats. */
function ovsReport(st: OvsState, ovsdb: string): Record<string, unknown> {
  const d = st.driver
  if (!d) return { Unavailable: st.why }
  const i = d.info()
  return {
    ...i,
    Ovsdb: ovsdb,
    Datapath: i ? { Bridge: i.bridge, Type: i.datapathType, Ports: i.portNames, Flows: i.flows, LearntFlows: i.learntFlows } : undefined,
    RelayedPeers: [...st.relayed],
  }
}
