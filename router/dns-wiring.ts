/**
 * weaveDNS inside the daemon: its config from WeaverConfig, its API routes and status, the
 * container-create rewrite the proxy applies (hostname, --dns, --dns-search), and registration of
 * Docker containers as they are attached (the ContainerNet decorator `withDnsRegistration`, so the
 * proxy, `weave attach` and anything else attaching through ContainerNet register alike).
 *
 * API:
 *   GET    /domain, /dns-address, /dns-args, /status/dns (text); GET /name (JSON entries)
 *   PUT    /name/:id/:ip?fqdn=NAME     (Weave's) add; `weave:extern` as id for no container
 *   DELETE /name/:id/:ip[?fqdn=NAME], DELETE /name/:id
 *   POST   /dns-add, /dns-remove {target?, fqdn?, addresses?, id?} → {fqdn?, addresses, removed?}
 *     target is a Docker container (name or id): its id, its hostname when fqdn is not given, and
 *     its weave addresses when none are given.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import type { Clock, Logger, Rng } from './deps'
import type { WeaverConfig } from './config'
import type { ContainerNet } from './container-net'
import type { GossipHost } from './mesh'
import { ApiError, type ApiRouter, type StatusModel } from './api'
import {
  createWeaveDns, deriveHostname, dnsReport, dnsStatusLines, formatStatusDns, inDomain, isIPv4, normalizeName,
  EXTERN_ID, type WeaveDns,
} from '../dns'
import { createEngineClient, parseDockerHost, type ContainerEvent, type CreateContext } from '../proxy'

export interface DnsWiring {
  dns: WeaveDns
  /** The address containers are told to use (`--dns`), or undefined when there is none yet. */
  containerDnsAddress(): string | undefined
  /** The proxy's create hook: hostname from the name/label, resolver settings. */
  rewriteCreate(body: Record<string, unknown>, ctx: CreateContext): Record<string, unknown>
  /** The proxy's container events: die → unregister, destroy → forget. */
  onContainerEvent(e: ContainerEvent): void
  /** A Docker container got (or changed) its weave addresses: register its name if in the domain. */
  registerDocker(id: string, cidrs: string[]): Promise<void>
  /** Register every running container that holds weave addresses (after a router restart). */
  resync(addressesOf: (id: string) => string[]): Promise<void>
  start(): Promise<void>
  stop(): Promise<void>
}

export interface DnsWiringDeps {
  clock: Clock
  rng: Rng
  logger: Logger
  host: GossipHost
  router: ApiRouter
  status: StatusModel
  /** Addresses `weave expose` gave this host (CIDR form). */
  exposedAddresses(): string[]
  /** Weave addresses IPAM holds for a container (CIDR form): `dns-add CONTAINER` without IPs. */
  containerAddresses(id: string): string[]
}

/** `auto` → the docker bridge's IPv4 address, port 53 (Weave's choice); undefined when there is none. */
export function dnsListen(config: WeaverConfig): { host: string; port: number } | undefined {
  const v = config.dnsListenAddress ?? 'auto'
  if (v === 'auto') {
    const a = os.networkInterfaces().docker0?.find((i) => i.family === 'IPv4')
    return a ? { host: a.address, port: 53 } : undefined
  }
  const m = /^(.+):(\d+)$/.exec(v)!
  return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) }
}

function isLocalAddress(host: string): boolean {
  return Object.values(os.networkInterfaces()).some((l) => l?.some((i) => i.address === host))
}

