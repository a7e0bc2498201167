/**
 * The live topology page (door of router/ui): `/ui` and `/ui/app.js` on the API (registerPageRoutes)
 * and the WebSocket feed `/ui/ws` (createTopologyHub, handed the API server's upgrades).
 * The model (topology-model) is pure; the hub is the edge that polls it and sends deltas.
 */
export { registerPageRoutes, pageDir } from './page-routes'
export { createTopologyHub, UI_WS_PATH, type TopologyHub, type TopologyHubSources } from './topology-hub'
export {
  buildTopology, diffTopology, snapshotMessage, edgeId, roundRate,
  type Topology, type TopologyEdge, type TopologyInput, type TopologyMessage, type TopologyNode,
} from './topology-model'
