/**
 * `--metrics-addr`: /metrics alone on an address of its own (Weave's status port 6782, e.g.
 * `0.0.0.0:6782` so a cluster's Prometheus can scrape every node), without exposing the rest of
 * the API there. Read-only: GET/HEAD of /metrics, anything else is refused. On a loopback address
 * the Host header must name loopback too, so a web page cannot read it through DNS rebinding; on
 * another address scraping by any name is the point of the flag.
 */
import * as http from 'node:http'
import type { Logger } from '../deps'
import type { WeaveRegistry } from './weave-metrics'

export interface MetricsServer {
  start(): Promise<void>
  stop(): Promise<void>
  /** The bound port (after start; useful with port 0). */
  port(): number | undefined
}

const LOOPBACK_HOST = /^(localhost|127(\.\d{1,3}){3}|\[::1\])(:\d+)?$/i

/** Whether `host` (bind address) is a loopback address. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host.startsWith('127.') || host === '::1' || host === '[::1]'
}

export function createMetricsServer(metrics: WeaveRegistry, listen: { host: string; port: number }, logger: Logger): MetricsServer {
  let server: http.Server | undefined
  const loopback = isLoopback(listen.host)
  const answer = (res: http.ServerResponse, status: number, text: string) => {
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) })
    res.end(text)
  }
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://metrics')
    if (loopback && !LOOPBACK_HOST.test(req.headers.host ?? '')) return answer(res, 421, 'this address answers only to loopback host names\n')
    if (url.pathname !== '/metrics') return answer(res, 404, 'only /metrics is served here\n')
    if (req.method !== 'GET' && req.method !== 'HEAD') return answer(res, 405, 'method not allowed\n')
    metrics.scrape().then(
      (body) => {
        res.writeHead(200, { 'content-type': metrics.contentType, 'content-length': Buffer.byteLength(body) })
        res.end(req.method === 'HEAD' ? undefined : body)
      },
      (err: Error) => answer(res, 500, `metrics: ${err.message}\n`),
    )
  }
  return {
    async start() {
      const s = http.createServer(onRequest)
      await new Promise<void>((resolve, reject) => {
        s.once('error', (err: NodeJS.ErrnoException) => reject(new Error(`cannot listen for metrics on ${listen.host}:${listen.port}: ${err.code ?? err.message}`)))
        s.listen(listen.port, listen.host, () => resolve())
      })
      server = s
      logger.info(`metrics on http://${listen.host}:${this.port()}/metrics`)
    },
    async stop() {
      const s = server
      server = undefined
      if (!s) return
      await new Promise<void>((resolve) => {
        s.close(() => resolve())
        s.closeAllConnections()
      })
    },
    port() {
      const a = server?.address()
      return a && typeof a === 'object' ? a.port : undefined
    },
  }
}
