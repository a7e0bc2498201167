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
import type { Histogram } from 'prom-client'

type Labels = 'component' | 'route' | 'code'
let histogram: Histogram<Labels> | undefined

/**
 * The histogram, made on first use: prom-client (and what it pulls in) is loaded only by a router
 * that answers proxy or plugin requests or is scraped, not by an idle one (issue 18). Not in any
 * registry itself: every registry of the process adds it (createWeaveRegistry).
 */
export function requestDuration(): Histogram<Labels> {
  if (!histogram) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on first use, synchronously (observe cannot wait)
    const { Histogram: H } = require('prom-client') as typeof import('prom-client')
    histogram = new H({
      name: 'weave_request_duration_seconds',
      help: 'Time to answer a request at the proxy, the plugin or another front door, by route and status code.',
      labelNames: ['component', 'route', 'code'],
      // From a cached inspect (~1 ms) to a container start that waits for IPAM consensus (tens of s).
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [],
    })
  }
  return histogram
}

/** The latency histogram alone in the Prometheus text format (tests, debugging). */
export async function latencyMetrics(): Promise<string> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- see requestDuration
  const { Registry } = require('prom-client') as typeof import('prom-client')
  const r = new Registry()
  r.registerMetric(requestDuration())
  return r.metrics()
}

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
        requestDuration().observe({ component, route, code: String(code) }, Number(process.hrtime.bigint() - t0) / 1e9)
      }
    },
    observe(route, code, seconds) {
      requestDuration().observe({ component, route, code: String(code) }, seconds)
    },
  }
}
