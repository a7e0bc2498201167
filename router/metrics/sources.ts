/**
 * What the metrics read, and nothing else: each component hands a small read-only function over
 * counters it already keeps (the pull model), so a scrape costs nothing while nobody scrapes and
 * the components need no metrics code of their own. An absent source (IPAM off, DNS not built in,
 * no fastdp) still yields every series, at 0.
 */
import type { MeshStatus } from '../mesh'

/** One connection as the metrics see it: its state and, once established, what carries it. */
export interface ConnectionFacts {
  state: string
  /** `fastdp`, `sleeve`, or undefined while nothing carries it yet. */
  datapath?: 'fastdp' | 'sleeve'
  encrypted: boolean
}

export interface IpamFacts {
  /** Addresses leased on this peer (Weave's `weave_ips{state="local-used"}`). */
  activeIps: number
  /** Size of the allocation range. */
  rangeSize: number
  pendingAllocates: number
  pendingClaims: number
  /** Every peer's share of the ring and whether we can reach it. */
  shares: ReadonlyArray<{ addresses: number; reachable: boolean }>
}

/** Bytes and packets exchanged with one peer over one data path, since the router started. */
export interface PeerTraffic {
  peer: string
  datapath: 'sleeve' | 'fastdp'
  encrypted: boolean
  txBytes: number
  rxBytes: number
  txPackets: number
  rxPackets: number
}

export interface MetricsSources {
  /** The mesh's status model (connections, peers, gossip counters). */
  mesh(): MeshStatus
  /** What carries the established connection to `peer`, as `weave status connections` says. */
  carrier?(peer: string): { datapath?: 'fastdp' | 'sleeve'; encrypted?: boolean } | undefined
  /** Undefined when IPAM is off. */
  ipam?(): IpamFacts | undefined
  /** DNS entries this peer holds for its own containers; undefined when DNS is off. */
  dnsEntries?(): number | undefined
  /** fastdp flows in the datapath; undefined without fastdp. */
  flows?(): number | undefined
  /** Per-peer traffic counters of the data paths. */
  traffic?(): readonly PeerTraffic[]
  /** fastdp→sleeve fallbacks since start, by the reason the overlay switch gave. */
  fallbacks?(): ReadonlyMap<string, number>
}
