/** weaveDNS's configuration, handle and results. Re-exported by index.ts. */
import type { Entry } from './records'
import type { Server } from './upstream'

export interface DnsConfig {
  /** `--dns-domain` (default `weave.local.`). */
  domain?: string
  /** UDP+TCP address; undefined = no server (records are still kept and gossiped). */
  listen?: { host: string; port: number }
  /** `--dns-ttl` in seconds (default 1). */
  ttlSeconds?: number
  /** `--dns-fallback-timeout`: how long each upstream server gets (default 5000 ms). */
  fallbackTimeoutMs?: number
  /** Where the upstream servers are read from (default /etc/resolv.conf). */
  resolvConf?: string
  tombstoneTtlMs?: number
  maxClockSkewMs?: number
  maxTombstones?: number
  /** Queries a second one client address may send (0 = unlimited). */
  perSourceQps?: number
  gcIntervalMs?: number
}

export type RegisterResult = { ok: true; fqdn: string; added: number } | { ok: false; reason: string }

export interface DnsCounters {
  queries: number
  answeredLocally: number
  nxdomain: number
  forwarded: number
  servfail: number
  /** Dropped or answered FORMERR/NOTIMP. */
  malformed: number
  /** Dropped: over the per-source limit. */
  rateLimited: number
  truncated: number
  /** TCP connections that opened with an HTTP request, dropped. */
  httpRefused: number
  refusedClockSkew: number
  droppedPeerEntries: number
}

/**
 * weaveDNS, as the daemon and its registrars (proxy, `weave attach`, the Docker network plugin,
 * the CNI plugin) see it. Stable: add to it, do not rename.
 */
export interface WeaveDns {
  /** Normalized domain, e.g. `weave.local.`. */
  readonly domain: string
  readonly ttlSeconds: number
  /**
   * A container's name: `fqdn` (must lie in the domain) → `addresses` (IPv4, no prefix). Idempotent;
   * re-registering with other addresses or another name replaces the container's earlier entries.
   */
  registerContainer(containerId: string, fqdn: string, addresses: string[]): RegisterResult
  /**
   * One more name of a running container (an alias): added beside its other names, withdrawn with
   * them by unregisterContainer (unlike addRecord's hand-made records, which outlive a stop).
   */
  addContainerName(containerId: string, fqdn: string, addresses: string[]): RegisterResult
  /** The container stopped or died: tombstone its entries (hand-added ones survive); returns how many. */
  unregisterContainer(containerId: string): number
  /** The container was removed: tombstone everything of it, hand-added entries too. */
  containerDestroyed(containerId: string): number
  /** `weave dns-add`: without a container id the record belongs to `weave:extern`. */
  addRecord(r: { containerId?: string; fqdn: string; addresses: string[] }): RegisterResult
  /** `weave dns-remove`: matching entries of ours (by container, name and/or addresses). */
  removeRecord(r: { containerId?: string; fqdn?: string; addresses?: string[] }): number
  /** Live addresses of a name (a single label gets the domain). */
  lookup(name: string): string[]
  reverse(address: string): string[]
  /** Live entries, sorted by name then address. */
  entries(): Entry[]
  /** Every entry including tombstones (report, tests). */
  allEntries(): Entry[]
  tombstones(): number
  /** Where the server listens (after start); undefined when it does not. */
  listenAddress(): { host: string; port: number } | undefined
  upstreams(): Server[]
  counters(): DnsCounters
  /** The query path without sockets (tests, benchmarks). */
  handleQuery(query: Buffer, transport: 'udp' | 'tcp', source: string): Buffer | undefined | Promise<Buffer | undefined>
  start(): Promise<void>
  stop(): Promise<void>
}
