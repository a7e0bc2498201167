/** weaveDNS's status views: the `Service: dns` block, `weave status dns` lines and the report's DNS object. */
import type { WeaveDns } from './types'
import type { Entry } from './records'

/** Lines of the `weave status` block (Weave: Domain, Upstream, TTL, Entries). */
export function dnsStatusLines(dns: WeaveDns): Array<[string, string]> {
  const a = dns.listenAddress()
  return [
    ['Service', 'dns'],
    ['Domain', dns.domain],
    ['Address', a ? `${a.host}:${a.port}` : 'not listening'],
    ['Upstream', dns.upstreams().map((s) => (s.port === 53 ? s.host : `${s.host}:${s.port}`)).join(', ') || 'none'],
    ['TTL', String(dns.ttlSeconds)],
    ['Entries', String(dns.entries().length)],
  ]
}

/**
 * `weave status dns`: one aligned line per live entry — name (the domain left off, as Weave),
 * address, container id (12), owning peer.
 */
export function formatStatusDns(entries: Entry[], domain: string): string {
  const rows = entries.map((e) => [
    e.hostname.endsWith('.' + domain) ? e.hostname.slice(0, -domain.length - 1) : e.hostname.replace(/\.$/, ''),
    e.address,
    e.containerId.slice(0, 12),
    e.origin,
  ])
  const w = [0, 1, 2].map((i) => Math.max(0, ...rows.map((r) => r[i].length)))
  return rows.map((r) => `${r[0].padEnd(w[0])} ${r[1].padEnd(w[1])} ${r[2].padEnd(w[2])} ${r[3]}`).join('\n')
}

/** The report's `DNS` object. */
export function dnsReport(dns: WeaveDns): Record<string, unknown> {
  const a = dns.listenAddress()
  return {
    Domain: dns.domain,
    Address: a ? `${a.host}:${a.port}` : '',
    Upstream: dns.upstreams().map((s) => s.host),
    TTL: dns.ttlSeconds,
    Entries: dns.entries().map((e) => ({
      // Weave's EntryStatus; Tombstone 0 = live (ours keeps tombstones apart, below)
      Hostname: e.hostname, Address: e.address, ContainerID: e.containerId, Origin: e.origin, Version: e.version, Tombstone: 0,
    })),
    Tombstones: dns.tombstones(),
    Counters: dns.counters(),
  }
}
