/**
 * A GossipHost with nobody else on it: lets the daemon run IPAM before (or without) the mesh.
 * Alone, a peer can allocate with `seed=<itself>` or `consensus=1`; anything needing other peers
 * waits, as it would in a partition.
 */
import type { GossipHost, PeerName } from '../router/mesh'

export function soloGossipHost(name: PeerName, nickname: string): GossipHost {
  const self = { name, nickname, uid: 1n }
  return {
    view: { self, peers: () => [self], isReachable: () => false, onPeersChanged: () => () => {} },
    newGossip: () => ({ gossipUnicast: () => false, gossipBroadcast: () => {}, gossipNeighbourSubset: () => {} }),
  }
}
