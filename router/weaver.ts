/**
 * The daemon: builds every component from a frozen config, wires them to the control API, and
 * starts/stops them in order. One block per component below; each registers its routes, its
 * status section and report key, and pushes its start/stop onto the lifecycle lists.
 * Construction does no I/O; start() listens; stop() resolves when everything is closed.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import type { Clock, Logger, Rng } from './deps'
import type { WeaverConfig } from './config'
import { ApiRouter, StatusModel, createApiServer } from './api'
import { loadOrCreatePeerName } from './peer-name'
import { createNetHost } from './net'
import { createContainerNet, type ContainerNet } from './container-net'
import { wireProxy } from './proxy-wiring'
import { wireOverlay } from './overlay-wiring'
import type { PsSource } from './attach-api'
import { wireMesh } from './mesh-wiring'
import { wireDns, withDnsRegistration, type DnsWiring } from './dns-wiring'
import { EXPOSE_ID } from './net'
import { registerCniApi } from './cni-api'
import { wireObserve } from './observe-wiring'
import { wireIpam } from './ipam-wiring'
import { wirePlugin } from './plugin-wiring'
import { createRulesRecheck } from './rules-recheck'
import { formatCidr } from '../ipam'
import { VERSION } from './version'

export { RULES_RECHECK_MS } from './rules-recheck'

export interface WeaverDeps {
  clock: Clock
  rng: Rng
  logger: Logger
}

export interface Weaver {
  readonly peerName: string
  readonly router: ApiRouter
  readonly status: StatusModel
  start(): Promise<void>
  stop(): Promise<void>
}

export { VERSION }

export function apiSocketPath(runDir: string): string {
  return path.join(runDir, 'api.sock')
}

export function createWeaver(config: WeaverConfig, deps: WeaverDeps): Weaver {
  const log = deps.logger
  fs.mkdirSync(config.stateDir, { recursive: true })
  const peerName = config.name ?? loadOrCreatePeerName(config.stateDir, deps.rng)
  const router = new ApiRouter()
  const status = new StatusModel(VERSION)
  // Started in this order, stopped in reverse.
  const starts: Array<() => Promise<void>> = []
  const stops: Array<() => Promise<void>> = []
  /** A part started in order and stopped in reverse. */
  const lifecycle = (part: { start(): Promise<void>; stop(): Promise<void> }) => {
    starts.push(() => part.start())
    stops.unshift(() => part.stop())
  }
  registerDaemon(config, peerName, router, status, deps.clock)

  // ---- mesh ----
  // Topology, routes, gossip and the connection maker over TCP meshHost:meshPort; routes
  // /connect, /forget, /status/{peers,connections,targets}, the router status section and report.
  const wiredMesh = wireMesh(config, peerName, {
    clock: deps.clock, rng: deps.rng, logger: log.child('mesh'), router, status,
    overlayInfo: (peer) => overlay.connectionInfo(peer), // `overlay` is built below; asked only later
    overlayTrusted: (peer) => overlay.connections().some((c) => c.peer === peer && c.trusted === true),
    overlayAttrs: (peer) => {
      const c = overlay.connections().find((x) => x.peer === peer)
      return c && { name: c.overlay, ...(c.mtu === undefined ? {} : { mtu: c.mtu }), ...(c.encrypted ? { encrypted: true } : {}) }
    },
    routerReport: () => overlay.routerReport(),
  })
  const mesh = wiredMesh.mesh
  starts.push(async () => {
    await wiredMesh.start()
    overlay.useMesh(mesh) // the overlay (built below) follows the mesh's connections
  })
  stops.unshift(() => wiredMesh.stop())

  // ---- ipam ----
  // IPAM gossips over the mesh's `ipam` channel (ipam's soloGossipHost runs it without a mesh).
  const ipam = wireIpam(config, { clock: deps.clock, rng: deps.rng, logger: log.child('ipam'), host: mesh, router, status })
  lifecycle(ipam)

  // ---- dns ----
  // weaveDNS gossips over the mesh's `dns` channel; routes /name, /domain, /dns-*, /status/dns.
  // undefined with --no-dns. Registrars reach it as `dnsWired.dns` (see dns/index.ts).
  const dnsWired = wireDns(config, {
    clock: deps.clock, rng: deps.rng, logger: log.child('dns'), host: mesh, router, status,
    exposedAddresses: () => ipam.allocator.lookup(EXPOSE_ID).map(formatCidr),
    containerAddresses: (id) => containerNet.addressesOf(id), // containerNet is built below; asked only later
  })
  if (dnsWired) lifecycle(dnsWired)

  // ---- host plumbing and container attach (shared by overlay, the attach API and the proxy) ----
  // Attaching a Docker container registers its name in weaveDNS (withDnsRegistration).
  const net = createNetHost({ logger: log })
  const plainContainerNet = createContainerNet({ allocator: ipam.allocator, net, logger: log, clock: deps.clock, allocateTimeoutMs: config.attachTimeoutMs })
  const containerNet = withDnsRegistration(plainContainerNet, dnsWired, log.child('dns'))
  // The bridge exists before anything can attach to it (the proxy and the attach API start later).
  // With an OVSDB server (and fastdp not turned off) the bridge links to the OVS datapath, which
  // hands the sleeve what it cannot tunnel (routerLink `ovs`); otherwise the sleeve sits on the
  // bridge itself (`pcap`). The overlay block (below) decides and falls back.
  starts.push(async () => {
    const routerLink = await overlay.routerLink()
    const br = await net.ensureBridge({ mtu: config.mtu, mac: peerName, routerLink })
    overlay.useBridge(br)
    log.info(`bridge ${br.name} ${br.created ? 'created' : 'reused'} (mtu ${br.mtu}, ${routerLink === 'ovs' ? 'to the OVS datapath' : 'to the sleeve'})`)
  })
  // iptables rules put back after a firewall reload; hairpin mode on vethwe-bridge logged.
  lifecycle(createRulesRecheck({ clock: deps.clock, logger: log, net }))

  // ---- overlay ----
  // fastdp (OVS `datapath`, when the host plumbing linked it) and Sleeve on vethwe-pcap ⇄ UDP
  // meshHost:meshPort, following the mesh's connections with the overlay switch choosing one per
  // peer (it needs `overlay.useMesh(mesh)` before start; without a mesh its status says so), plus
  // the attach/detach/ps/expose/hide API.
  // `weave ps` lists attached and proxied containers; the plugin adds its own below.
  const psSources: PsSource[] = []
  const overlay = wireOverlay(config, { clock: deps.clock, logger: log.child('overlay'), net, containerNet, allocator: ipam.allocator, router, psSources })
  status.addSection('overlay', { order: 15, lines: () => overlay.statusLines() })
  status.addReport('Overlay', () => overlay.report())
  lifecycle(overlay)

  // ---- cni ----
  // /cni/add, /cni/del, /cni/check for the weave-net CNI plugin (cni/), keyed by the runtime's container id.
  // Without DNS registration: its ids look like Docker's, but no Docker engine knows these pods.
  registerCniApi(router, { net, containerNet: plainContainerNet, allocator: ipam.allocator, logger: log.child('cni') })

  // ---- proxy ----
  const proxy = wireProxyPart(config, { clock: deps.clock, logger: log, containerNet, dns: dnsWired, status })
  if (proxy) lifecycle(proxy)

  // ---- Docker network plugin (driver + IPAM driver `weave` on a unix socket) ----
  const plugin = wirePlugin(config, { allocator: ipam.allocator, net, clock: deps.clock, rng: deps.rng, logger: log.child('plugin'), dns: dnsWired?.dns, status })
  if (plugin) {
    psSources.push(() => plugin.attached())
    lifecycle(plugin)
  }

  // ---- metrics and the topology page ----
  // GET /metrics (and alone on --metrics-addr), GET /ui with its WebSocket feed /ui/ws: they
  // read the mesh, overlay and IPAM as they are, so they start last (but before the API).
  const observe = wireObserve(config, {
    clock: deps.clock, logger: log.child('observe'), router, mesh: wiredMesh, overlay, ipam,
    dnsByPeer: dnsWired && (() => dnsEntriesByPeer(dnsWired)),
  })
  lifecycle(observe)

  // ---- api (last to start: once it answers, `weave launch` reports success) ----
  const api = createApiServer(
    router,
    { tcp: config.httpAddr, unixPath: apiSocketPath(config.runDir) },
    log.child('api'),
  )
  lifecycle(api)

  return inOrder({ peerName, router, status }, starts, stops, config, log)
}

