/**
 * The router's Prometheus metrics: Weave 2.8's names and labels, plus what Weave lacked (traffic
 * per peer and data path, fastdp→sleeve fallbacks, gossip bytes). Every metric is computed at
 * scrape time from the sources (a prom-client `collect`), and every series a dashboard may
 * expect is written, at 0 when there is nothing to count, so `rate()` and alerts never see a
 * series vanish when IPAM or DNS is off or a connection state is empty.
 */
import type * as PromClient from 'prom-client'
import type { MetricsSources, PeerTraffic } from './sources'
import { requestDuration } from './latency'

/**
 * prom-client is loaded on the first scrape (this door is also imported by the proxy and plugin for
 * their latencies): a router that is never scraped does not carry it (issue 18).
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on first use, synchronously
const prom = (): typeof PromClient => require('prom-client') as typeof PromClient

/** Weave's connection states (`allConnectionStates`), all written on every scrape. */
export const CONNECTION_STATES = ['established', 'pending', 'connecting', 'retrying', 'failed'] as const
/** `type` label of weave_connections: what carries the connection; `none` before anything does. */
export const CONNECTION_TYPES = ['fastdp', 'sleeve', 'none'] as const
export const FALLBACK_REASONS = ['heartbeats-lost', 'path-mtu', 'no-heartbeats', 'peer', 'encryption', 'other'] as const

/**
 * A fastdp→sleeve reason from the overlay switch (free text with addresses in it) as one of a
 * few label values: free text would make a new series per peer and per message.
 */
export function fallbackReason(why: string | undefined): (typeof FALLBACK_REASONS)[number] {
  const w = why ?? ''
  if (/small ones do|path MTU is too small/.test(w)) return 'path-mtu'
  if (/heartbeats do not get through/.test(w)) return 'heartbeats-lost'
  if (/no fastdp heartbeats|waiting for fastdp heartbeats/.test(w)) return 'no-heartbeats'
  if (/ESP|encrypt/i.test(w)) return 'encryption'
  if (/peer/.test(w)) return 'peer'
  return 'other'
}

export interface WeaveRegistry {
  readonly registry: PromClient.Registry
  /** One scrape in the Prometheus text format. */
  scrape(): Promise<string>
  readonly contentType: string
}

