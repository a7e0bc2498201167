/**
 * The IPAM half: Docker asks for a pool when a network is created and for an address per
 * endpoint; the mesh's ring (ipam/) hands them out, so two hosts' local-scope networks on the same
 * subnet never give out the same address. Docker does not say which container an address is for,
 * so each lease gets an id of its own (`docker-ep-…`) and is released by address.
 */
import type { Clock, Logger, Rng } from '../router/deps'
import { type Allocator, type Cidr, formatCidr, parseCidr } from '../ipam'
import { type Json, PluginError, optMap, optStr, str } from './protocol'
import { ENDPOINT_LEASE_PREFIX } from './lease-gc'

/** libnetwork's key for the gateway in RequestPool's Data and RequestAddress's Options. */
export const GATEWAY_LABEL = 'com.docker.network.gateway'
const REQUEST_ADDRESS_TYPE = 'RequestAddressType'
export const POOL_PREFIX = 'weave:'

export interface IpamDriverConfig {
  /** --ipalloc-range: every pool must lie inside it. */
  range: string
  /** The pool when Docker asks for none (the `weave` network): --ipalloc-default-subnet or the range. */
  defaultSubnet: string
  /** Give up on an address after this long, saying why (IPAM's state), instead of hanging `docker run`. */
  timeoutMs: number
}

export interface IpamDriverDeps {
  allocator: Allocator
  clock: Clock
  rng: Rng
  logger: Logger
}

export interface Pool {
  subnet: Cidr
  /** Where addresses come from: --ip-range, else the subnet. */
  range: Cidr
}

const isNetwork = (c: Cidr) => c.ip % 2 ** (32 - c.prefix) === 0
const span = (c: Cidr) => ({ start: c.ip - (c.ip % 2 ** (32 - c.prefix)), end: c.ip - (c.ip % 2 ** (32 - c.prefix)) + 2 ** (32 - c.prefix) })
const within = (inner: Cidr, outer: Cidr) => span(inner).start >= span(outer).start && span(inner).end <= span(outer).end
const ipOf = (c: Cidr) => formatCidr(c).split('/')[0]

export function formatPoolId(p: Pool): string {
  const s = formatCidr(p.subnet)
  const r = formatCidr(p.range)
  return POOL_PREFIX + (r === s ? s : `${s}:${r}`)
}

export function parsePoolId(id: string): Pool {
  const bad = () => new PluginError(400, `unknown pool ${JSON.stringify(id)} (not one of weave's)`)
  if (!id.startsWith(POOL_PREFIX)) throw bad()
  const [s, r] = id.slice(POOL_PREFIX.length).split(':')
  const subnet = parseCidr(s)
  const range = r === undefined ? subnet : parseCidr(r)
  if (!subnet || !range) throw bad()
  return { subnet, range }
}

