/**
 * The router's Prometheus metrics (door of router/metrics).
 *
 *   const metrics = createWeaveRegistry({ mesh: () => mesh.status(), ipam: ..., traffic: ... })
 *   router.route('GET', '/metrics', async () => ({ text: await metrics.scrape(), headers: { 'content-type': metrics.contentType } }))
 *
 * Components that answer requests (proxy, plugin) record their latencies with
 * `requestLatency('plugin').start(route)` → `done(statusCode)`; nothing needs to be passed in.
 * `createMetricsServer` serves /metrics alone on another address (`--metrics-addr`).
 */
export { createWeaveRegistry, fallbackReason, CONNECTION_STATES, CONNECTION_TYPES, FALLBACK_REASONS, type WeaveRegistry } from './weave-metrics'
export { requestLatency, latencyMetrics, type LatencyRecorder } from './latency'
export { createMetricsServer, isLoopback, type MetricsServer } from './metrics-server'
export type { MetricsSources, IpamFacts, MeshFacts, PeerTraffic } from './sources'