/** Build the registry over `sources`. Construction reads nothing; each scrape reads them once. */
export function createWeaveRegistry(sources: MetricsSources): WeaveRegistry {
  const { Counter, Gauge, Registry } = prom()
  const registry = new Registry()
  const registers = [registry]
  // One status read per scrape, shared by the collectors below.
  let status: ReturnType<MetricsSources['mesh']> | undefined
  const mesh = () => (status ??= sources.mesh())

  new Gauge({
    name: 'weave_connections', help: 'Number of peer-to-peer connections.', labelNames: ['state', 'type', 'encryption'], registers,
    collect() {
      const counts = new Map<string, number>()
      for (const c of mesh().connections) {
        const carrier = c.state === 'established' && c.peer ? sources.carrier?.(c.peer) : undefined
        // Weave's `pending`: the TCP connection is up but no data path carries it yet.
        const state = c.state === 'established' && sources.carrier && !carrier?.datapath ? 'pending' : c.state
        const type = carrier?.datapath ?? 'none'
        const enc = String(carrier?.encrypted ?? c.encrypted ?? false)
        const key = `${state}\0${type}\0${enc}`
        counts.set(key, (counts.get(key) ?? 0) + 1)
      }
      this.reset()
      for (const state of CONNECTION_STATES) for (const type of CONNECTION_TYPES) for (const encryption of ['true', 'false']) {
        this.set({ state, type, encryption }, counts.get(`${state}\0${type}\0${encryption}`) ?? 0)
      }
    },
  })
  new Counter({
    name: 'weave_connection_terminations_total', help: 'Number of peer-to-peer connections terminated.', registers,
    collect() { this.reset(); this.inc(mesh().stats.connectionsClosed) },
  })
  const ipamGauge = (name: string, help: string, value: (i: NonNullable<ReturnType<NonNullable<MetricsSources['ipam']>>>) => number, labels?: Record<string, string>) =>
    new Gauge({
      name, help, registers, labelNames: labels ? Object.keys(labels) : [],
      collect() {
        const i = sources.ipam?.()
        if (labels) this.set(labels, i ? value(i) : 0)
        else this.set(i ? value(i) : 0)
      },
    })
  ipamGauge('weave_ips', 'Number of IP addresses.', (i) => i.activeIps, { state: 'local-used' })
  ipamGauge('weave_max_ips', 'Size of IP address space used by allocator.', (i) => i.rangeSize)
  ipamGauge('weave_ipam_unreachable_count', 'Number of unreachable peers.', (i) => i.shares.filter((s) => !s.reachable).length)
  ipamGauge('weave_ipam_unreachable_percentage', 'Percentage of IP addresses owned by unreachable peers.', (i) =>
    i.rangeSize ? (100 * i.shares.reduce((n, s) => n + (s.reachable ? 0 : s.addresses), 0)) / i.rangeSize : 0)
  ipamGauge('weave_ipam_pending_allocates', 'Number of pending allocates.', (i) => i.pendingAllocates)
  ipamGauge('weave_ipam_pending_claims', 'Number of pending claims.', (i) => i.pendingClaims)
  new Gauge({
    name: 'weave_dns_entries', help: 'Number of DNS entries.', registers,
    collect() { this.set(sources.dnsEntries?.() ?? 0) },
  })
  new Gauge({
    name: 'weave_flows', help: 'Number of FastDP flows.', registers,
    collect() { this.set(sources.flows?.() ?? 0) },
  })
  registerTraffic(registers, sources, mesh)
  new Counter({
    name: 'weave_fastdp_fallbacks_total', help: 'Times a peer fell back from fastdp to sleeve, by reason.', labelNames: ['reason'], registers,
    collect() {
      const by = new Map<string, number>()
      for (const [why, n] of sources.fallbacks?.() ?? []) by.set(fallbackReason(why), (by.get(fallbackReason(why)) ?? 0) + n)
      this.reset()
      for (const reason of FALLBACK_REASONS) this.inc({ reason }, by.get(reason) ?? 0)
    },
  })
  new Counter({
    name: 'weave_gossip_bytes_total', help: 'Bytes of mesh gossip sent (all channels, envelope included).', registers,
    collect() { this.reset(); this.inc(mesh().stats.gossipBytesSent) },
  })
  new Counter({
    name: 'weave_gossip_messages_total', help: 'Mesh gossip messages sent.', registers,
    collect() { this.reset(); this.inc(mesh().stats.gossipMessagesSent) },
  })
  registry.registerMetric(requestDuration())
  return {
    registry,
    contentType: registry.contentType,
    async scrape() {
      status = undefined
      try {
        // a counter read that fails leaves the last one: a scrape never breaks for it
        await sources.refresh?.().catch(() => undefined)
        return await registry.metrics()
      } finally {
        status = undefined
      }
    },
  }
}

/**
 * `weave_peer_{tx,rx}_{bytes,packets}_total{peer, datapath, encryption}`: traffic with each peer by
 * the data path that carried it. A peer's series stay while the peer is in the topology (0 until
 * traffic flows), so a dashboard sees every neighbour.
 */
function registerTraffic(registers: PromClient.Registry[], sources: MetricsSources, mesh: MetricsSources['mesh']): void {
  const { Counter } = prom()
  const labelNames = ['peer', 'datapath', 'encryption'] as const
  const make = (name: string, help: string, pick: (t: PeerTraffic) => number) =>
    new Counter({
      name, help, labelNames, registers,
      collect() {
        this.reset()
        const seen = new Set<string>()
        for (const t of sources.traffic?.() ?? []) {
          const labels = { peer: t.peer, datapath: t.datapath, encryption: String(t.encrypted) }
          seen.add(t.peer)
          this.inc(labels, pick(t))
        }
        // Neighbours with no traffic counted yet: their sleeve series exist at 0.
        for (const c of mesh().connections) {
          if (c.state !== 'established' || !c.peer || seen.has(c.peer)) continue
          this.inc({ peer: c.peer, datapath: 'sleeve', encryption: String(!!c.encrypted) }, 0)
        }
      },
    })
  make('weave_peer_tx_bytes_total', 'Bytes sent to a peer (underlay datagrams), by data path.', (t) => t.txBytes)
  make('weave_peer_rx_bytes_total', 'Bytes received from a peer (underlay datagrams), by data path.', (t) => t.rxBytes)
  make('weave_peer_tx_packets_total', 'Datagrams sent to a peer, by data path.', (t) => t.txPackets)
  make('weave_peer_rx_packets_total', 'Datagrams received from a peer, by data path.', (t) => t.rxPackets)
}
