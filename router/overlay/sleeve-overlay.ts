/**
 * The per-connection layer between the mesh and the sleeve driver: for every established mesh
 * connection it tells the Sleeve where the peer's UDP socket is (and with which cipher), runs
 * UDP heartbeats that make the sleeve path `established`, and gives the forwarder its routes.
 *
 * Per connection, over the mesh connection itself, the ends exchange overlay control messages
 * (overlay-control.ts): a hello with our sleeve UDP port, key and offers (sleeve-hello.ts), acks
 * of each other's UDP heartbeats (sleeve-heartbeats.ts), path-MTU probe acks (sleeve-probing.ts),
 * and fastdp's health and ESP epochs, passed on to the overlay switch.
 *
 * Why keys travel over the mesh connection: it is already encrypted and authenticated with the
 * password, so an X25519 exchange over it is authenticated too, and the connection contract
 * stays unchanged (sleeve-kx.ts). Fresh keys per connection: a reconnect never reuses a
 * (key, nonce).
 *
 * Path state: `established` once a UDP heartbeat from the peer arrived (their → our path works)
 * and the peer acknowledged one of ours (our → their path works), both within the timeout
 * (sleeve-link.ts). Frames flow as soon as the peer's address is known; the state is what
 * `weave status` shows. The connection's data path works when its sleeve path is established or
 * another data plane (fastdp) carries the peer healthily; each change of that verdict goes to
 * the mesh (`setDataPath`), so data-plane routes avoid a pair of hosts whose UDP is lost while
 * their TCP connection lives.
 *
 * Path MTU: the sleeve's UDP socket sets DF (IP_PMTUDISC_DO) and asks the kernel (IP_MTU) for
 * each peer's path MTU, asking again when a send fails with EMSGSIZE (the kernel lowers it from
 * ICMP fragmentation-needed). A path that drops big datagrams silently teaches the kernel
 * nothing, so once a path is established we also probe it (sleeve-probing.ts), and the sleeve
 * uses the smaller figure; status shows the frame MTU.
 *
 * The parts share an OverlayCore (sleeve-overlay-core.ts); this file builds it, runs the
 * heartbeat tick and offers the SleeveOverlay API.
 */
import type { PeerName } from '../mesh'
import { encodeOverlayControl } from './overlay-control'
import { sleeveCiphers, sleeveCryptoReady } from './sleeve-crypto'
import { HEARTBEAT_INTERVAL_MS, HEARTBEAT_TIMEOUT_MS } from './sleeve-link'
import type { SleeveOverlay, SleeveOverlayConfig, SleeveOverlayDeps } from './sleeve-overlay-contract'
import type { Live, OverlayCore } from './sleeve-overlay-core'
import { SleeveRoutes } from './sleeve-routes'
import { dropConnection, reconcile } from './sleeve-connections'
import { sendHello } from './sleeve-hello'
import { heartbeat, onSleeveControl, reportDataPath } from './sleeve-heartbeats'
import { probe } from './sleeve-probing'
import { connectionStatuses } from './sleeve-overlay-status'

export type {
  OverlayConnectionStatus, OverlayMeshHost, OverlayPeerHello, SleeveHandle, SleeveOverlay, SleeveOverlayConfig, SleeveOverlayDeps,
} from './sleeve-overlay-contract'

export function createSleeveOverlay(config: SleeveOverlayConfig, deps: SleeveOverlayDeps): SleeveOverlay {
  const intervalMs = config.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS
  const byShort = new Map<number, Live>()
  let cancelTimer: (() => void) | undefined
  let unsubscribe: (() => void) | undefined

  const routes = new SleeveRoutes({
    selfName: () => c.mesh!.identity.name,
    shortIds: () => [...c.mesh!.topology.records()].map((r) => [r.name, r.shortId] as [PeerName, number | undefined]),
    unicast: () => c.mesh!.routes.unicast(),
    broadcast: (src) => (c.mesh!.routes.broadcastData ?? c.mesh!.routes.broadcast).call(c.mesh!.routes, src),
  }, (hop) => {
    const l = byShort.get(hop)
    return l !== undefined && l.link.remote !== undefined && l.via === 'sleeve'
  }, (hop) => byShort.get(hop)?.via === 'fastdp')

  const c: OverlayCore = {
    config,
    deps,
    log: deps.logger.child('overlay'),
    timeoutMs: config.heartbeatTimeoutMs ?? HEARTBEAT_TIMEOUT_MS,
    live: new Map<PeerName, Live>(),
    byShort,
    stats: { badControl: 0, heartbeatsSent: 0, heartbeatsReceived: 0, acksReceived: 0 },
    routes,
    ourCiphers: config.encrypt ? (config.ciphers ?? sleeveCiphers()) : undefined,
    mesh: undefined,
    sleeve: undefined,
    cancelProbeTimer: undefined,
  }

  /** Once per heartbeat interval, per connection: hello or heartbeat, the data-path verdict, probing. */
  function tick(): void {
    cancelTimer = undefined
    if (!c.mesh) return
    reconcile(c)
    for (const l of c.live.values()) {
      const t = l.link.tick()
      if (t.sendHello) sendHello(c, l)
      if (t.sendHeartbeat) heartbeat(c, l)
      reportDataPath(c, l)
      probe(c, l, deps.clock.now())
    }
    cancelTimer = deps.clock.setTimer(intervalMs, tick)
  }

  return {
    routes,
    stats: c.stats,
    setVia(shortId, via, why) {
      const l = byShort.get(shortId)
      if (!l) return false
      if (l.via !== via) c.log.info(`peer ${l.link.peer}: ${via}${why ? ` (${why})` : ''}`)
      l.via = via
      l.why = via === 'sleeve' ? why : undefined
      routes.invalidate()
      reportDataPath(c, l)
      return true
    },
    sendFastdpStatus(shortId, ok) {
      const l = byShort.get(shortId)
      if (!l) return false
      l.conn.send({ type: 'overlay', payload: encodeOverlayControl({ t: 'fdp', ok }) })
      return true
    },
    sendEsp(shortId, m) {
      const l = byShort.get(shortId)
      if (!l) return false
      l.conn.send({ type: 'overlay', payload: encodeOverlayControl(m) })
      return true
    },
    async attach(m, s) {
      if (c.mesh) throw new Error('sleeve overlay attached twice')
      if (config.encrypt) await sleeveCryptoReady()
      c.mesh = m
      c.sleeve = s
      s.onControl = (from, dg) => onSleeveControl(c, from, dg)
      unsubscribe = m.view.onPeersChanged(() => reconcile(c))
      tick()
    },
    detach() {
      cancelTimer?.()
      c.cancelProbeTimer?.()
      unsubscribe?.()
      cancelTimer = c.cancelProbeTimer = unsubscribe = undefined
      for (const [name, l] of [...c.live]) dropConnection(c, name, l)
      c.mesh = undefined
    },
    connections: () => connectionStatuses(c),
  }
}
