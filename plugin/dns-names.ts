/**
 * weaveDNS names of containers on weave networks: the container's name, and each
 * `--network-alias`, in the DNS domain, to its address(es). Registered once the container runs
 * (Docker's remote API tells the driver nothing about the container), withdrawn when it dies.
 */
import type { Logger } from '../router/deps'
import type { WeaveDns } from '../dns'
import type { WeaveContainer } from './docker-side'

/** `name` in `domain` (`weave.local.`): a bare label gets the domain, a name already in it is kept. */
export function qualifyName(name: string, domain: string): string {
  const n = name.toLowerCase().replace(/\.$/, '')
  const d = domain.toLowerCase().replace(/\.$/, '')
  return n === d || n.endsWith(`.${d}`) ? `${n}.` : `${n}.${d}.`
}

export function registerNames(dns: WeaveDns, c: WeaveContainer, log: Logger): void {
  const addresses = [...new Set(c.networks.map((n) => n.address.split('/')[0]))]
  if (c.name) {
    const r = dns.registerContainer(c.id, qualifyName(c.name, dns.domain), addresses)
    if (!r.ok) log.warn(`not registering ${c.name}: ${r.reason}`)
  }
  for (const n of c.networks) {
    for (const alias of n.aliases) {
      if (alias === c.name) continue
      const r = dns.addContainerName(c.id, qualifyName(alias, dns.domain), [n.address.split('/')[0]])
      if (!r.ok) log.warn(`not registering alias ${alias} of ${c.name || c.id.slice(0, 12)}: ${r.reason}`)
    }
  }
}

/** The container died: its name and aliases go (Docker gives it a new endpoint if it starts again). */
export function withdrawNames(dns: WeaveDns, id: string): void {
  // Names and aliases only: records added by hand (`weave dns-add ... CONTAINER`) outlive a stop.
  dns.unregisterContainer(id)
}
