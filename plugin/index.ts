/**
 * Public door of plugin/: the Docker network plugin, a local-scope network driver and an IPAM
 * driver named `weave` on one unix socket (libnetwork's remote driver and remote IPAM protocols).
 *
 *   const plugin = createDockerPlugin(
 *     { socketPath: '/run/docker/plugins/weave.sock', range, defaultSubnet, mtu, timeoutMs, docker },
 *     { allocator: ipam.allocator, net, clock, rng, logger })
 *   await plugin.start()   // listens, then (in the background) makes sure network `weave` exists
 *
 * Addresses come from the mesh's IPAM (ipam/), interfaces from router/net (the same veth pair,
 * bridge, MTU and multicast route as attach), names from dns/ (a started container's name and
 * --network-aliases). Docker's remote API has no field for a container's DNS server, so containers
 * that should resolve weaveDNS names get `$(weave dns-args)` on their `docker run` (see README).
 */
import type { Clock, Logger, Rng } from '../router/deps'
import type { NetHost } from '../router/net'
import type { Allocator } from '../ipam'
import type { WeaveDns } from '../dns'
import { registerNames, withdrawNames } from './dns-names'
import { createEngineClient, watchContainerEvents, type DockerEndpoint, type EventWatcher } from '../proxy'
import { IMPLEMENTS, type Handler } from './protocol'
import { createIpamDriver } from './ipam-driver'
import { createNetworkDriver } from './network-driver'
import { createPluginServer } from './server'
import { spawnDownResponder } from './down-responder'
import { endpointAddresses, ensureNetworkWithRetry, inspectContainer, runningOnWeave, weaveContainerOf, weaveNetworkIds } from './docker-side'
import { collectOrphanedLeases, endpointLeases } from './lease-gc'

export { answer, PluginError, IMPLEMENTS } from './protocol'
export { DEFAULT_NETWORK, DRIVER_NAME, weaveContainerOf, type WeaveContainer } from './docker-side'
export { formatPoolId, parsePoolId } from './ipam-driver'
export { ROUTER_DOWN, downRoutes } from './down-responder'
export { collectOrphanedLeases, endpointLeases, orphanedLeases } from './lease-gc'

export const DEFAULT_PLUGIN_SOCKET = '/run/docker/plugins/weave.sock'
/**
 * How long after start-up the endpoint lease GC waits: Docker's plugin client retries a call
 * that found no socket for up to 30 s, so an endpoint whose address the previous router gave
 * may still be being created through this one until then.
 */
export const LEASE_GC_DELAY_MS = 30_000

export interface DockerPluginConfig {
  socketPath: string
  /** --ipalloc-range and the default subnet (the `weave` network's pool). */
  range: string
  defaultSubnet: string
  mtu: number
  /** How long an address request may wait on IPAM before Docker hears why. */
  timeoutMs: number
  /** The engine, to make network `weave` and follow container starts; undefined: neither. */
  docker?: DockerEndpoint
  /** On stop, leave the router-down responder on the socket (down-responder.ts); the daemon does. */
  downResponder?: boolean
  /** Default LEASE_GC_DELAY_MS. */
  leaseGcDelayMs?: number
}


export interface DockerPluginDeps {
  allocator: Allocator
  net: Pick<NetHost, 'addEndpointVeth' | 'delEndpointVeth' | 'announceIn'>
  clock: Clock
  rng: Rng
  logger: Logger
  /** weaveDNS, to register names in; undefined with --no-dns. */
  dns?: WeaveDns
}

export interface DockerPlugin {
  start(): Promise<void>
  stop(): Promise<void>
  /** Every route, for tests that drive the protocol without a socket. */
  readonly routes: ReadonlyMap<string, Handler>
  statusLines(): Array<[string, string]>
  report(): Record<string, unknown>
  /** Running containers on weave networks (for `weave ps`): id, the first network's MAC, every weave address. */
  attached(): Promise<Array<{ id: string; mac: string; addresses: string[] }>>
}

