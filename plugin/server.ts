/**
 * The plugin's unix socket (Docker finds `/run/docker/plugins/<name>.sock` by itself): HTTP in,
 * answer() from protocol.ts out. A web page cannot reach a unix socket, but a request carrying a
 * browser's Origin (or Sec-Fetch-Site) header is refused all the same (403), before any handler runs.
 */
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as path from 'node:path'
import { performance } from 'node:perf_hooks'
import type { Logger } from '../router/deps'
import { requestLatency } from '../router/metrics'
import { PLUGIN_CONTENT_TYPE, answer, type PluginAnswer, type Routes } from './protocol'

/** Plugin calls are small; anything bigger is not Docker. */
const MAX_BODY = 1024 * 1024

export interface PluginServer {
  start(): Promise<void>
  stop(): Promise<void>
  readonly socketPath: string
}

/**
 * `closeEach`: answer with `Connection: close` (the router-down responder: Docker must not keep a
 * pooled connection to it once the next daemon has taken the socket path over).
 */
export function createPluginServer(socketPath: string, routes: Routes, logger: Logger, opts: { closeEach?: boolean } = {}): PluginServer {
  const latency = requestLatency('plugin')
  const server = http.createServer((req, res) => {
    const t0 = performance.now()
    // weave_request_duration_seconds{component="plugin"}: the route is one of Docker's calls, never free text
    const route = (req.url ?? '/').replace(/^\//, '').split('?')[0]
    const done = latency.start(routes.has(route) ? route : 'other')
    const send = (a: PluginAnswer) => {
      done(a.status)
      logger.debug(`${req.url} ${a.status} in ${(performance.now() - t0).toFixed(1)} ms`)
      const text = JSON.stringify(a.body)
      res.writeHead(a.status, {
        'Content-Type': PLUGIN_CONTENT_TYPE,
        'Content-Length': Buffer.byteLength(text),
        ...(opts.closeEach ? { Connection: 'close' } : {}),
      })
      res.end(text)
      if (a.status !== 200) logger.warn(`${req.method} ${req.url}: ${a.status} ${String(a.body.Err)}`)
    }
    if (req.headers.origin !== undefined || req.headers['sec-fetch-site'] !== undefined) {
      req.resume()
      send({ status: 403, body: { Err: 'requests from web pages are refused' } })
      return
    }
    const parts: Buffer[] = []
    let size = 0
    let tooBig = false
    req.on('data', (d: Buffer) => {
      size += d.length
      if (size > MAX_BODY) tooBig = true
      else parts.push(d)
    })
    req.on('end', () => {
      if (tooBig) return send({ status: 413, body: { Err: `request body larger than ${MAX_BODY} bytes` } })
      answer(routes, req.method ?? 'GET', req.url ?? '/', Buffer.concat(parts).toString('utf8')).then(send, (err: Error) =>
        send({ status: 500, body: { Err: err.message } }),
      )
    })
  })
  server.keepAliveTimeout = 60_000

  return {
    socketPath,
    start: () =>
      new Promise((resolve, reject) => {
        fs.mkdirSync(path.dirname(socketPath), { recursive: true })
        removeStaleSocket(socketPath)
        server.once('error', reject)
        server.listen(socketPath, () => {
          server.off('error', reject)
          fs.chmodSync(socketPath, 0o660)
          logger.info(`Docker plugin listening on ${socketPath}`)
          resolve()
        })
      }),
    stop: () =>
      new Promise((resolve) => {
        if (!server.listening) return resolve()
        server.close(() => resolve())
        server.closeAllConnections()
        try { fs.unlinkSync(socketPath) } catch { /* already gone */ }
      }),
  }
}

/** A socket file left by a killed daemon; anything that is not a socket is left alone (listen fails). */
function removeStaleSocket(p: string): void {
  try {
    if (fs.lstatSync(p).isSocket()) fs.unlinkSync(p)
  } catch { /* absent */ }
}
