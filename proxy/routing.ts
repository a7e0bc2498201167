/**
 * A client connection's requests: read each head, refuse what a web page could send through the
 * TCP listener, and route the call -- kept alive, intercepted (create, start, inspect) or
 * forwarded as the last call on its connection (routes.ts decides which).
 */
import type * as net from 'node:net'
import { refuseForeign } from '../router/api'
import type { ProxyContext } from './context'
import { interceptCreate } from './create-intercept'
import { findHeadEnd, getHeader, parseHead, parseRequestLine, setHeader, withConnectionClose } from './http-head'
import { rewriteInspectAnswer, rewritesInspect } from './inspect-rewrite'
import { MAX_HEAD, ProxyReply, finish, hasRequestBody, readBody, replyError, withBody } from './replies'
import { keepAliveSafe, routeRequest } from './routes'
import { interceptStart } from './start-attach'
import { type Conn, exchange, forward, forwardKeepAlive } from './streams'

/** A client connected (`viaTcp`: through the TCP listener); serve its requests. */
export function onConnection(ctx: ProxyContext, client: net.Socket, viaTcp: boolean): void {
  if (viaTcp) ctx.fromTcp.add(client)
  client.setNoDelay(true) // TCP clients: answers are small writes a client waits on
  client.on('error', (err) => ctx.log.debug(`client connection: ${err.message}`))
  const conn: Conn = { client }
  client.on('close', () => conn.up?.destroy())
  readHead(ctx, conn, Buffer.alloc(0))
}

/** Wait for the next request head on `conn` (`buf`: bytes already read), then dispatch it. */
function readHead(ctx: ProxyContext, conn: Conn, buf: Buffer): void {
  const { client } = conn
  const tryDispatch = (): boolean => {
    const end = findHeadEnd(buf)
    if (end < 0) {
      if (buf.length > MAX_HEAD) { stop(); replyError(client, 431, 'request head too large') }
      return false
    }
    stop()
    client.pause()
    dispatch(ctx, conn, buf.subarray(0, end), buf.subarray(end)).catch((err: Error) => {
      if (err instanceof ProxyReply) replyError(client, err.status, err.message)
      else if ((err as NodeJS.ErrnoException).code === 'ENGINE_TIMEOUT') { ctx.log.warn(`proxy: ${err.message}`); replyError(client, 504, `weave proxy: ${err.message}`) }
      else { ctx.log.error(`proxy: ${err.stack ?? err.message}`); replyError(client, 500, `weave proxy: ${err.message}`) }
    })
    return true
  }
  const onData = (d: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d
    tryDispatch()
  }
  // The client closed between requests (it keeps a connection only while it wants to).
  const onEnd = () => { stop(); conn.up?.destroy(); client.end() }
  const stop = () => { client.off('data', onData); client.off('end', onEnd) }
  if (buf.length && tryDispatch()) return
  if (client.readableEnded) { onEnd(); return } // half-closed while its last answer was on the way
  client.on('data', onData)
  client.once('end', onEnd)
  client.resume()
}

async function dispatch(ctx: ProxyContext, conn: Conn, rawHead: Buffer, rest: Buffer): Promise<void> {
  const { client } = conn
  const { deps, log } = ctx
  const t0 = deps.clock.now()
  let head = parseHead(rawHead)
  const line = head && parseRequestLine(head.startLine)
  if (!head || !line) throw new ProxyReply(400, 'malformed HTTP request')
  const policy = ctx.fromTcp.has(client) ? ctx.tcpPolicy : undefined
  const why = policy && refuseForeign(line.method, { host: getHeader(head, 'Host'), origin: getHeader(head, 'Origin') }, policy)
  if (why) {
    if (ctx.refusals++ < 10 || ctx.refusals % 100 === 0) log.warn(`proxy: ${line.method} ${line.target}: ${why} (${ctx.refusals} refused so far)`)
    throw new ProxyReply(403, `weave proxy: ${why}`)
  }
  // Old clients sent the socket path as Host ("Host: /var/run/docker.sock"), which Go rejects.
  if ((getHeader(head, 'Host') ?? '').startsWith('/')) head = setHeader(head, 'Host', 'docker')
  const route = routeRequest(line.method, line.target)
  const intercepted = route.kind === 'create' || route.kind === 'start' || (route.kind === 'inspect' && rewritesInspect(ctx))
  if (!intercepted && line.version === 'HTTP/1.1' && keepAliveSafe(line.method, line.target) && !hasRequestBody(head) && !/close|upgrade/i.test(getHeader(head, 'Connection') ?? '')) {
    forwardKeepAlive(ctx, conn, head, line.method, rest, (next) => readHead(ctx, conn, next))
    return
  }
  // From here on one request per connection (see withConnectionClose).
  conn.up?.destroy()
  conn.up = undefined
  head = setHeader(head, 'Connection', withConnectionClose(getHeader(head, 'Connection')))
  const done = intercepted ? ctx.latency.start(route.kind) : undefined // until the client has its answer (metrics)
  if (intercepted) client.once('close', () => { done?.('forwarded'); log.debug(`${line.method} ${line.target}: ${deps.clock.now() - t0} ms`) })
  try {
    if (route.kind === 'create') {
      const body = await readBody(client, head, rest)
      const query = new URLSearchParams(line.target.split('?')[1] ?? '')
      const out = await interceptCreate(ctx, body, query.get('name') ?? undefined)
      forward(ctx, client, withBody(head, out), out)
    } else if (route.kind === 'start') {
      const body = await readBody(client, head, rest)
      await interceptStart(ctx, client, withBody(head, body), body, route.container)
    } else if (route.kind === 'inspect' && rewritesInspect(ctx)) {
      const answer = await exchange(ctx, withBody(head, rest), rest)
      finish(client, await rewriteInspectAnswer(ctx, answer) ?? answer)
    } else {
      forward(ctx, client, head, rest)
    }
  } catch (err) { done?.(err instanceof ProxyReply ? err.status : 500); throw err }
}
