/** Public door of the mesh (control plane): identity, connections, topology, routes, gossip. */
export * from './gossip-contract'
export * from './connection-contract'
