/**
 * A simulated mesh for the metrics and topology tests and the metrics benchmark: the status model
 * of N peers in a ring with chords (each peer connected to its next 3), as router/mesh builds it,
 * and matching overlay and IPAM facts. Pure data: no sockets.
 */
import type { MeshStatus } from '../router/mesh'
import type { IpamFacts, MetricsSources, PeerTraffic } from '../router/metrics'

export function peerName(i: number): string {
  return `aa:00:00:00:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`
}

/** Peer 0 is us, connected to every other peer (discovery's full mesh); peer i also links to i+1..i+3 (mod n). */
export function simulatedMesh(n: number, opts: { encrypted?: boolean; unreachable?: number[] } = {}): MeshStatus {
  const links = new Map<number, Set<number>>()
  for (let i = 0; i < n; i++) links.set(i, new Set())
  for (let i = 0; i < n; i++) {
    for (let k = 1; k <= Math.min(3, n - 1); k++) {
      const j = (i + k) % n
      if (j === i) continue
      links.get(i)!.add(j)
      links.get(j)!.add(i)
    }
  }
  for (let j = 1; j < n; j++) { links.get(0)!.add(j); links.get(j)!.add(0) }
  const down = new Set(opts.unreachable ?? [])
  const peers = [...links].map(([i, set]) => ({
    name: peerName(i), nickname: `host${i}`, uid: String(1000 + i), shortId: i + 1, version: 3, reachable: !down.has(i),
    connections: [...set].map((j) => ({ peer: peerName(j), nickname: `host${j}`, addr: `192.168.${j >> 8}.${j & 0xff}:6783`, outbound: i < j, established: true })),
  }))
  const connections = [...links.get(0)!].map((j) => ({
    direction: 'outbound' as const, addr: `192.168.${j >> 8}.${j & 0xff}:6783`, state: 'established' as const,
    encrypted: !!opts.encrypted, peer: peerName(j), nickname: `host${j}`,
  }))
  return {
    name: peerName(0), nickname: 'host0', uid: '1000', shortId: 1, version: 3, port: 6783, encryption: !!opts.encrypted,
    discovery: true, connLimit: 200, targets: connections.map((c) => c.addr), connections, peers, unicastRoutes: {},
    stats: { gossipMessagesSent: 10, gossipBytesSent: 1234, connectionsAdded: connections.length, connectionsClosed: 2 },
  }
}

/** IPAM facts of a /12 split evenly among the mesh's peers, with `leases` addresses leased here. */
export function simulatedIpam(st: MeshStatus, leases: number): IpamFacts {
  const size = 1 << 20
  const each = Math.floor(size / st.peers.length)
  return {
    activeIps: leases, rangeSize: size, pendingAllocates: 0, pendingClaims: 0,
    shares: st.peers.map((p) => ({ addresses: each, reachable: p.reachable })),
  }
}

/** Sources over a simulated mesh (what router/observe-wiring builds from the real components). */
export function simulatedSources(n: number, leases: number): MetricsSources {
  const st = simulatedMesh(n)
  const ipam = simulatedIpam(st, leases)
  const traffic: PeerTraffic[] = st.connections.map((c, i) => ({
    peer: c.peer!, datapath: i % 2 ? 'fastdp' : 'sleeve', encrypted: false, txBytes: 1000 * i, rxBytes: 2000 * i, txPackets: i, rxPackets: 2 * i,
  }))
  return {
    mesh: () => st,
    carrier: (peer) => ({ datapath: traffic.find((t) => t.peer === peer)?.datapath ?? 'sleeve', encrypted: false }),
    ipam: () => ipam,
    traffic: () => traffic,
    fallbacks: () => new Map([['fastdp heartbeats do not get through both ways (UDP vxlan port blocked, or the path MTU too small for full-size frames)', 2]]),
  }
}
