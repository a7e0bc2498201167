/**
 * The socket edge of the control API: HTTP on a TCP address (127.0.0.1:6784 by default) and on a
 * unix socket in the run dir (`api.sock`), both served by one ApiRouter.
 *
 * The TCP listener is reachable from any web page the host's browser opens: every request there,
 * WebSocket upgrades included, passes local-guard.ts first (Host, Origin, a non-simple
 * Content-Type for writes) and is answered 403 with the reason otherwise. This is the one place the
 * check lives, so routes added later are covered without doing anything.
 */
import * as http from 'node:http'
import * as fs from 'node:fs'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from '../deps'
import type { ApiResult, ApiRouter } from './router'
import { listenerPolicy, refuseForeign, type LocalPolicy } from './local-guard'

/** Bodies above this are refused: the control API never needs more. */
const MAX_BODY_BYTES = 1 << 20

export interface ApiListen {
  tcp?: { host: string; port: number }
  unixPath?: string
}

export interface ApiServer {
  start(): Promise<void>
  stop(): Promise<void>
  /** The TCP port bound (after start), e.g. when asked for port 0. */
  tcpPort(): number | undefined
}

export function createApiServer(router: ApiRouter, listen: ApiListen, logger: Logger): ApiServer {
  const servers: http.Server[] = []
  // the TCP listener's own address, set once it listens (its port may be 0 = chosen by the kernel);
  // until then the TCP server takes no connections
  let tcpPolicy: LocalPolicy | undefined
  let refusals = 0
  /** Logs the first ten refusals, then every 100th: a page retrying in a loop cannot fill the log. */
  const noteRefusal = (req: http.IncomingMessage, why: string) => {
    if (refusals++ < 10 || refusals % 100 === 0) logger.warn(`API ${req.method} ${req.url}: ${why} (${refusals} refused so far)`)
  }

  const onRequestFor = (policyOf: () => LocalPolicy | undefined) => (req: http.IncomingMessage, res: http.ServerResponse) => {
    const policy = policyOf()
    const why = policy && refuseForeign(req.method ?? 'GET', req.headers, policy)
    if (why) {
      noteRefusal(req, why)
      // no body is read and nothing reaches a handler; close so a page cannot pipeline more
      res.setHeader('connection', 'close')
      send(res, { status: 403, text: why })
      return
    }
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
      void router
        .handle({ method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, body: Buffer.concat(chunks) })
        .then((r) => send(res, r))
    })
    req.on('error', () => res.destroy())
  }

  const onUpgradeFor = (policyOf: () => LocalPolicy | undefined) => (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy())
    const policy = policyOf()
    const why = policy && refuseForeign(req.method ?? 'GET', req.headers, policy)
    const handler = why ? undefined : router.matchUpgrade(new URL(req.url ?? '/', 'http://api').pathname)
    if (why) noteRefusal(req, why)
    if (!handler) {
      const [status, text] = why ? ['403 Forbidden', why] : ['404 Not Found', `no upgrade on ${req.url}`]
      socket.end(`HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(text) + 1}\r\nconnection: close\r\n\r\n${text}\n`)
      return
    }
    handler(req, socket, head)
  }

  const newServer = (viaTcp: boolean) => {
    const s = http.createServer(onRequestFor(() => (viaTcp ? tcpPolicy ?? REFUSE_ALL : undefined)))
    s.on('upgrade', onUpgradeFor(() => (viaTcp ? tcpPolicy ?? REFUSE_ALL : undefined)))
    return s
  }
  let tcpServer: http.Server | undefined

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
        const s = newServer(true)
        await listenOne(s, listen.tcp).catch((err: NodeJS.ErrnoException) => {
          throw new Error(`cannot listen for the API on ${listen.tcp!.host}:${listen.tcp!.port}: ${err.code ?? err.message}`)
        })
        tcpPolicy = listenerPolicy(listen.tcp.host, (s.address() as AddressInfo).port, { writesNeedNonSimpleType: true })
        servers.push(s)
        tcpServer = s
        logger.info(`API listening on http://${listen.tcp.host}:${listen.tcp.port}`)
      }
      if (listen.unixPath) {
        // A stale socket from a killed daemon would make listen fail with EADDRINUSE; the pid
        // file check in the launcher already guarantees no live daemon owns it.
        fs.rmSync(listen.unixPath, { force: true })
        const s = newServer(false) // only local processes with access to the run dir reach it
        await listenOne(s, listen.unixPath)
        servers.push(s)
        logger.info(`API listening on unix:${listen.unixPath}`)
      }
    },
    tcpPort() {
      const a = tcpServer?.address()
      return a && typeof a === 'object' ? a.port : undefined
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
      tcpServer = undefined
      if (listen.unixPath) fs.rmSync(listen.unixPath, { force: true })
    },
  }
}

/** Before the listener knows its port (no connection can arrive then): nothing passes. */
const REFUSE_ALL: LocalPolicy = { hosts: new Set(), writesNeedNonSimpleType: true, refuseAnyOrigin: true }

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
