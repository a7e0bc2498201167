/**
 * weaveDNS assembled: the records CRDT on the mesh's `dns` channel, the registration calls the
 * proxy / attach / plugins make, the query path (rate limit → answer → forward), and the
 * status/report model. Construction does no I/O; start() listens; stop() closes everything.
 */
import type { Clock, Logger, Rng } from '../router/deps'
import type { Gossip, GossipHost } from '../router/mesh'
import { EXTERN_ID, Records, entryKey, type Entry } from './records'
import { DnsGossiper } from './gossiper'
import { answerQuery, servfail } from './answer'
import { Upstream, type Server } from './upstream'
import { DnsSockets } from './server'
import { SourceLimiter } from './rate-limit'
import { inDomain, isIPv4, normalizeDomain, normalizeName, qualify } from './names'
import type { DnsConfig, DnsCounters, RegisterResult, WeaveDns } from './types'

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
  /** Keys of entries added by hand (dns-add): they outlive a container's stop, not its removal. */
  const manual = new Set<string>()
  const counters: DnsCounters = {
    queries: 0, answeredLocally: 0, nxdomain: 0, forwarded: 0, servfail: 0, malformed: 0, rateLimited: 0,
    truncated: 0, httpRefused: 0, refusedClockSkew: 0, droppedPeerEntries: 0,
  }
  let known = new Set<string>([self])
  /** Entries whose owner our topology does not know yet, by key; taken in when it does, else dropped at the next GC. */
  let pending = new Map<string, Entry>()
  const MAX_PENDING = 20_000
  let gossip: Gossip | undefined
  let stopGc = () => {}
  let unsubscribe = () => {}
  const limiter = new SourceLimiter(config.perSourceQps ?? DNS_DEFAULTS.perSourceQps, Math.max(100, (config.perSourceQps ?? DNS_DEFAULTS.perSourceQps) / 2))

  const gossiper = new DnsGossiper({
    records, clock: deps.clock, logger: log, self,
    maxClockSkewMs: config.maxClockSkewMs ?? DNS_DEFAULTS.maxClockSkewMs,
    isKnownPeer: (o) => known.has(o),
    onOwnChanged: (own) => broadcast(own),
    onUnknownOrigin: (entries) => {
      for (const e of entries) {
        const k = entryKey(e)
        const old = pending.get(k)
        if (!old && pending.size >= MAX_PENDING) continue
        if (!old || old.version < e.version) pending.set(k, e)
      }
    },
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

  const shuffle = <T>(xs: readonly T[]): T[] => {
    const a = [...xs]
    for (let i = a.length - 1; i > 0; i--) {
      const j = deps.rng.int(i + 1)
      ;[a[i], a[j]] = [a[j], a[i]]
    }
    return a
  }

  /** Local answers return at once (no promise per query: this is the hot path); forwards return a promise. */
  function handleQuery(query: Buffer, transport: 'udp' | 'tcp', source: string): Buffer | undefined | Promise<Buffer | undefined> {
    counters.queries++
    if (!limiter.allow(source, deps.clock.now())) { counters.rateLimited++; return undefined }
    const d = answerQuery(query, transport, { domain, ttlSeconds, lookup: (n) => records.lookup(n), reverse: (a) => records.reverse(a), shuffle })
    if (d.kind === 'drop') { counters.malformed++; return undefined }
    if (d.kind === 'reply') {
      if (d.rcode === 'FORMERR' || d.rcode === 'NOTIMP') counters.malformed++
      else if (d.rcode === 'NXDOMAIN') counters.nxdomain++
      else counters.answeredLocally++
      if (d.truncated) counters.truncated++
      return d.bytes
    }
    counters.forwarded++
    return upstream.forward(query, transport).then((r) => {
      if (r) return r
      counters.servfail++
      return servfail(d.query, transport)
    })
  }

  const sockets = config.listen ? new DnsSockets({ host: config.listen.host, port: config.listen.port }, handleQuery, { clock: deps.clock, logger: log }) : undefined

  function addEntries(containerId: string, fqdn: string, addresses: string[], isManual: boolean): RegisterResult {
    const name = normalizeName(fqdn)
    if (!name) return { ok: false, reason: `"${fqdn}" is not a valid DNS name` }
    if (!inDomain(name, domain)) return { ok: false, reason: `${name} is not in the DNS domain ${domain}` }
    const bad = addresses.find((a) => !isIPv4(a))
    if (bad !== undefined) return { ok: false, reason: `"${bad}" is not an IPv4 address` }
    const changed: Entry[] = []
    for (const address of addresses) {
      const e = records.addLocal({ hostname: name, containerId, address })
      if (isManual) manual.add(`${self}|${containerId}|${address}|${name}`)
      if (e) changed.push(e)
    }
    broadcast(changed)
    return { ok: true, fqdn: name, added: changed.length }
  }

  const isManual = (e: Entry) => manual.has(`${e.origin}|${e.containerId}|${e.address}|${e.hostname}`)

  function gcTick(): void {
    records.gc(deps.clock.now())
    pending = new Map()
    stopGc = deps.clock.setTimer(config.gcIntervalMs ?? DNS_DEFAULTS.gcIntervalMs, gcTick)
  }

  function onPeers(): void {
    known = new Set(deps.host.view.peers().map((p) => p.name as string))
    known.add(self)
    const ready = [...pending.values()].filter((e) => known.has(e.origin))
    if (ready.length) {
      for (const e of ready) pending.delete(entryKey(e))
      records.merge(ready, deps.clock.now(), (o) => known.has(o))
    }
    for (const origin of new Set(records.all().map((e) => e.origin))) {
      if (!known.has(origin)) {
        const n = records.dropPeer(origin)
        counters.droppedPeerEntries += n
        log.info(`peer ${origin} left the mesh: dropped its ${n} DNS entries`)
      }
    }
  }

  return {
    domain,
    ttlSeconds,
    registerContainer(containerId, fqdn, addresses) {
      const want = normalizeName(fqdn)
      // Entries of this container that are not part of the new registration go (a new address).
      const stale = (e: Entry) => e.containerId === containerId && !isManual(e) && !(e.hostname === want && addresses.includes(e.address))
      broadcast(records.removeLocal(stale, deps.clock.now()))
      return addEntries(containerId, fqdn, addresses, false)
    },
    addContainerName(containerId, fqdn, addresses) {
      return addEntries(containerId, fqdn, addresses, false)
    },
    unregisterContainer(containerId) {
      const gone = records.removeLocal((e) => e.containerId === containerId && !isManual(e), deps.clock.now())
      broadcast(gone)
      return gone.length
    },
    containerDestroyed(containerId) {
      const gone = records.removeLocal((e) => e.containerId === containerId, deps.clock.now())
      for (const e of gone) manual.delete(`${e.origin}|${e.containerId}|${e.address}|${e.hostname}`)
      broadcast(gone)
      return gone.length
    },
    addRecord(r) {
      return addEntries(r.containerId ?? EXTERN_ID, r.fqdn, r.addresses, true)
    },
    removeRecord(r) {
      const name = r.fqdn ? normalizeName(r.fqdn) : undefined
      const cid = r.containerId ?? (r.fqdn ? undefined : EXTERN_ID)
      const gone = records.removeLocal((e) =>
        (cid === undefined || e.containerId === cid) &&
        (name === undefined || e.hostname === name) &&
        (!r.addresses?.length || r.addresses.includes(e.address)), deps.clock.now())
      for (const e of gone) manual.delete(`${e.origin}|${e.containerId}|${e.address}|${e.hostname}`)
      broadcast(gone)
      return gone.length
    },
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
      unsubscribe = deps.host.view.onPeersChanged(onPeers)
      onPeers()
      stopGc = deps.clock.setTimer(config.gcIntervalMs ?? DNS_DEFAULTS.gcIntervalMs, gcTick)
      if (sockets) {
        // A taken or missing address must not keep the router down: records still gossip, and
        // status says DNS is not listening.
        try {
          await sockets.start()
          const a = sockets.address()!
          log.info(`listening on ${a.host}:${a.port} (udp, tcp) for ${domain}`)
        } catch (err) {
          await sockets.stop()
          log.error(`cannot listen on ${config.listen!.host}:${config.listen!.port}: ${(err as Error).message}; weaveDNS answers nobody`)
        }
      } else {
        log.warn('no listen address: DNS answers nobody (set --dns-listen-address)')
      }
    },
    async stop() {
      stopGc()
      unsubscribe()
      await sockets?.stop()
    },
  }
}
