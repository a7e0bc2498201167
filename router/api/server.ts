/**
 * The socket edge of the control API: HTTP on a TCP address (127.0.0.1:6784 by default) and on a
 * unix socket in the run dir (`api.sock`), both served by one ApiRouter.
 */
import * as http from 'node:http'
import * as fs from 'node:fs'
import type { Logger } from '../deps'
import type { ApiResult, ApiRouter } from './router'

/** Bodies above this are refused: the control API never needs more. */
const MAX_BODY_BYTES = 1 << 20

export interface ApiListen {
  tcp?: { host: string; port: number }
  unixPath?: string
}

export interface ApiServer {
  start(): Promise<void>
  stop(): Promise<void>
}

export function createApiServer(router: ApiRouter, listen: ApiListen, logger: Logger): ApiServer {
  const servers: http.Server[] = []

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = []
    let size = 0
    let refused = false
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > MAX_BODY_BYTES && !refused) {
        refused = true
        send(res, { status: 413, text: 'request body too large' })
        req.destroy()
      } else chunks.push(c)
    })
    req.on('end', () => {
      if (refused) return
      const url = new URL(req.url ?? '/', 'http://api')
      router
        .handle({ method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, body: Buffer.concat(chunks) })
        .then((r) => send(res, r))
    })
    req.on('error', () => res.destroy())
  }

  const listenOne = (server: http.Server, target: { port: number; host: string } | string) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      const done = () => {
        server.off('error', reject)
        resolve()
      }
      if (typeof target === 'string') server.listen(target, done)
      else server.listen(target.port, target.host, done)
    })

  return {
    async start() {
      if (listen.tcp) {
        const s = http.createServer(onRequest)
        await listenOne(s, listen.tcp).catch((err: NodeJS.ErrnoException) => {
          throw new Error(`cannot listen for the API on ${listen.tcp!.host}:${listen.tcp!.port}: ${err.code ?? err.message}`)
        })
        servers.push(s)
        logger.info(`API listening on http://${listen.tcp.host}:${listen.tcp.port}`)
      }
      if (listen.unixPath) {
        // A stale socket from a killed daemon would make listen fail with EADDRINUSE; the pid
        // file check in the launcher already guarantees no live daemon owns it.
        fs.rmSync(listen.unixPath, { force: true })
        const s = http.createServer(onRequest)
        await listenOne(s, listen.unixPath)
        servers.push(s)
        logger.info(`API listening on unix:${listen.unixPath}`)
      }
    },
    async stop() {
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.close(() => resolve())
              s.closeAllConnections?.()
            }),
        ),
      )
      servers.length = 0
      if (listen.unixPath) fs.rmSync(listen.unixPath, { force: true })
    },
  }
}

function send(res: http.ServerResponse, r: ApiResult): void {
  const status = r.status ?? 200
  let body: string
  let type: string
  if (r.json !== undefined) {
    body = JSON.stringify(r.json, null, 2) + '\n'
    type = 'application/json'
  } else {
    body = r.text ?? ''
    if (body.length > 0 && !body.endsWith('\n')) body += '\n'
    type = 'text/plain; charset=utf-8'
  }
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...r.headers })
  res.end(body)
}
