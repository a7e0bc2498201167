/** Public door of the mesh (control plane): identity, connections, topology, routes, gossip. */
export * from './gossip-contract'
export * from './connection-contract'
// Connection layer (wire, handshake, crypto, heartbeats, transports).
export { derivePasswordKey, sodiumReady, type PasswordKey } from './crypto'
export { createMemoryNetwork, type MemoryNetwork, type MemoryNetworkDeps, type MemoryNetworkOptions, type MemoryTransportOptions } from './memory-transport'
export { DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_HEARTBEAT_TIMEOUT_MS } from './connection'
export { MAX_FRAME_BYTES } from './framing'
export { MIN_PROTOCOL_VERSION, MAX_PROTOCOL_VERSION } from './handshake'
export { createTcpTransport, type TcpTransport, type TcpTransportDeps, type TcpTransportOptions } from './tcp-transport'
// Router (identity, topology, routes, gossip channels, connection maker, status).
export { createMesh, MESH_DEFAULTS, TOPOLOGY_CHANNEL, type Mesh, type MeshConfig, type MeshDeps, type MeshStatus, type MeshStats, type PeerStatus, type ConnectionStatus, type TargetsStore } from './mesh-router'
export { generatePeerName, createLocalIdentity, randomUid, type MutableLocalIdentity } from './identity'
export { normalizeAddr, nextTryLater, DEFAULT_MESH_PORT } from './connection-maker'
export { statusLines, connectionsText, peersText, targetsText, reportJson } from './status-text'
