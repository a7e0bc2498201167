/**
 * The Docker API proxy inside the daemon: its configuration from WeaverConfig, and its hooks
 * filled with the daemon's IPAM + attach (ContainerNet). Kept out of weaver.ts so the daemon's
 * wiring stays one screen per component.
 *
 * Lease lifetime follows the container: `destroy` releases at once; `die` tells IPAM, which
 * releases after its grace unless the container shows a sign of life first (a start event of any
 * container, or an allocation for the same ID such as `weave attach`); a restart keeps its address.
 * Containers removed while the router was down send no event we could hear: IPAM's start-up GC
 * (ipam/index.ts, asking Docker through router/docker-containers.ts) frees their leases.
 */
import * as path from 'node:path'
import type { Clock, Logger } from './deps'
import type { WeaverConfig } from './config'
import type { ContainerNet } from './container-net'
import {
  createProxy, createEngineClient, inspectWeaveContainer, installWeavewait, parseDockerHost, DEFAULT_PROXY_TCP_PORT,
  type ContainerEvent, type DockerEndpoint, type Proxy, type ProxyConfig, type ProxyHooks,
} from '../proxy'
import { parseCidr } from '../ipam'
import type { DnsWiring } from './dns-wiring'
import { loadProxyTls } from './proxy-tls'

export interface ProxyWiring {
  proxy: Proxy
  /** Stop the proxy. */
  stop(): Promise<void>
  /** `weave status` lines of the proxy block. */
  statusLines(): Array<[string, string]>
  report(): Record<string, unknown>
}

export function dockerEndpoint(config: WeaverConfig): DockerEndpoint {
  const r = parseDockerHost(config.dockerApi)
  if (!r.ok) throw new Error(`--docker-api ${config.dockerApi}: ${r.error}`)
  return r.endpoint
}

export function proxySocketPath(runDir: string): string {
  return path.join(runDir, 'weave.sock')
}

