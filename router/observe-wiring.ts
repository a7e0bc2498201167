/**
 * Seeing the network, in the daemon: `GET /metrics` on the API (and alone on `--metrics-addr`),
 * the topology page `/ui` with its WebSocket feed `/ui/ws` (an API upgrade route: the API's
 * Host/Origin guard covers it like every other route). Both only read what the mesh, the
 * overlay and IPAM already keep (router/metrics sources, router/ui model); kept out of
 * weaver.ts so the daemon's wiring stays one screen per component.
 */
import type { Clock, Logger } from './deps'
import type { WeaverConfig } from './config'
import type { ApiRouter } from './api'
import type { WiredMesh } from './mesh-wiring'
import type { OverlayWiring } from './overlay-wiring'
import { EXPOSE_ID } from './net'
import type { MetricsServer, MetricsSources, WeaveRegistry } from './metrics'
import { createTopologyHub, registerPageRoutes, UI_WS_PATH, type TopologyHub } from './ui'
import type { Ipam } from '../ipam'

export interface ObserveWiring {
  start(): Promise<void>
  stop(): Promise<void>
}

export interface ObserveDeps {
  clock: Clock
  logger: Logger
  router: ApiRouter
  mesh: WiredMesh
  overlay: OverlayWiring
  ipam: Ipam | undefined
  /** Live DNS entries by owning peer; undefined while DNS is off (--no-dns). */
  dnsByPeer?: () => ReadonlyMap<string, number>
}

export function wireObserve(config: WeaverConfig, deps: ObserveDeps): ObserveWiring {
  const { mesh, overlay, ipam } = deps
  const self = () => mesh.mesh.identity.name as string
  const sources: MetricsSources = {
    mesh: () => ({ connections: mesh.mesh.connectionStatus(), stats: mesh.mesh.stats }),
    carrier(peer) {
      const c = overlay.connections().find((x) => x.peer === peer)
      return c && { datapath: c.state === 'established' ? c.overlay : undefined, encrypted: c.encrypted }
    },
    ipam: ipam && (() => ipam.facts()),
    dnsEntries: deps.dnsByPeer && (() => deps.dnsByPeer?.().get(self()) ?? 0),
    flows: () => overlay.flows(),
    traffic: () => overlay.traffic(),
    // concurrent scrapers (two Prometheus) share one read of the fast path's counters
    refresh: () => overlay.refreshTraffic(500),
    fallbacks: () => overlay.fallbacks(),
  }
  // prom-client (~2 MiB of RSS and 0.1-0.2 s of start-up) is loaded at the first scrape, or at
  // start with --metrics-addr: most routers are never scraped. The collectors read the sources
  // at each scrape, so a registry made late reports the same figures.
  let registry: Promise<WeaveRegistry> | undefined
  const metrics = () => (registry ??= import('./metrics').then((m) => m.createWeaveRegistry(sources)))
  deps.router.route('GET', '/metrics', async () => {
    const r = await metrics()
    return { text: await r.scrape(), headers: { 'content-type': r.contentType } }
  })
  let metricsServer: MetricsServer | undefined

  registerPageRoutes(deps.router)
  const hub: TopologyHub = createTopologyHub(
    {
      read() {
        const st = mesh.mesh.status()
        const facts = ipam?.facts()
        const carriers = new Map(overlay.connections().map((c) => [c.peer, { datapath: c.overlay, encrypted: c.encrypted, mtu: c.mtu, state: c.state }]))
        return {
          mesh: st,
          peersText: mesh.peersText(st),
          connectionsText: mesh.connectionsText(st),
          carriers,
          ipamShares: facts?.shares,
          containers: ipam ? ipam.allocator.owned().filter((o) => o.containerid !== EXPOSE_ID).length : undefined,
          dnsByPeer: deps.dnsByPeer?.(),
        }
      },
      trafficBytes() {
        // the fast path's counters cost a process per read: in the background, at most every 2 s
        void overlay.refreshTraffic(2_000)
        const out = new Map<string, number>()
        for (const t of overlay.traffic()) out.set(t.peer, (out.get(t.peer) ?? 0) + t.txBytes + t.rxBytes)
        return out
      },
      onChange: (fn) => mesh.mesh.view.onPeersChanged(fn),
    },
    { clock: deps.clock, logger: deps.logger.child('ui') },
  )
  // The API server's guard (router/api/local-guard) has checked Host and Origin before this runs.
  deps.router.upgrade(UI_WS_PATH, (req, socket, head) => hub.handleUpgrade(req, socket, head))

  return {
    async start() {
      if (!config.metricsAddr) return
      const r = await metrics()
      metricsServer = (await import('./metrics')).createMetricsServer(r, config.metricsAddr, deps.logger.child('metrics'))
      await metricsServer.start()
    },
    async stop() {
      await hub.stop()
      await metricsServer?.stop()
    },
  }
}
