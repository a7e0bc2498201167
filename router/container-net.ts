/**
 * Giving a container (a Docker container or a plain network namespace) its weave addresses:
 * IPAM allocations or claims for each requested item, then `ethwe` through router/net. Used by
 * `weave attach` (the API) and by the Docker proxy's start hook, so both behave the same.
 *
 * Order matters for "loses nothing": addresses are allocated (and persisted by IPAM) before the
 * interface exists, and when the interface cannot be made the leases this call created are
 * released again, so a failed attach leaves neither an interface nor a stray lease.
 */
import * as fs from 'node:fs'
import type { Clock, Logger } from './deps'
import type { AttachRequest, NetHost, NetnsRef } from './net'
import { formatCidr, parseCidr, type Allocator } from '../ipam'
import type { CidrItem } from '../proxy'

export interface ContainerAttach {
  /** Container ID (Docker) or a stable id for a plain namespace; owns the IPAM leases. */
  id: string
  netns: NetnsRef
  /** What to give it; empty means `net:default`. */
  items: CidrItem[]
  mtu?: number
  /** Interface options other than Weave's defaults (a CNI pod: its ifname, hairpin, routes, no multicast). */
  link?: Pick<AttachRequest, 'ifname' | 'hairpin' | 'routes' | 'multicastRoute' | 'isolateMulticast'>
}

export interface ContainerNet {
  /** Allocate/claim and attach; idempotent per id. Returns every address on ethwe and its MAC. */
  attach(req: ContainerAttach): Promise<{ mac: string; addresses: string[] }>
  /** Remove ethwe (or only `addresses`) and release the matching leases. */
  detach(req: { id: string; netns: NetnsRef; addresses?: string[] }): Promise<{ removed: string[] }>
  /** Release every lease of `id` (the container is gone). */
  release(id: string): Promise<void>
  /** Addresses IPAM holds for `id`. */
  addressesOf(id: string): string[]
  /** The container died: its leases go after IPAM's grace unless it shows a sign of life. */
  died(id: string): void
  /** The container started again: it keeps its leases. */
  started(id: string): void
}

export class AttachError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'AttachError'
  }
}

export interface ContainerNetDeps {
  allocator: Allocator
  net: NetHost
  logger: Logger
  clock: Clock
  /** Give up on an address after this long, saying what IPAM is waiting for (default 60 s). */
  allocateTimeoutMs?: number
}

export function createContainerNet(deps: ContainerNetDeps): ContainerNet {
  const { allocator, net } = deps
  const log = deps.logger.child('attach')

  async function addressFor(id: string, item: CidrItem): Promise<string> {
    if (item.kind === 'net-default') return formatCidr(await allocator.allocate(id))
    const cidr = parseCidr(item.cidr)
    if (!cidr) throw new AttachError(`"${item.cidr}" is not an address in CIDR form`)
    if (item.kind === 'net') return formatCidr(await allocator.allocate(id, cidr))
    await allocator.claim(id, cidr)
    return formatCidr(cidr)
  }

  return {
    async attach(req) {
      const t0 = deps.clock.now()
      const items: CidrItem[] = req.items.length ? req.items : [{ kind: 'net-default' }]
      const before = new Set(allocator.lookup(req.id).map(formatCidr))
      const addresses: string[] = []
      try {
        for (const item of items) addresses.push(await withDeadline(addressFor(req.id, item)))
      } catch (err) {
        await releaseNew(req.id, before)
        throw new AttachError(`cannot get an address for ${short(req.id)}: ${(err as Error).message}`, { cause: err })
      }
      const t1 = deps.clock.now()
      try {
        const r = await net.attach({ ...req.link, netns: req.netns, containerId: req.id, addresses, mtu: req.mtu })
        log.info(`attached ${short(req.id)}${req.link?.ifname ? ` (${req.link.ifname})` : ''}: ${r.addresses.join(' ')} (${r.mac}; ipam ${t1 - t0} ms, ethwe ${deps.clock.now() - t1} ms)`)
        return { mac: r.mac, addresses: r.addresses }
      } catch (err) {
        if (namespaceGone(req.netns)) {
          // The container ran and exited while we attached (weavewait lets its command start as
          // soon as ethwe is up, e.g. `docker run --rm busybox true`): nothing is left to
          // attach to. Not an error; its leases go with its die/destroy events.
          log.info(`${short(req.id)} exited while being attached`)
          return { mac: '', addresses }
        }
        await releaseNew(req.id, before)
        throw new AttachError(`cannot attach ${req.link?.ifname ?? 'ethwe'} to ${short(req.id)}: ${(err as Error).message}`, { cause: err })
      }
    },
    async detach(req) {
      const r = await net.detach({ netns: req.netns, containerId: req.id, addresses: req.addresses })
      const held = allocator.lookup(req.id)
      for (const c of held) {
        if (!req.addresses || req.addresses.includes(formatCidr(c))) await allocator.release(req.id, c.ip)
      }
      return { removed: r.removed }
    },
    async release(id) {
      if (allocator.lookup(id).length) await allocator.release(id)
    },
    addressesOf: (id) => allocator.lookup(id).map(formatCidr),
    died: (id) => allocator.containerDied(id),
    started: (id) => allocator.containerStarted(id),
  }

  /**
   * An allocation waits while IPAM is not ready (awaiting consensus, no free space reachable);
   * past the deadline the caller hears why instead of hanging until Docker's client gives up.
   */
  function withDeadline<T>(p: Promise<T>): Promise<T> {
    const ms = deps.allocateTimeoutMs ?? 60_000
    return new Promise((resolve, reject) => {
      const cancel = deps.clock.setTimer(ms, () =>
        reject(new AttachError(`no address within ${Math.round(ms / 1000)} s; IP allocation is ${allocator.statusText()}`)),
      )
      p.then((v) => { cancel(); resolve(v) }, (e: Error) => { cancel(); reject(e) })
    })
  }

  /** Undo leases this call created, keeping what the container already had. */
  async function releaseNew(id: string, before: Set<string>): Promise<void> {
    for (const c of allocator.lookup(id)) {
      if (!before.has(formatCidr(c))) await allocator.release(id, c.ip).catch(() => false)
    }
  }
}

function namespaceGone(ns: NetnsRef): boolean {
  const p = 'pid' in ns ? `/proc/${ns.pid}/ns/net` : 'path' in ns ? ns.path : `/var/run/netns/${ns.name}`
  return !fs.existsSync(p)
}

function short(id: string): string {
  return /^[0-9a-f]{64}$/.test(id) ? id.slice(0, 12) : id
}