export function createIpamDriver(config: IpamDriverConfig, deps: IpamDriverDeps): Map<string, (b: Json) => Promise<Json> | Json> {
  const { allocator } = deps
  const universe = parseCidr(config.range)
  const defaultSubnet = parseCidr(config.defaultSubnet)
  if (!universe || !defaultSubnet) throw new Error(`bad IPAM range ${config.range} / ${config.defaultSubnet}`)
  const log = deps.logger

  function network(text: string, what: string, call: string): Cidr {
    const c = parseCidr(text)
    if (!c || !isNetwork(c)) throw new PluginError(400, `${call}: ${what} ${JSON.stringify(text)} is not a network in CIDR form (such as 10.40.0.0/16)`)
    if (c.prefix > 30) throw new PluginError(400, `${call}: ${what} ${text} is too small for containers (at most /30)`)
    return c
  }

  function requestPool(b: Json): Json {
    const call = 'RequestPool'
    if (b.V6 === true) throw new PluginError(400, 'weave IPAM gives IPv4 addresses only; drop --ipv6 or use another IPAM driver for IPv6')
    const pool = optStr(b, 'Pool', call)
    const subnet = pool ? network(pool, 'subnet', call) : defaultSubnet!
    if (!within(subnet, universe!)) {
      throw new PluginError(400, `subnet ${formatCidr(subnet)} is outside weave's allocation range ${formatCidr(universe!)} (--ipalloc-range)`)
    }
    const sub = optStr(b, 'SubPool', call)
    const range = sub ? network(sub, 'ip-range', call) : subnet
    if (!within(range, subnet)) throw new PluginError(400, `ip-range ${formatCidr(range)} is not inside subnet ${formatCidr(subnet)}`)
    const id = formatPoolId({ subnet, range })
    log.info(`pool ${id}`)
    // Docker wants a gateway per network; weave networks have none (containers reach each other
    // on the bridge; the way out is `weave expose`), so it is told the network address, which no
    // container is ever given, and does not ask for one.
    return { PoolID: id, Pool: formatCidr(subnet), Data: { [GATEWAY_LABEL]: formatCidr(subnet) } }
  }

  async function requestAddress(b: Json): Promise<Json> {
    const call = 'RequestAddress'
    const pool = parsePoolId(str(b, 'PoolID', call))
    const want = optStr(b, 'Address', call)
    const opts = optMap(b, 'Options')
    const gateway = opts[REQUEST_ADDRESS_TYPE] === GATEWAY_LABEL
    const id = gateway ? `docker-gw-${formatCidr(pool.subnet)}` : `${ENDPOINT_LEASE_PREFIX}${Buffer.from(deps.rng.bytes(6)).toString('hex')}`
    if (want !== undefined) {
      const c = parseCidr(`${want}/${pool.subnet.prefix}`)
      if (!c || !within({ ip: c.ip, prefix: 32 }, pool.subnet)) throw new PluginError(400, `${call}: address ${JSON.stringify(want)} is not in ${formatCidr(pool.subnet)}`)
      try {
        await withDeadline(allocator.claim(id, c), `claiming ${want}`)
      } catch (err) {
        throw new PluginError(409, `weave cannot give ${want} to this container: ${(err as Error).message}`)
      }
      log.info(`claimed ${formatCidr(c)} as ${id}`)
      return { Address: formatCidr(c), Data: {} }
    }
    if (gateway) return { Address: formatCidr(pool.subnet), Data: {} } // never leased: see requestPool
    let got: Cidr
    try {
      got = await withDeadline(allocator.allocate(id, pool.range), `an address in ${formatCidr(pool.range)}`)
    } catch (err) {
      throw new PluginError(503, `weave has no address for this container: ${(err as Error).message}`)
    }
    const out = { ip: got.ip, prefix: pool.subnet.prefix }
    log.info(`allocated ${formatCidr(out)} as ${id}`)
    return { Address: formatCidr(out), Data: {} }
  }

  async function releaseAddress(b: Json): Promise<Json> {
    const call = 'ReleaseAddress'
    const pool = parsePoolId(str(b, 'PoolID', call))
    const addr = str(b, 'Address', call)
    for (const o of allocator.owned()) {
      if (!o.containerid.startsWith('docker-')) continue
      for (const c of allocator.lookup(o.containerid, pool.subnet)) {
        if (ipOf(c) !== addr) continue
        const done = allocator.release(o.containerid, c.ip)
        log.info(`released ${addr} (${o.containerid})`)
        if (o.containerid.startsWith(ENDPOINT_LEASE_PREFIX)) {
          // Answered once released in memory (the address is free for the next request at once),
          // not once on disk: a `docker run --rm` waits for this, and a loaded disk's flush took
          // up to 100 ms. A crash before the write leaves the lease in the state file, where the
          // start-up endpoint lease GC (lease-gc.ts) finds no endpoint holding it.
          done.catch((err: Error) => log.warn(`releasing ${addr}: ${err.message}`))
          return {}
        }
        await done
        return {}
      }
    }
    return {} // already free: Docker repeats releases after a restart
  }

  function withDeadline<T>(p: Promise<T>, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const cancel = deps.clock.setTimer(config.timeoutMs, () =>
        reject(new Error(`no answer for ${what} within ${Math.round(config.timeoutMs / 1000)} s; IP allocation is ${allocator.statusText()}`)),
      )
      p.then((v) => { cancel(); resolve(v) }, (e: Error) => { cancel(); reject(e) })
    })
  }

  return new Map<string, (b: Json) => Promise<Json> | Json>([
    ['IpamDriver.GetCapabilities', () => ({ RequiresMACAddress: false, RequiresRequestReplay: false })],
    ['IpamDriver.GetDefaultAddressSpaces', () => ({ LocalDefaultAddressSpace: 'weavelocal', GlobalDefaultAddressSpace: 'weaveglobal' })],
    ['IpamDriver.RequestPool', requestPool],
    ['IpamDriver.ReleasePool', (b) => { parsePoolId(str(b, 'PoolID', 'ReleasePool')); return {} }],
    ['IpamDriver.RequestAddress', requestAddress],
    ['IpamDriver.ReleaseAddress', releaseAddress],
  ])
}

export { ipOf }