/** The daemon's own routes (status, report, version) and its report key. */
function registerDaemon(config: WeaverConfig, peerName: string, router: ApiRouter, status: StatusModel, clock: Clock): void {
  const startedAt = clock.now()
  router.route('GET', '/status', () => ({ text: status.text() }))
  router.route('GET', '/report', () => ({ json: status.report() }))
  router.route('GET', '/version', () => ({ text: VERSION }))
  status.addReport('Daemon', () => ({
    PeerName: peerName,
    Nickname: config.nickname,
    Pid: process.pid,
    UptimeSeconds: Math.round((clock.now() - startedAt) / 1000),
    StateDir: config.stateDir,
    RunDir: config.runDir,
  }))
}

/** The proxy (its status and report registered, its start re-registering DNS names), or its status saying it is off. */
function wireProxyPart(
  config: WeaverConfig, deps: { clock: Clock; logger: Logger; containerNet: ContainerNet; dns: DnsWiring | undefined; status: StatusModel },
): { start(): Promise<void>; stop(): Promise<void> } | undefined {
  const { status, containerNet, dns, logger: log } = deps
  if (!config.proxy) {
    status.addSection('proxy', {
      order: 30,
      lines: () => [['Service', 'proxy'], ['Status', `off (no Docker socket at ${config.dockerApi}, or --no-proxy)`]],
    })
    return undefined
  }
  const wired = wireProxy(config, { clock: deps.clock, logger: log.child('proxy'), containerNet, dns })
  status.addSection('proxy', { order: 30, lines: () => wired.statusLines() })
  status.addReport('Proxy', () => wired.report())
  return {
    async start() {
      await wired.proxy.start()
      // Containers that kept running while the router was down get their names back.
      await dns?.resync((id) => containerNet.addressesOf(id)).catch((err: Error) => log.warn(`dns resync: ${err.message}`))
    },
    stop: () => wired.stop(),
  }
}

