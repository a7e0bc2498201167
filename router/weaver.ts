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
import { createContainerNet } from './container-net'
import { dockerContainers } from './docker-containers'
import { dockerEndpoint, wireProxy } from './proxy-wiring'
import { wireOverlay } from './overlay-wiring'
import type { PsSource } from './attach-api'
import { wireMesh } from './mesh-wiring'
import { wireDns, withDnsRegistration } from './dns-wiring'
import { EXPOSE_ID } from './net'
import { registerCniApi } from './cni-api'
import { wireObserve } from './observe-wiring'
import type { GossipHost } from './mesh'
import { createIpam, formatCidr, IPAM_ROUTES, IPAM_STATE_FILE } from '../ipam'
import { createDockerPlugin } from '../plugin'
import { VERSION } from './version'

/** How often weave's iptables rules are checked and put back when something removed them. */
export const RULES_RECHECK_MS = 10_000

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
  const startedAt = deps.clock.now()

  router.route('GET', '/status', () => ({ text: status.text() }))
  router.route('GET', '/report', () => ({ json: status.report() }))
  router.route('GET', '/version', () => ({ text: VERSION }))
  status.addReport('Daemon', () => ({
    PeerName: peerName,
    Nickname: config.nickname,
    Pid: process.pid,
    UptimeSeconds: Math.round((deps.clock.now() - startedAt) / 1000),
    StateDir: config.stateDir,
    RunDir: config.runDir,
  }))

  // ---- mesh ----
  // Topology, routes, gossip and the connection maker over TCP meshHost:meshPort; routes
  // /connect, /forget, /status/{peers,connections,targets}, the router status section and report.
  const wiredMesh = wireMesh(config, peerName, {
    clock: deps.clock, rng: deps.rng, logger: log.child('mesh'), router, status,
    overlayInfo: (peer) => overlay.connectionInfo(peer), // `overlay` is built below; asked only later
    overlayTrusted: (peer) => overlay.connections().some((c) => c.peer === peer && c.trusted === true),
  })
  const mesh = wiredMesh.mesh
  starts.push(async () => {
    await wiredMesh.start()
    overlay.useMesh(mesh) // the overlay (built below) follows the mesh's connections
  })
  stops.unshift(() => wiredMesh.stop())

  // ---- ipam ----
  // IPAM gossips over the mesh's `ipam` channel (ipam's soloGossipHost runs it without a mesh).
  const ipamHost: GossipHost = mesh
  const docker = dockerContainers(config.dockerApi)
  const ipam = createIpam(
    {
      range: config.ipallocRange,
      defaultSubnet: config.ipallocDefaultSubnet,
      init: config.ipallocInit,
      launchPeerCount: config.peers.length,
      stateFile: path.join(config.stateDir, IPAM_STATE_FILE),
    },
    { clock: deps.clock, rng: deps.rng, logger: log.child('ipam'), host: ipamHost,
      isRunning: (id) => docker.isRunning(id),
      containerStates: (ids) => docker.states(ids),
    },
  )
  for (const [method, pattern] of IPAM_ROUTES) {
    router.route(method, pattern, (req) => ipam.handle({ method: req.method, path: req.path, query: req.query }))
  }
  router.route('GET', '/status/ipam', () => ({ text: ipam.statusIpam() }))
  status.addSection('ipam', { order: 20, lines: () => ipam.statusLines() })
  status.addReport('IPAM', () => ipam.report())
  starts.push(() => ipam.start())
  stops.unshift(() => ipam.stop())

  // ---- dns ----
  // weaveDNS gossips over the mesh's `dns` channel; routes /name, /domain, /dns-*, /status/dns.
  // undefined with --no-dns. Registrars reach it as `dnsWired.dns` (see dns/index.ts).
  const dnsWired = wireDns(config, {
    clock: deps.clock, rng: deps.rng, logger: log.child('dns'), host: mesh, router, status,
    exposedAddresses: () => ipam.allocator.lookup(EXPOSE_ID).map(formatCidr),
    containerAddresses: (id) => containerNet.addressesOf(id), // containerNet is built below; asked only later
  })
  if (dnsWired) {
    starts.push(() => dnsWired.start())
    stops.unshift(() => dnsWired.stop())
  }

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
  // Weave re-checks its iptables rules: a firewall reload (firewalld, `iptables -F`) wipes them
  // under a running network. Every RULES_RECHECK_MS the missing ones are put back.
  let stopRecheck: (() => void) | undefined
  let rechecking = true
  const recheckRules = () => {
    stopRecheck = deps.clock.setTimer(RULES_RECHECK_MS, () => {
      checkHairpin()
      net.ensureRules()
        .then((n) => { if (n > 0) log.warn(`iptables: ${n} of weave's chains/rules had gone (a firewall reload?); put them back`) })
        .catch((err: Error) => log.warn(`iptables re-check: ${err.message}`))
        .finally(() => { if (rechecking) recheckRules() })
    })
  }
  // Hairpin mode on the router's bridge port reflects the router's own frames back to it (Weave
  // detects and logs it; container ports have it on purpose). Logged once each time it turns on.
  let hairpinSeen = false
  const checkHairpin = () => {
    let on = false
    try { on = fs.readFileSync('/sys/class/net/vethwe-bridge/brport/hairpin_mode', 'utf8').trim() === '1' } catch { /* no such port */ }
    if (on && !hairpinSeen) log.warn('hairpin mode is on on the bridge port vethwe-bridge: frames the router sends come back to it; turn it off (bridge link set dev vethwe-bridge hairpin off)')
    hairpinSeen = on
  }
  starts.push(async () => { checkHairpin(); recheckRules() })
  stops.unshift(async () => { rechecking = false; stopRecheck?.() })

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
  starts.push(() => overlay.start())
  stops.unshift(() => overlay.stop())

  // ---- cni ----
  // /cni/add, /cni/del, /cni/check for the weave-net CNI plugin (cni/), keyed by the runtime's container id.
  // Without DNS registration: its ids look like Docker's, but no Docker engine knows these pods.
  registerCniApi(router, { net, containerNet: plainContainerNet, allocator: ipam.allocator, logger: log.child('cni') })

  // ---- proxy ----
  if (config.proxy) {
    const wired = wireProxy(config, { clock: deps.clock, logger: log.child('proxy'), containerNet, dns: dnsWired })
    status.addSection('proxy', { order: 30, lines: () => wired.statusLines() })
    status.addReport('Proxy', () => wired.report())
    starts.push(async () => {
      await wired.proxy.start()
      // Containers that kept running while the router was down get their names back.
      await dnsWired?.resync((id) => containerNet.addressesOf(id)).catch((err: Error) => log.warn(`dns resync: ${err.message}`))
    })
    stops.unshift(() => wired.stop())
  } else {
    status.addSection('proxy', {
      order: 30,
      lines: () => [['Service', 'proxy'], ['Status', `off (no Docker socket at ${config.dockerApi}, or --no-proxy)`]],
    })
  }

  // ---- Docker network plugin (driver + IPAM driver `weave` on a unix socket) ----
  // Its IPAM driver hands out pool addresses: nothing to do without IP allocation (--ipalloc-range "").
  const pluginOff = (why: string) => status.addSection('plugin', { order: 35, lines: () => [['Service', 'plugin'], ['Status', `off (${why})`]] })
  if (!config.plugin) pluginOff(`no Docker socket at ${config.dockerApi}, or --no-plugin`)
  else if (config.ipallocRange === '') {
    log.info('Docker plugin off: IP allocation is off (--ipalloc-range "")')
    pluginOff('IP allocation is off: --ipalloc-range ""')
  } else {
    const plugin = createDockerPlugin(
      {
        socketPath: config.pluginSocket,
        range: config.ipallocRange,
        defaultSubnet: config.ipallocDefaultSubnet ?? config.ipallocRange,
        mtu: config.mtu,
        timeoutMs: config.attachTimeoutMs,
        docker: dockerEndpoint(config),
        downResponder: true,
      },
      { allocator: ipam.allocator, net, clock: deps.clock, rng: deps.rng, logger: log.child('plugin'), dns: dnsWired?.dns },
    )
    status.addSection('plugin', { order: 35, lines: () => plugin.statusLines() })
    status.addReport('Plugin', () => plugin.report())
    psSources.push(() => plugin.attached())
    starts.push(() => plugin.start())
    stops.unshift(() => plugin.stop())
  }
  // ---- metrics and the topology page ----
  // GET /metrics (and alone on --metrics-addr), GET /ui with its WebSocket feed /ui/ws: they
  // read the mesh, overlay and IPAM as they are, so they start last (but before the API).
  const observe = wireObserve(config, {
    clock: deps.clock, logger: log.child('observe'), router, mesh: wiredMesh, overlay, ipam,
    dnsByPeer: dnsWired && (() => {
      const by = new Map<string, number>()
      for (const e of dnsWired.dns.entries()) by.set(e.origin, (by.get(e.origin) ?? 0) + 1)
      return by
    }),
  })
  starts.push(() => observe.start())
  stops.unshift(() => observe.stop())

  // ---- api (last to start: once it answers, `weave launch` reports success) ----
  const api = createApiServer(
    router,
    { tcp: config.httpAddr, unixPath: apiSocketPath(config.runDir) },
    log.child('api'),
  )
  starts.push(() => api.start())
  stops.unshift(() => api.stop())

  let state: 'new' | 'running' | 'stopped' = 'new'
  return {
    peerName,
    router,
    status,
    async start() {
      if (state !== 'new') throw new Error('weaver started twice')
      state = 'running'
      fs.mkdirSync(config.runDir, { recursive: true })
      for (const s of starts) await s()
      log.info(`weave router ${VERSION} started: ${peerName}(${config.nickname})`)
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
