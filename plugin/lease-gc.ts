/**
 * Start-up lease GC for plugin endpoints, as the IPAM's start-up GC does for proxied containers
 * (router/docker-containers.ts): Docker asks for an endpoint's address before it tells the driver
 * which endpoint it is for, so those leases are held by ids of their own (`docker-ep-…`, see
 * ipam-driver.ts), and a container removed while the router was down (Docker's ReleaseAddress
 * then failed) leaves its lease behind; so does a release answered before it reached the disk
 * (ipam-driver.ts) when the router died right then. At start-up, before the plugin's socket answers (so no
 * request of this run can be in flight), every such lease whose address no endpoint of a weave
 * network holds is released.
 */
import type { Logger } from '../router/deps'
import type { Allocator } from '../ipam'

export const ENDPOINT_LEASE_PREFIX = 'docker-ep-'

/** The endpoint leases restored from the ring's state: id → addresses (`a.b.c.d`, no prefix). */
export function endpointLeases(allocator: Pick<Allocator, 'owned'>): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const o of allocator.owned()) {
    if (o.containerid.startsWith(ENDPOINT_LEASE_PREFIX)) out.set(o.containerid, o.addrs.map((a) => a.split('/')[0]))
  }
  return out
}

/**
 * Pure: which of `leases` no endpoint holds. A lease with any address in use is kept whole
 * (Docker releases an endpoint's address by itself when the endpoint goes).
 */
export function orphanedLeases(leases: ReadonlyMap<string, string[]>, inUse: ReadonlySet<string>): string[] {
  return [...leases].filter(([, addrs]) => !addrs.some((a) => inUse.has(a))).map(([id]) => id)
}

/**
 * Release the orphans among `leases` (taken before the socket listened), given every address
 * Docker's weave-network endpoints hold now; undefined `inUse`: Docker could not be asked, keep all.
 */
export async function collectOrphanedLeases(
  allocator: Pick<Allocator, 'release' | 'lookup'>,
  leases: ReadonlyMap<string, string[]>,
  inUse: ReadonlySet<string> | undefined,
  log: Logger,
): Promise<string[]> {
  if (!leases.size) return []
  if (!inUse) {
    log.info(`${leases.size} endpoint lease(s) restored; Docker cannot be asked which endpoints exist, so all are kept`)
    return []
  }
  const gone = orphanedLeases(leases, inUse)
  for (const id of gone) await allocator.release(id)
  if (gone.length) log.info(`released ${gone.length} lease(s) of endpoints removed while the router was down: ${gone.map((id) => `${id} (${leases.get(id)!.join(' ')})`).join(', ')}`)
  return gone
}