/** weaveDNS entries per origin peer (the topology page). */
function dnsEntriesByPeer(dns: DnsWiring): Map<string, number> {
  const by = new Map<string, number>()
  for (const e of dns.dns.entries()) by.set(e.origin, (by.get(e.origin) ?? 0) + 1)
  return by
}

/** The daemon's handle: start runs `starts` in order (once), stop runs `stops`, logging failures and going on. */
function inOrder(
  parts: Pick<Weaver, 'peerName' | 'router' | 'status'>, starts: Array<() => Promise<void>>, stops: Array<() => Promise<void>>,
  config: WeaverConfig, log: Logger,
): Weaver {
  let state: 'new' | 'running' | 'stopped' = 'new'
  return {
    ...parts,
    async start() {
      if (state !== 'new') throw new Error('weaver started twice')
      state = 'running'
      fs.mkdirSync(config.runDir, { recursive: true })
      for (const s of starts) await s()
      parts.status.ready = true
      log.info(`weave router ${VERSION} started: ${parts.peerName}(${config.nickname})`)
    },
    async stop() {
      if (state === 'stopped') return
      state = 'stopped'
      for (const s of stops) {
        await s().catch((err: Error) => log.error(`while stopping: ${err.message}`))
      }
      log.info('weave router stopped')
    },
  }
}
