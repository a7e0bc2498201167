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

export function createOvsOverlay(config: OvsOverlayConfig, deps: OvsOverlayDeps): OvsOverlay {
  const log = deps.logger
  const fastdpLog = (what: string) => (err: Error) => log.warn(`fastdp: ${what}: ${err.message}`)
  let driver: Fastdp | undefined
  let why: string | undefined = 'not started'
  let routerPort: string | undefined
  let bridgeMac: string | undefined
  let ofConn: OpenFlowConn | undefined
  let beats: TunnelHeartbeats | undefined
  let cancelVerify: (() => void) | undefined
  /** Reachable peers without a connection of ours, told to the datapath so relayed frames reach them. */
  const relayed = new Set<number>()
  /** Underlay address of each peer we hold a connection to (where a handed-off frame is tunnelled). */
  const peerIps = new Map<number, string>()
  /** Their names (the traffic counters are by address, the metrics by name). */
  const peerNames = new Map<number, string>()
  let relayOutErrors = 0
  let selfId = 0

  const o: OvsOverlay = {
    name: 'fastdp',
    datapathType: undefined,
    setWhy(w) { why = w },
    useRouterPort(port, mac) { routerPort = port; bridgeMac = mac },
    driver: () => driver,
    unavailable: () => driver ? undefined : why ?? 'no fastdp',

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
        why = r.reason.replace(' on this host', '')
        log.warn(`fastdp unavailable, sleeve only: ${why}`)
        return
      }
      const d = r.fastdp
      driver = d
      why = undefined
      selfId = self
      ofConn = deps.heartbeatSender ? undefined
        : createOpenFlowConn(path.join(config.ovsRundir ?? rundirFor(config.ovsdb), `${r.info.bridge}.mgmt`), { clock: deps.clock, logger: log })
      const sender = deps.heartbeatSender ? deps.heartbeatSender(self, d) : openflowHeartbeats(ofConn!,
        { self, ports: () => d.info()?.ports, frameBytes: config.mtu + 14, cookie: FLOW_COOKIE }, // a full-size frame: MTU problems show too
      )
      beats = new TunnelHeartbeats(sender, deps.clock, async () => heartbeatCounts(await d.stats(), selfId), 'openflow packet-out/packet-in')
      if (bridgeMac) await d.learnLocal(bridgeMac).catch(fastdpLog('bridge MAC'))
      const verify = () => {
        cancelVerify = deps.clock.setTimer(FASTDP_VERIFY_INTERVAL_MS, () => {
          driver?.verify().catch(fastdpLog('verify')).finally(() => { if (driver) verify() })
        })
      }
      verify()
    },

    connect(p: OverlayPeer): OverlayConnection {
      const id = p.shortId
      peerIps.set(id, p.ip)
      peerNames.set(id, p.peer)
      return {
        start: () => driver?.setPeer(id, { ip: p.ip, via: 'sleeve', heartbeat: true, localIp: p.localIp }).catch(fastdpLog(`peer ${p.peer}`)) ?? Promise.resolve(),
        health: (now) => beats ? beats.health.verdict(id, now) : { ok: false, why: why ?? 'no fastdp' },
        forward(on) {
          if (!on) {
            // At once over our OpenFlow connection: without learnt flows the peer's frames flood, and
            // the router's flood copy goes out by sleeve (floodToRouter) before the bundle lands.
            ofConn?.deleteByCookie(LEARNT_COOKIE)
          }
          return driver?.setPeer(id, { via: on ? 'fastdp' : 'sleeve' }) ?? Promise.resolve()
        },
        stop: () => {
          if (peerIps.get(id) === p.ip) { peerIps.delete(id); peerNames.delete(id) }
          return driver?.removePeer(id) ?? Promise.resolve()
        },
        status: () => 'fastdp',
      }
    },

    sleeveOnly(id) {
      // Tell the datapath about sleeve peers too: they make floods go to the router port.
      driver?.setPeer(id, { via: 'sleeve', heartbeat: false }).catch(fastdpLog(`peer ${id}`))
    },

    heartbeats: () => beats,

    learnLocal(mac) { driver?.learnLocal(mac).catch(fastdpLog(`local MAC ${mac}`)) },

    /**
     * The datapath follows the mesh's unicast routes: every reachable peer is in its table (peers
     * we have no connection to as well, so frames for them go to their next hop with their own key
     * and that hop's datapath relays them), and each peer's frames go to the next hop the mesh
     * names. Whether that hop is reached by fastdp or by the sleeve is the overlay switch's choice
     * per neighbour, as for direct traffic. Run on every topology change.
     */
    syncRoutes(hop, neighbours, nameOf) {
      const d = driver
      if (!d) return
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
    },

    relayed: () => relayed.size,

    async traffic(): Promise<FastPeerTraffic[]> {
      const d = driver
      if (!d) return []
      const byIp = await d.traffic(new Set(peerIps.values()))
      const out: FastPeerTraffic[] = []
      for (const [id, ip] of peerIps) {
        const t = byIp.get(ip)
        const peer = peerNames.get(id)
        if (peer !== undefined) out.push({ peer, ...(t ?? { txBytes: 0, txPackets: 0, rxBytes: 0, rxPackets: 0 }) })
      }
      return out
    },

    // One OpenFlow packet-out per frame (the same connection as the heartbeats): slower than a
    // flow, but only frames relayed between a sleeve peer and a fastdp one take this way.
    relayFrames(hop, src, dst, frames) {
      const ports = driver?.info()?.ports
      const ip = peerIps.get(hop)
      if (!ofConn || !ports || ip === undefined) return 0
      const actions = [{ kind: 'set-tun-dst', ip }, { kind: 'set-tun-id', id: tunnelKey(src, dst) }, { kind: 'output', port: ports.vxlan }] as const
      let sent = 0
      for (const f of frames) {
        if (ofConn.packetOut(Buffer.from(f.buffer, f.byteOffset, f.length), actions)) sent++
        else if (relayOutErrors++ === 0) log.warn('fastdp: cannot hand relayed frames to the datapath: no OpenFlow connection (yet)')
      }
      return sent
    },

    async stop() {
      cancelVerify?.()
      beats?.close()
      beats = undefined
      ofConn = undefined
      relayed.clear()
      peerIps.clear()
      peerNames.clear()
      const d = driver
      driver = undefined
      why = 'stopped'
      // flows go; the OVS bridge stays for the next launch (weave reset removes the links)
      await d?.stop().catch(fastdpLog('stop'))
    },

    /** `weave status`: `datapath (netdev) 12 flows, ovsdb unix:…` or `off: why`. */
    statusLine() {
      const i = driver?.info()
      if (!i) return `off: ${why ?? 'not started'}`
      return `${i.bridge} (${i.datapathType}) ${i.flows} flows, ${i.peers} peers${relayed.size ? ` (${relayed.size} relayed)` : ''}, ovsdb ${config.ovsdb}`
    },

    /** `weave report`'s fastdp part: the datapath, its ports and flow counts, routes and heartbeats. */
    report() {
      const d = driver
      if (!d) return { Unavailable: why }
      const i = d.info()
      return {
        ...i,
        Ovsdb: config.ovsdb,
        Datapath: i ? { Bridge: i.bridge, Type: i.datapathType, Ports: i.portNames, Flows: i.flows, LearntFlows: i.learntFlows } : undefined,
        RelayedPeers: [...relayed],
      }
    },
  }
  return o
}
