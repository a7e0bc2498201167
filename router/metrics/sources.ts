/**
 * What the metrics read, and nothing else: each component hands a small read-only function over
 * counters it already keeps (the pull model), so a scrape costs nothing while nobody scrapes and
 * the components need no metrics code of their own. An absent source (IPAM off, DNS not built in,
 * no fastdp) still yields every series, at 0.
 */
import type { MeshStatus } from '../mesh'

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

/** The part of the mesh's status the metrics read (cheap to build even in a mesh of hundreds). */
export type MeshFacts = Pick<MeshStatus, 'connections' | 'stats'>

export interface MetricsSources {
  /** Our connections and the mesh's counters (Mesh.connectionStatus() and Mesh.stats). */
  mesh(): MeshFacts
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
  /** Bring what traffic() returns up to date (the fast path's counters are read, not kept); called once per scrape. */
  refresh?(): Promise<void>
  /** fastdp→sleeve fallbacks since start, by the reason the overlay switch gave. */
  fallbacks?(): ReadonlyMap<string, number>
}
