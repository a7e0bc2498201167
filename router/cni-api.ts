/**
 * The router's side of the CNI plugin (cni/, the `weave-net` executable a container runtime runs
 * for every pod): three endpoints of the control API, which the plugin reaches over
 * `$WEAVE_RUN_DIR/api.sock`. The runtime's container id owns the IPAM leases, so a pod keeps its
 * address across router restarts (leases persist with the ring) until its DEL.
 *
 *   POST /cni/add   {containerId, netns, ifname, mtu?, hairpin?, subnet?, routes?: [{dst, gw?}]}
 *                   → {mac, addresses: [cidr], gateway?, routes: [{dst, gw?}], hostVeth}
 *   POST /cni/del   {containerId, netns?, ifname}            → {released: [cidr]}
 *   POST /cni/check {containerId, netns, ifname, addresses?}  → {mac, addresses}; 409 naming what differs
 *   POST /cni/run   {env: {CNI_*}, stdin}  → the plugin's stdout, exit code in `X-Cni-Exit-Code`
 *
 * /cni/run is what the installed executable (cni/shim, a small C front) calls: the whole plugin
 * (cni/plugin.ts, the same code the node plugin runs) runs here, its three requests answered in
 * this process, so a pod's start pays for no node process at all.
 *
 * Without `routes`, a pod's default route goes via the bridge's address in its subnet, which is
 * allocated as Weave does (`weave:expose`, with masquerading) the first time a pod needs it, and
 * the host then forwards (net.ipv4.ip_forward=1, as Docker's bridge and Kubernetes need). As
 * Weave's CNI plugin, no multicast route and no multicast isolation rules: each of those would
 * cost the pod's start a process in its namespace.
 */
import * as fs from 'node:fs'
import type { Logger } from './deps'
import type { ContainerNet } from './container-net'
import { ApiError, type ApiRequest, type ApiRouter } from './api'
import { EXPOSE_ID, hostVethName, type NetHost, type RouteSpec } from './net'
import { formatCidr, parseCidr, type Allocator, type Cidr } from '../ipam'
import { runPlugin, type RouterCall } from '../cni'

export interface CniApiDeps {
  net: NetHost
  containerNet: ContainerNet
  allocator: Allocator
  logger: Logger
}

/** Linux interface names: 1-15 characters, no `/`, no whitespace. */
const IFNAME = /^[^/\s:]{1,15}$/
/** Container ids as runtimes give them (podman and CRI: 64 hex; others: letters, digits, `_.-`). */
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/