export function wireProxy(config: WeaverConfig, deps: { clock: Clock; logger: Logger; containerNet: ContainerNet; dns?: DnsWiring }): ProxyWiring {
  const log = deps.logger
  const docker = dockerEndpoint(config)
  const engine = createEngineClient(docker)
  const defaultIpalloc = !config.noDefaultIpalloc
  const attached = new Map<string, number>() // container id → pid it was attached at
  const macs = new Map<string, string>() // container id → its ethwe MAC (--rewrite-inspect, as Weave)
  // The start through the proxy and its `start` event race; both must share one attach.
  const inFlight = new Map<string, Promise<void>>()

  const { tcp, extraUnix } = listenAddresses(config)

  const attach = async (c: { id: string; pid: number; items: import('../proxy').StartedContainer['items'] }) => {
    if (attached.get(c.id) === c.pid) return // the start event of a start we already handled
    const key = `${c.id}:${c.pid}`
    let p = inFlight.get(key)
    if (!p) {
      p = deps.containerNet
        .attach({ id: c.id, netns: { pid: c.pid }, items: c.items, mtu: config.mtu, ...(config.noMulticastRoute ? { link: { multicastRoute: false } } : {}) })
        .then((r) => {
          attached.set(c.id, c.pid)
          if (r.mac) macs.set(c.id, r.mac)
        })
        .finally(() => inFlight.delete(key))
      inFlight.set(key, p)
    }
    await p
  }

  const onEvent = (e: ContainerEvent) => {
    deps.dns?.onContainerEvent(e) // die → its names go at once (the lease waits out the grace period)
    if (e.action === 'destroy') {
      attached.delete(e.id)
      macs.delete(e.id)
      deps.containerNet.release(e.id).catch((err: Error) => log.warn(`releasing ${e.id.slice(0, 12)}: ${err.message}`))
    } else if (e.action === 'die') {
      attached.delete(e.id)
      deps.containerNet.died(e.id)
    } else if (e.action === 'start') {
      // Any container, ours or attached by `weave attach`: started means alive.
      deps.containerNet.started(e.id)
      // Restarts by a restart policy or `docker start` straight to the engine: attach too.
      inspectWeaveContainer(engine, e.id, defaultIpalloc)
        .then((c) => (c ? attach(c) : undefined))
        .catch((err: Error) => log.warn(`attaching ${e.id.slice(0, 12)} after its start event: ${err.message}`))
    }
  }

  const proxyConfig: ProxyConfig = {
      socketPath: proxySocketPath(config.runDir),
      tcp,
      tls: loadProxyTls(config),
      docker,
      weavewaitDir: installWeavewait(path.join(config.runDir, 'w')),
      defaultIpalloc,
      rewriteInspect: config.rewriteInspect,
      // A little longer than the allocation deadline, so the error that says why (IPAM's state) wins.
      attachTimeoutMs: config.attachTimeoutMs + 5_000,
  }
  const hooks: ProxyHooks = {
        onStarted: (c) => attach(c),
        // Hostname from the container name (or label), --dns/--dns-search pointing at weaveDNS.
        onCreate: deps.dns ? (body, ctx) => deps.dns!.rewriteCreate(body, ctx) : undefined,
        onEvent,
        inspectAddress: (id) => {
          const first = deps.containerNet.addressesOf(id)[0]
          const c = first ? parseCidr(first) : undefined
          const mac = macs.get(id)
          return c ? { ip: first.split('/')[0], prefixLen: c.prefix, ...(mac ? { mac } : {}) } : undefined
        },
  }
  const main = createProxy(proxyConfig, { clock: deps.clock, logger: log, hooks })
  // Each further unix socket (`-H unix://…`) is one more listener in front of the same hooks;
  // only the main one follows the events stream.
  const extras = extraUnix.map((socketPath) =>
    createProxy({ ...proxyConfig, socketPath, tcp: undefined }, { clock: deps.clock, logger: log, hooks: { ...hooks, onEvent: undefined } }))
  const all = [main, ...extras]
  const proxy: Proxy = {
    async start() { for (const p of all) await p.start() },
    async stop() { await Promise.all(all.map((p) => p.stop())) },
    addresses: () => all.flatMap((p) => p.addresses()),
    openConnections: () => all.reduce((n, p) => n + p.openConnections(), 0),
  }

  return {
    proxy,
    async stop() {
      await proxy.stop()
    },
    statusLines: () => [
      ['Service', 'proxy'],
      ['Address', proxy.addresses().join(', ') || 'not listening'],
      ['Docker', config.dockerApi],
    ],
    report: () => ({ Addresses: proxy.addresses(), DockerApi: config.dockerApi, Containers: attached.size }),
  }
}

/**
 * `-H`/`--proxy-listen` addresses in Weave's syntax: at most one `tcp://HOST[:PORT]` (port 12375
 * by default, loopback when HOST is empty) and any number of `unix:///PATH`; the unix socket in
 * the run dir (what `weave env` points at) is always served as well.
 */
export function listenAddresses(config: Pick<WeaverConfig, 'proxyListen' | 'runDir'>): { tcp?: { host: string; port: number }; extraUnix: string[] } {
  const tcp: Array<{ host: string; port: number }> = []
  const unix: string[] = []
  for (const l of config.proxyListen) {
    const r = parseDockerHost(l, { defaultTcpHost: '127.0.0.1', defaultPort: DEFAULT_PROXY_TCP_PORT })
    if (!r.ok) throw new Error(`-H ${l}: ${r.error}`)
    if ('host' in r.endpoint) tcp.push(r.endpoint)
    else if (r.endpoint.socketPath !== proxySocketPath(config.runDir) && !unix.includes(r.endpoint.socketPath)) unix.push(r.endpoint.socketPath)
  }
  if (tcp.length > 1) throw new Error(`-H: one tcp:// address at most (got ${tcp.length}); unix:// ones may be repeated`)
  return { tcp: tcp[0], extraUnix: unix }
}