export function createDockerPlugin(config: DockerPluginConfig, deps: DockerPluginDeps): DockerPlugin {
  const log = deps.logger
  const ipam = createIpamDriver(
    { range: config.range, defaultSubnet: config.defaultSubnet, timeoutMs: config.timeoutMs },
    { allocator: deps.allocator, clock: deps.clock, rng: deps.rng, logger: log.child('ipam') },
  )
  const network = createNetworkDriver({ net: deps.net, logger: log.child('net'), mtu: config.mtu })
  const routes = new Map<string, Handler>([
    ['Plugin.Activate', () => ({ Implements: [...IMPLEMENTS] })],
    ...network.routes,
    ...ipam,
  ])
  const server = createPluginServer(config.socketPath, routes, log)
  const engine = config.docker ? createEngineClient(config.docker) : undefined
  let stopped = false
  let watcher: EventWatcher | undefined
  let networkIds = new Set<string>()
  let networkOk = false
  let gcTimer: (() => void) | undefined

  /** `fresh`: from its start event (a new namespace); false: found running at our start-up. */
  async function containerStarted(id: string, fresh: boolean): Promise<void> {
    if (!engine) return
    const j = await inspectContainer(engine, id)
    if (!j) return
    let c = weaveContainerOf(j, networkIds)
    const onUnknown = Object.values(j.NetworkSettings?.Networks ?? {}).some((n) => n.NetworkID && !networkIds.has(n.NetworkID))
    if (!c && onUnknown) {
      networkIds = await weaveNetworkIds(engine) // a network created since we last looked
      c = weaveContainerOf(j, networkIds)
    }
    if (!c) return
    await deps.net.announceIn({ pid: c.pid }, c.networks.map((n) => n.address), { fresh })
    if (deps.dns) registerNames(deps.dns, c, log)
  }

  const onEvent = (e: { action: string; id: string }) => {
    if (e.action === 'start') {
      // A short-lived container may be gone before we look: nothing to announce or name then.
      containerStarted(e.id, true).catch((err: Error) => log.debug(`container ${e.id.slice(0, 12)} started: ${err.message}`))
    } else if (e.action === 'die' && deps.dns) {
      withdrawNames(deps.dns, e.id)
    } else if (e.action === 'destroy' && deps.dns) {
      deps.dns.containerDestroyed(e.id)
    }
  }

  async function followEngine(restored: ReadonlyMap<string, string[]>): Promise<void> {
    if (!engine) return
    networkOk = await ensureNetworkWithRetry(engine, config.defaultSubnet, { clock: deps.clock, logger: log, stopped: () => stopped })
    if (stopped) return
    watcher = watchContainerEvents(engine, onEvent, { clock: deps.clock, logger: log })
    networkIds = await weaveNetworkIds(engine)
    // Containers that started while we were down still get their names registered.
    for (const id of await runningOnWeave(engine, networkIds)) await containerStarted(id, false).catch(() => undefined)
    if (!restored.size) return
    await new Promise<void>((res) => {
      const cancel = deps.clock.setTimer(config.leaseGcDelayMs ?? LEASE_GC_DELAY_MS, res)
      gcTimer = () => { cancel(); res() }
    })
    if (stopped) return
    const inUse = await endpointAddresses(engine, await weaveNetworkIds(engine)).catch((err: Error) => {
      log.warn(`endpoint lease GC: ${err.message}`)
      return undefined
    })
    await collectOrphanedLeases(deps.allocator, restored, inUse, log)
  }

  async function attached(): Promise<Array<{ id: string; mac: string; addresses: string[] }>> {
    if (!engine) return []
    const ids = await weaveNetworkIds(engine)
    const out: Array<{ id: string; mac: string; addresses: string[] }> = []
    for (const id of await runningOnWeave(engine, ids)) {
      const j = await inspectContainer(engine, id)
      const c = j && weaveContainerOf(j, ids)
      if (c) out.push({ id: c.id, mac: c.networks[0].mac, addresses: c.networks.map((n) => n.address) })
    }
    return out
  }

  return {
    routes,
    attached,
    async start() {
      // Taken before the socket answers: no address of this run is among them.
      const restored = endpointLeases(deps.allocator)
      await server.start()
      followEngine(restored).catch((err: Error) => log.warn(`following the Docker engine: ${err.message}`))
    },
    async stop() {
      stopped = true
      gcTimer?.()
      watcher?.stop()
      await server.stop()
      if (config.downResponder) await spawnDownResponder(config.socketPath, routes.keys(), log).catch((err: Error) => log.warn(`router-down responder: ${err.message}`))
    },
    statusLines: () => [
      // Weave's block for the (non-managed) plugin is `plugin (legacy)` with the driver's name
      ['Service', 'plugin (legacy)'],
      ['DriverName', 'weave'],
      ['Socket', config.socketPath],
      ['Networks', `${network.state.networks.size} created since launch; ${networkIds.size} weave networks in Docker${networkOk ? '' : ' (network weave not confirmed)'}`],
      ['Endpoints', String(network.state.endpoints.size)],
    ],
    report: () => ({
      DriverName: 'weave',
      Socket: config.socketPath,
      DefaultNetworkReady: networkOk,
      Networks: [...networkIds],
      Endpoints: [...network.state.endpoints].map(([id, e]) => ({ EndpointID: id, NetworkID: e.networkId, Address: e.address, HostVeth: e.hostEnd })),
    }),
  }
}