export function wireDns(config: WeaverConfig, deps: DnsWiringDeps): DnsWiring | undefined {
  if (config.noDns) {
    deps.status.addSection('dns', { order: 25, lines: () => [['Service', 'dns'], ['Status', 'off (--no-dns)']] })
    deps.router.route('GET', '/dns-args', () => ({ text: '' }))
    return undefined
  }
  const log = deps.logger
  const listen = dnsListen(config)
  if (!listen) log.warn('no docker0 bridge: weaveDNS does not listen (use --dns-listen-address HOST:PORT)')
  const dns = createWeaveDns(
    {
      domain: config.dnsDomain, listen, ttlSeconds: config.dnsTtl, fallbackTimeoutMs: config.dnsFallbackTimeoutMs,
      resolvConf: config.resolvConf, perSourceQps: config.dnsRateLimit,
    },
    { clock: deps.clock, rng: deps.rng, logger: log, host: deps.host, isLocalAddress },
  )
  const engine = (() => {
    const ep = parseDockerHost(config.dockerApi)
    return ep.ok ? createEngineClient(ep.endpoint) : undefined
  })()
  const domainNoDot = dns.domain.replace(/\.$/, '')
  const match = config.hostnameMatch !== undefined ? new RegExp(config.hostnameMatch) : undefined

  const containerDnsAddress = (): string | undefined => {
    const a = dns.listenAddress() ?? listen
    if (!a) return undefined
    if (a.host !== '0.0.0.0' && a.host !== '::') return a.host
    // Listening on every address: containers use the host's weave address (`weave expose`).
    return deps.exposedAddresses()[0]?.split('/')[0]
  }

  async function inspect(target: string): Promise<{ id: string; fqdn: string; hostsPath?: string; proxied: boolean } | undefined> {
    if (!engine) return undefined
    const r = await engine.request('GET', `/containers/${encodeURIComponent(target)}/json`).catch(() => undefined)
    if (!r || r.status !== 200) return undefined
    const j = r.json as { Id: string; HostsPath?: string; Config?: { Hostname?: string; Domainname?: string; Entrypoint?: unknown } }
    const h = j.Config?.Hostname ?? ''
    const d = j.Config?.Domainname ?? ''
    const ep = j.Config?.Entrypoint
    return { id: j.Id, fqdn: d ? `${h}.${d}` : h, hostsPath: j.HostsPath, proxied: Array.isArray(ep) && ep[0] === '/w/w' }
  }

  /** A Docker container got (or changed) its weave addresses: register its name if in the domain. */
  async function registerDocker(id: string, cidrs: string[]): Promise<void> {
    const c = await inspect(id)
    if (!c) return
    const addresses = cidrs.map((a) => a.split('/')[0])
    const name = normalizeName(c.fqdn)
    if (!name || !inDomain(name, dns.domain)) return
    const r = addresses.length ? dns.registerContainer(c.id, name, addresses) : { ok: true as const, fqdn: name, added: dns.unregisterContainer(c.id) }
    if (!r.ok) log.warn(`not registering ${id.slice(0, 12)}: ${r.reason}`)
    if (addresses.length && config.rewriteHosts !== false && c.proxied && c.hostsPath) rewriteHosts(c.hostsPath, name, addresses)
  }

  function rewriteHosts(file: string, fqdn: string, addresses: string[]): void {
    // As Weave: the container's own name resolves to its weave address, not Docker's.
    const short = fqdn.replace(/\.$/, '').split('.')[0]
    const lines = [
      '127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback', 'fe00::0\tip6-localnet', 'ff00::0\tip6-mcastprefix',
      'ff02::1\tip6-allnodes', 'ff02::2\tip6-allrouters',
      ...addresses.map((a) => `${a}\t${fqdn.replace(/\.$/, '')} ${short}`),
    ]
    try { fs.writeFileSync(file, lines.join('\n') + '\n') } catch (err) { log.warn(`rewriting ${file}: ${(err as Error).message}`) }
  }

  let warnedLong = false
  const wiring: DnsWiring = {
    dns,
    containerDnsAddress,
    registerDocker,
    rewriteCreate(body, ctx) {
      const out: Record<string, unknown> = { ...body }
      const labels = (body.Labels && typeof body.Labels === 'object' ? body.Labels : {}) as Record<string, string>
      const choice = deriveHostname({ domain: dns.domain, fromLabel: config.hostnameFromLabel, match, replacement: config.hostnameReplacement }, {
        name: ctx.name, hostname: typeof body.Hostname === 'string' ? body.Hostname : undefined, labels,
      })
      if (choice.kind === 'derived') { out.Hostname = choice.hostname; out.Domainname = choice.domainname }
      else if (choice.kind === 'skip' && /longer than/.test(choice.reason) && !warnedLong) {
        warnedLong = true // one warning, not one per container
        log.warn(`not naming containers whose name is too long for DNS (${choice.reason})`)
      }
      const addr = containerDnsAddress()
      const hc = { ...((body.HostConfig && typeof body.HostConfig === 'object' ? body.HostConfig : {}) as Record<string, unknown>) }
      const userDns = Array.isArray(hc.Dns) && hc.Dns.length > 0
      if (!config.withoutDns && addr && !userDns) {
        hc.Dns = [addr]
        const userSearch = Array.isArray(hc.DnsSearch) && hc.DnsSearch.length > 0
        if (!userSearch) hc.DnsSearch = [domainNoDot]
        out.HostConfig = hc
      }
      return out
    },
    onContainerEvent(e) {
      if (e.action === 'die') dns.unregisterContainer(e.id)
      else if (e.action === 'destroy') dns.containerDestroyed(e.id)
    },
    async resync(addressesOf) {
      if (!engine) return
      const r = await engine.request('GET', '/containers/json').catch(() => undefined)
      if (!r || r.status !== 200 || !Array.isArray(r.json)) return
      for (const c of r.json as Array<{ Id: string }>) {
        const held = addressesOf(c.Id)
        if (held.length) await registerDocker(c.Id, held).catch((err: Error) => log.warn(`resync ${c.Id.slice(0, 12)}: ${err.message}`))
      }
    },
    start: () => dns.start(),
    stop: () => dns.stop(),
  }
  routes(deps, wiring, inspect)
  return wiring
}

/**
 * ContainerNet that registers Docker containers in weaveDNS as they are attached or detached:
 * every path that attaches (proxy, its start events, `weave attach`) registers alike.
 */
