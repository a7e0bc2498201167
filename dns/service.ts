/**
 * weaveDNS assembled: the records CRDT on the mesh's `dns` channel, the registration calls the
 * proxy / attach / plugins make, the query path (rate limit → answer → forward), and the
 * status/report model. Construction does no I/O; start() listens; stop() closes everything.
 * The pieces: query.ts (the query path), registrations.ts (our own entries), peer-entries.ts
 * (entries and the mesh's peers), gossiper.ts (the channel), server.ts (the sockets).
 */
import type { Clock, Logger, Rng } from '../router/deps'
import type { Gossip, GossipHost } from '../router/mesh'
import { Records, type Entry } from './records'
import { DnsGossiper } from './gossiper'
import { Upstream, type Server } from './upstream'
import { DnsSockets } from './server'
import { SourceLimiter } from './rate-limit'
import { normalizeDomain, qualify } from './names'
import { PeerEntries } from './peer-entries'
import { createQueryHandler } from './query'
import { createRegistrations } from './registrations'
import type { DnsConfig, DnsCounters, WeaveDns } from './types'

/** Defaults, each with its reason. */
export const DNS_DEFAULTS = {
  domain: 'weave.local.', // Weave's
  ttlSeconds: 1, // what Weave's code does (its docs said 30): a removed container is forgotten by clients at once
  fallbackTimeoutMs: 5000, // Weave's upstream timeout
  resolvConf: '/etc/resolv.conf',
  tombstoneTtlMs: 30 * 60_000, // Weave's: long enough to reach every peer, bounded
  maxClockSkewMs: 15 * 60_000, // Weave's: half the tombstone lifetime
  maxTombstones: 5_000, // bounds memory under churn within the tombstone lifetime; safe to drop early (records.ts)
  perSourceQps: 2000, // far above any real resolver's need, far below what starves others
  gcIntervalMs: 60_000,
} as const

export interface DnsDeps {
  clock: Clock
  rng: Rng
  logger: Logger
  host: GossipHost
  /** Whether `host` is one of this machine's addresses (never forward to ourselves). */
  isLocalAddress?(host: string): boolean
}

export function createWeaveDns(config: DnsConfig, deps: DnsDeps): WeaveDns {
  const log = deps.logger
  const domain = normalizeDomain(config.domain ?? DNS_DEFAULTS.domain)
  const ttlSeconds = config.ttlSeconds ?? DNS_DEFAULTS.ttlSeconds
  const self = deps.host.view.self.name as string
  const records = new Records({
    self,
    tombstoneTtlMs: config.tombstoneTtlMs ?? DNS_DEFAULTS.tombstoneTtlMs,
    maxTombstones: config.maxTombstones ?? DNS_DEFAULTS.maxTombstones,
  })
  const counters: DnsCounters = {
    queries: 0, answeredLocally: 0, nxdomain: 0, forwarded: 0, servfail: 0, malformed: 0, rateLimited: 0,
    truncated: 0, httpRefused: 0, refusedClockSkew: 0, droppedPeerEntries: 0,
  }
  const peers = new PeerEntries(records, deps.host.view, { clock: deps.clock, logger: log, counters })
  let gossip: Gossip | undefined
  let stopGc = () => {}
  let unsubscribe = () => {}
  const perSourceQps = config.perSourceQps ?? DNS_DEFAULTS.perSourceQps
  const gcIntervalMs = config.gcIntervalMs ?? DNS_DEFAULTS.gcIntervalMs

  const gossiper = new DnsGossiper({
    records, clock: deps.clock, logger: log, self,
    maxClockSkewMs: config.maxClockSkewMs ?? DNS_DEFAULTS.maxClockSkewMs,
    isKnownPeer: (o) => peers.isKnown(o),
    onOwnChanged: (own) => broadcast(own),
    onUnknownOrigin: (entries) => peers.hold(entries),
    onChanged: () => {},
  })
  const broadcast = (changed: Entry[]) => {
    if (changed.length && gossip) gossip.gossipBroadcast(gossiper.data(changed))
  }
  const upstream = new Upstream({
    clock: deps.clock, logger: log,
    resolvConf: config.resolvConf ?? DNS_DEFAULTS.resolvConf,
    timeoutMs: config.fallbackTimeoutMs ?? DNS_DEFAULTS.fallbackTimeoutMs,
    self: () => sockets?.address() ?? config.listen,
    isLocal: (h) => deps.isLocalAddress?.(h) ?? false,
  })
  const handleQuery = createQueryHandler({
    domain, ttlSeconds, records, upstream, counters, clock: deps.clock, rng: deps.rng,
    limiter: new SourceLimiter(perSourceQps, Math.max(100, perSourceQps / 2)),
  })
  const sockets = config.listen ? new DnsSockets({ host: config.listen.host, port: config.listen.port }, handleQuery, { clock: deps.clock, logger: log }) : undefined

  function gcTick(): void {
    records.gc(deps.clock.now())
    peers.gc()
    stopGc = deps.clock.setTimer(gcIntervalMs, gcTick)
  }

  /** A taken or missing address must not keep the router down: records still gossip, and status says DNS is not listening. */
  async function listen(): Promise<void> {
    if (!sockets) {
      log.warn('no listen address: DNS answers nobody (set --dns-listen-address)')
      return
    }
    try {
      await sockets.start()
      const a = sockets.address()!
      log.info(`listening on ${a.host}:${a.port} (udp, tcp) for ${domain}`)
    } catch (err) {
      await sockets.stop()
      log.error(`cannot listen on ${config.listen!.host}:${config.listen!.port}: ${(err as Error).message}; weaveDNS answers nobody`)
    }
  }

  return {
    domain,
    ttlSeconds,
    ...createRegistrations(records, { self, domain, clock: deps.clock, broadcast }),
    lookup: (name) => records.lookup(qualify(name, domain)),
    reverse: (ip) => records.reverse(ip),
    entries: () => records.live().sort((a, b) => a.hostname.localeCompare(b.hostname) || a.address.localeCompare(b.address)),
    allEntries: () => records.all(),
    tombstones: () => records.tombstoneCount,
    listenAddress: () => sockets?.address(),
    upstreams: (): Server[] => upstream.list(),
    counters: () => ({ ...counters, httpRefused: sockets?.counters.httpRefused ?? 0, refusedClockSkew: gossiper.counters.refusedSkew }),
    handleQuery,
    async start() {
      gossip = deps.host.newGossip('dns', gossiper)
      unsubscribe = deps.host.view.onPeersChanged(() => peers.onPeersChanged())
      peers.onPeersChanged()
      stopGc = deps.clock.setTimer(gcIntervalMs, gcTick)
      await listen()
    },
    async stop() {
      stopGc()
      unsubscribe()
      await sockets?.stop()
    },
  }
}
