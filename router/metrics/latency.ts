/**
 * Request latencies of the daemon's front doors (Docker API proxy, Docker plugin, ...), one
 * histogram `weave_request_duration_seconds{component, route, code}` for the whole process:
 * components record into it without being handed anything, and every metrics registry of the
 * process exposes it. `route` must be a small fixed set (an operation name or a route pattern,
 * never a raw path with ids in it), or each container would make new series.
 *
 *   const latency = requestLatency('plugin')
 *   const done = latency.start('NetworkDriver.CreateEndpoint')
 *   ... ; done(200)                      // or latency.observe(route, code, seconds)
 */
import { Histogram, Registry } from 'prom-client'

/** Shared by every registry of this process (see createWeaveRegistry). */
export const latencyRegistry = new Registry()

export const requestDuration = new Histogram({
  name: 'weave_request_duration_seconds',
  help: 'Time to answer a request at the proxy, the plugin or another front door, by route and status code.',
  labelNames: ['component', 'route', 'code'],
  // From a cached inspect (~1 ms) to a container start that waits for IPAM consensus (tens of s).
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  registers: [latencyRegistry],
})

export interface LatencyRecorder {
  /** Starts timing one request; call the result with the answer's status code (or 'error'). */
  start(route: string): (code: number | string) => void
  observe(route: string, code: number | string, seconds: number): void
}

/** The recorder of one component (`proxy`, `plugin`, ...). */
export function requestLatency(component: string): LatencyRecorder {
  return {
    start(route) {
      const t0 = process.hrtime.bigint()
      let done = false
      return (code) => {
        if (done) return
        done = true
        requestDuration.observe({ component, route, code: String(code) }, Number(process.hrtime.bigint() - t0) / 1e9)
      }
    },
    observe(route, code, seconds) {
      requestDuration.observe({ component, route, code: String(code) }, seconds)
    },
  }
}