export function withDnsRegistration(net: ContainerNet, wiring: DnsWiring | undefined, log: Logger): ContainerNet {
  if (!wiring) return net
  const reg = (id: string, cidrs: string[]) => wiring.registerDocker(id, cidrs)
  const isDocker = (id: string) => /^[0-9a-f]{64}$/.test(id)
  return {
    async attach(req) {
      const r = await net.attach(req)
      if (isDocker(req.id) && r.mac) await reg(req.id, r.addresses).catch((err: Error) => log.warn(`dns: ${err.message}`))
      return r
    },
    async detach(req) {
      const r = await net.detach(req)
      if (isDocker(req.id)) await reg(req.id, net.addressesOf(req.id)).catch((err: Error) => log.warn(`dns: ${err.message}`))
      return r
    },
    async release(id) {
      await net.release(id)
      wiring.dns.unregisterContainer(id)
    },
    addressesOf: (id) => net.addressesOf(id),
    died: (id) => net.died(id),
    started: (id) => net.started(id),
  }
}

type Inspect = (target: string) => Promise<{ id: string; fqdn: string } | undefined>

function routes(deps: DnsWiringDeps, w: DnsWiring, inspect: Inspect): void {
  const { router, status } = deps
  const dns = w.dns
  status.addSection('dns', { order: 25, lines: () => dnsStatusLines(dns) })
  status.addReport('DNS', () => dnsReport(dns))
  router.route('GET', '/status/dns', () => ({ text: formatStatusDns(dns.entries(), dns.domain) }))
  router.route('GET', '/domain', () => ({ text: dns.domain }))
  router.route('GET', '/dns-address', () => ({ text: w.containerDnsAddress() ?? '' }))
  router.route('GET', '/dns-args', () => {
    const a = w.containerDnsAddress()
    return { text: a ? `--dns=${a} --dns-search=${dns.domain.replace(/\.$/, '')}` : '' }
  })
  router.route('GET', '/name', () => ({ json: dns.entries() }))
  router.route('GET', '/name/:name', (req) => ({ json: dns.lookup(req.params.name) }))
  router.route('PUT', '/name/:id/:ip', (req) => {
    const fqdn = req.query.get('fqdn')
    if (!fqdn) throw new ApiError(400, 'fqdn is required')
    const r = dns.addRecord({ containerId: req.params.id, fqdn, addresses: [req.params.ip] })
    if (!r.ok) throw new ApiError(400, r.reason)
    return { status: 204 }
  })
  router.route('DELETE', '/name/:id/:ip', (req) => {
    dns.removeRecord({ containerId: req.params.id, fqdn: req.query.get('fqdn') ?? undefined, addresses: [req.params.ip] })
    return { status: 204 }
  })
  router.route('DELETE', '/name/:id', (req) => {
    dns.removeRecord({ containerId: req.params.id, fqdn: req.query.get('fqdn') ?? undefined })
    return { status: 204 }
  })

  /** `adding`: a container's hostname and weave addresses fill in what is not given. */
  async function resolveBody(raw: Buffer, adding: boolean): Promise<{ id?: string; fqdn?: string; addresses: string[] }> {
    let b: Record<string, unknown>
    try { b = raw.length ? JSON.parse(raw.toString('utf8')) as Record<string, unknown> : {} } catch { throw new ApiError(400, 'expected a JSON object') }
    const addresses = Array.isArray(b.addresses) ? b.addresses.map(String).map((a) => a.replace(/\/\d+$/, '')) : []
    const bad = addresses.find((a) => !isIPv4(a))
    if (bad) throw new ApiError(400, `"${bad}" is not an IPv4 address`)
    let id = typeof b.id === 'string' && b.id ? b.id : undefined
    let fqdn = typeof b.fqdn === 'string' && b.fqdn ? b.fqdn : undefined
    if (typeof b.target === 'string' && b.target) {
      const c = await inspect(b.target)
      if (!c) throw new ApiError(404, `no container ${b.target}`)
      id = c.id
      if (adding && !fqdn) fqdn = c.fqdn
      if (adding && !addresses.length) addresses.push(...deps.containerAddresses(c.id).map((a) => a.split('/')[0]))
    }
    return { id, fqdn, addresses: [...new Set(addresses)] }
  }

  router.route('POST', '/dns-add', async (req) => {
    const b = await resolveBody(req.body, true)
    if (!b.fqdn) throw new ApiError(400, 'a name is needed (-h FQDN, or a container with a hostname in the domain)')
    if (!b.addresses.length) throw new ApiError(400, 'no addresses given and the container has none registered')
    const r = dns.addRecord({ containerId: b.id ?? EXTERN_ID, fqdn: b.fqdn, addresses: b.addresses })
    if (!r.ok) throw new ApiError(400, r.reason)
    return { json: { fqdn: r.fqdn, addresses: b.addresses } }
  })
  router.route('POST', '/dns-remove', async (req) => {
    const b = await resolveBody(req.body, false)
    if (!b.id && !b.fqdn && !b.addresses.length) throw new ApiError(400, 'say what to remove: addresses, a container or -h FQDN')
    const removed = dns.removeRecord({ containerId: b.id ?? (b.fqdn ? undefined : EXTERN_ID), fqdn: b.fqdn, addresses: b.addresses })
    return { json: { removed } }
  })
}