export function registerCniApi(router: ApiRouter, deps: CniApiDeps): void {
  const { net, containerNet, allocator } = deps
  const log = deps.logger
  /** Gateway per subnet, settled once per router process (expose is idempotent but costs processes). */
  const gateways = new Map<string, Promise<string>>()

  /** The bridge's address in `subnet`: an existing one, or one allocated for weave:expose now. */
  function gatewayFor(subnet: Cidr): Promise<string> {
    const key = formatCidr(subnet)
    const cached = gateways.get(key)
    // `weave hide` releases the expose lease: then the cached address is gone from the bridge too.
    if (cached) return cached.then((gw) => (allocator.lookup(EXPOSE_ID, subnet).some((c) => formatCidr(c) === gw) ? gw : refresh()))
    return refresh()
    function refresh(): Promise<string> {
      const p = (async () => {
        const held = allocator.lookup(EXPOSE_ID, subnet).map(formatCidr)
        const cidr = held[0] ?? formatCidr(await allocator.allocate(EXPOSE_ID, subnet))
        await net.expose(cidr) // idempotent: address, masquerading, accept rules
        await net.enableIpForwarding()
        log.info(`bridge address ${cidr} is the pods' gateway in ${key}`)
        return cidr
      })()
      gateways.set(key, p)
      p.catch(() => gateways.delete(key))
      return p
    }
  }

  router.route('POST', '/cni/add', async (req) => {
    const b = body(req)
    const id = containerId(b)
    const ifname = ifnameOf(b)
    const netns = netnsOf(b, true)!
    const subnet = b.subnet === undefined ? allocator.config.defaultSubnet : cidrOf(b.subnet, 'subnet')
    let routes = routesOf(b.routes)
    let gateway: string | undefined
    if (!routes.length) {
      gateway = ip(await gatewayFor(subnet).catch((err: Error) => {
        const st = (err as { status?: unknown }).status // IPAM's 400 (outside the range) stays a configuration error
        throw new ApiError(typeof st === 'number' ? st : 503, `cannot give the bridge an address in ${formatCidr(subnet)}: ${err.message}`)
      }))
      routes = [{ dst: '0.0.0.0/0', gw: gateway }]
    }
    const mtu = b.mtu === undefined ? undefined : positiveInt(b.mtu, 'mtu')
    const r = await containerNet.attach({
      id, netns: { path: netns }, mtu,
      items: b.subnet === undefined ? [] : [{ kind: 'net', cidr: formatCidr(subnet) }],
      link: { ifname, hairpin: b.hairpin === true, routes, multicastRoute: false, isolateMulticast: false },
    }).catch((err: Error) => {
      // IPAM's own refusal keeps its status (400: a subnet outside the range, CNI code 7); no address
      // in time (awaiting consensus, no space reachable) is transient: 503, CNI code 11, the runtime retries.
      const ipamStatus = (err.cause as { status?: unknown } | undefined)?.status
      const status = typeof ipamStatus === 'number' ? ipamStatus : err.message.startsWith('cannot get an address') ? 503 : 500
      throw new ApiError(status, err.message)
    })
    if (!r.mac) {
      await containerNet.release(id)
      throw new ApiError(404, `network namespace ${netns} went away during ADD`)
    }
    return { json: { mac: r.mac, addresses: r.addresses, gateway, routes, hostVeth: hostVethName(id) } }
  })

  router.route('POST', '/cni/del', async (req) => {
    const b = body(req)
    const id = containerId(b)
    const ifname = ifnameOf(b)
    const netns = netnsOf(b, false)
    // The spec's DEL is idempotent: no namespace (already gone) or no interface is not an error,
    // and the leases go in any case.
    if (netns && fs.existsSync(netns)) {
      await net.removeLink({ path: netns }, ifname)
        .catch((err: Error) => { throw new ApiError(500, `removing ${ifname} in ${netns}: ${err.message}`) })
    }
    const released = containerNet.addressesOf(id)
    await containerNet.release(id)
    if (released.length) log.info(`released ${released.join(' ')} of ${id.slice(0, 12)}`)
    return { json: { released } }
  })

  // The plugin's requests, answered by this router's own routes without a socket.
  const inProcess: RouterCall = async (_socket, path, b) => {
    const r = await router.handle({ method: 'POST', path, query: new URLSearchParams(), body: Buffer.from(JSON.stringify(b)) })
    return { status: r.status ?? 200, body: r.json !== undefined ? JSON.stringify(r.json) : (r.text ?? '') }
  }

  router.route('POST', '/cni/run', async (req) => {
    const b = body(req)
    if (typeof b.stdin !== 'string') throw new ApiError(400, 'stdin: expected the network configuration as a string')
    const e = b.env
    if (typeof e !== 'object' || e === null || Array.isArray(e)) throw new ApiError(400, 'env: expected an object of CNI_* variables')
    const env: Record<string, string> = {}
    for (const [k, v] of Object.entries(e)) if (/^CNI_[A-Z]+$/.test(k) && typeof v === 'string') env[k] = v
    // The front sent the conf to the socket the conf names, or (none named) its default: this router.
    const out = await runPlugin({ env, stdin: b.stdin, defaultSocket: 'this router' }, inProcess)
    return { text: out.stdout, headers: { 'x-cni-exit-code': String(out.exitCode) } }
  })

  router.route('POST', '/cni/check', async (req) => {
    const b = body(req)
    const id = containerId(b)
    const ifname = ifnameOf(b)
    const netns = netnsOf(b, true)!
    if (!fs.existsSync(netns)) throw new ApiError(404, `network namespace ${netns} does not exist`)
    const held = containerNet.addressesOf(id)
    if (!held.length) throw new ApiError(409, `IPAM holds no address for container ${id}`)
    const link = await net.inspect({ path: netns }, ifname).catch((err: Error) => { throw new ApiError(500, err.message) })
    if (!link) throw new ApiError(409, `no interface ${ifname} in ${netns}`)
    const expected = [...held, ...(b.addresses === undefined ? [] : cidrList(b.addresses))]
    for (const a of expected) {
      if (!link.addresses.includes(a)) throw new ApiError(409, `${ifname} in ${netns} lacks ${a} (has ${link.addresses.join(' ') || 'no address'})`)
      if (!held.includes(a)) throw new ApiError(409, `${a} on ${ifname} is not held by IPAM for container ${id}`)
    }
    return { json: { mac: link.mac, addresses: link.addresses } }
  })
}

function body(req: ApiRequest): Record<string, unknown> {
  try {
    const b: unknown = JSON.parse(req.body.toString('utf8'))
    if (typeof b === 'object' && b !== null && !Array.isArray(b)) return b as Record<string, unknown>
  } catch { /* fall through */ }
  throw new ApiError(400, 'expected a JSON object')
}

function containerId(b: Record<string, unknown>): string {
  if (typeof b.containerId !== 'string' || !CONTAINER_ID.test(b.containerId)) throw new ApiError(400, 'containerId: expected letters, digits, "_", "." or "-"')
  return b.containerId
}

function ifnameOf(b: Record<string, unknown>): string {
  if (typeof b.ifname !== 'string' || !IFNAME.test(b.ifname)) throw new ApiError(400, 'ifname: expected an interface name of 1-15 characters')
  return b.ifname
}

function netnsOf(b: Record<string, unknown>, required: boolean): string | undefined {
  if (b.netns === undefined || b.netns === '') {
    if (required) throw new ApiError(400, 'netns: expected the path of a network namespace')
    return undefined
  }
  if (typeof b.netns !== 'string' || !b.netns.startsWith('/')) throw new ApiError(400, 'netns: expected an absolute path')
  return b.netns
}

function cidrOf(v: unknown, what: string): Cidr {
  const c = typeof v === 'string' ? parseCidr(v) : undefined
  if (!c) throw new ApiError(400, `${what}: ${JSON.stringify(v)} is not an IPv4 CIDR`)
  return c
}

function cidrList(v: unknown): string[] {
  if (!Array.isArray(v)) throw new ApiError(400, 'addresses: expected a list of CIDRs')
  return v.map((a) => formatCidr(cidrOf(a, 'addresses')))
}

function routesOf(v: unknown): RouteSpec[] {
  if (v === undefined) return []
  if (!Array.isArray(v)) throw new ApiError(400, 'routes: expected a list of {dst, gw?}')
  return v.map((r: { dst?: unknown; gw?: unknown }) => {
    const dst = formatCidr(cidrOf(r?.dst, 'routes[].dst'))
    if (r.gw === undefined) return { dst }
    if (typeof r.gw !== 'string' || !parseCidr(`${r.gw}/32`)) throw new ApiError(400, `routes[].gw: ${JSON.stringify(r.gw)} is not an IPv4 address`)
    return { dst, gw: r.gw }
  })
}

function positiveInt(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 68 || v > 65535) throw new ApiError(400, `${what}: expected an integer from 68 to 65535`)
  return v
}

function ip(cidr: string): string {
  return cidr.replace(/\/\d+$/, '')
}
