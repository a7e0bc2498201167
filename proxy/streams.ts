/**
 * Streams between a client and the engine. A call with one small framed answer keeps both
 * connections open for the next call (forwardKeepAlive); any other call is the last on its
 * connection and, once its head is sent, is spliced byte for byte both ways (forward), so chunked
 * streams, 101 upgrades and raw-stream hijacks pass unchanged. exchange() reads one whole answer
 * for the calls the proxy rewrites.
 */
import type * as net from 'node:net'
import type { ProxyContext } from './context'
import { describeEndpoint } from './engine-client'
import { responseFrame, serializeHead, type HttpHead } from './http-head'
import { MAX_BODY, ProxyReply, finish, replyError } from './replies'

/** A client connection; `up` is its kept-alive engine connection between requests, if any. */
export interface Conn { client: net.Socket; up?: net.Socket }

function unreachable(ctx: ProxyContext, err: Error): string {
  return `weave proxy: cannot reach the Docker engine at ${describeEndpoint(ctx.config.docker)}: ${err.message}`
}

/** Send head + bytes upstream, then splice the two connections together. */
export function forward(ctx: ProxyContext, client: net.Socket, head: HttpHead, first: Buffer): void {
  const up = ctx.connectUpstream()
  let answered = false
  up.once('data', () => { answered = true })
  up.on('error', (err) => {
    ctx.log.debug(`upstream connection: ${err.message}`)
    if (!answered) replyError(client, 502, unreachable(ctx, err))
    else client.destroy()
  })
  up.write(serializeHead(head))
  if (first.length) up.write(first)
  splice(client, up)
}

/**
 * Copy both ways. An end on one side half-closes the other (`pipe` ends its destination), so
 * `docker run -i` can close stdin and still read the container's remaining output.
 */
function splice(client: net.Socket, up: net.Socket): void {
  client.pipe(up)
  up.pipe(client)
  client.on('error', () => up.destroy())
  // The client gone for good (not just half-closed): nobody can read the rest of a stream.
  client.on('close', () => { if (!up.destroyed) up.destroy() })
  up.on('close', () => { if (!client.writableEnded) client.end() })
  client.resume()
}

/** One request upstream; the whole answer (head and body) as bytes. */
export function exchange(ctx: ProxyContext, head: HttpHead, body: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const up = ctx.connectUpstream()
    const parts: Buffer[] = []
    let size = 0
    up.on('data', (d: Buffer) => {
      size += d.length
      if (size > MAX_BODY) up.destroy(new Error('engine answer too large'))
      else parts.push(d)
    })
    up.on('end', () => { up.end(); resolve(Buffer.concat(parts)) })
    up.on('error', (err) => reject(new ProxyReply(502, unreachable(ctx, err))))
    up.end(Buffer.concat([serializeHead(head), body]))
  })
}

/** A new engine connection kept for `conn` across calls. */
function keptUpstream(ctx: ProxyContext, conn: Conn): net.Socket {
  const up = ctx.connectUpstream()
  conn.up = up
  up.on('error', (err) => ctx.log.debug(`upstream connection: ${err.message}`))
  // The engine closed an idle kept connection: the next request opens a new one. (During a
  // call, forwardKeepAlive's own 'end' handler decides.)
  up.on('end', () => { if (up.listenerCount('end') === 1) up.destroy() })
  up.on('close', () => { if (conn.up === up) conn.up = undefined })
  return up
}

/**
 * A call with one small framed answer (keepAliveSafe) on a connection kept open both ways: the
 * request goes up as it came, the answer is read whole (up to MAX_BODY) and sent back, then
 * `next(rest)` reads the next request head from the client. `rest` is what the client sent after
 * the head (the start of a next request, as the call has no body).
 */
export function forwardKeepAlive(ctx: ProxyContext, conn: Conn, head: HttpHead, method: string, rest: Buffer, next: (rest: Buffer) => void, retry = true): void {
  const { client } = conn
  const reused = !!conn.up && !conn.up.destroyed
  const up = reused ? conn.up! : keptUpstream(ctx, conn)
  // A kept connection the engine closed just as we sent on it: these calls are idempotent, so
  // once more on a fresh connection, as HTTP clients do (RFC 9110 §9.2.2).
  const again = (): boolean => {
    if (!reused || !retry || buf.length) return false
    up.destroy()
    conn.up = undefined
    forwardKeepAlive(ctx, conn, head, method, rest, next, false)
    return true
  }
  let buf: Buffer = Buffer.alloc(0)
  const done = () => { up.off('data', onData); up.off('end', onEnd); up.off('error', onError) }
  const onData = (d: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d
    const f = responseFrame(buf, method)
    if (f.kind === 'more') {
      if (buf.length > MAX_BODY) { done(); up.destroy(); client.destroy() }
      return
    }
    done()
    if (f.kind === 'unframed' || buf.length > f.length) {
      // Not expected of these calls; hand over the bytes and let the stream end this connection.
      client.write(buf)
      splice(client, up)
      conn.up = undefined
      return
    }
    client.write(buf)
    if (f.close) { up.destroy(); conn.up = undefined; finish(client, Buffer.alloc(0)); return }
    next(rest)
  }
  const onEnd = () => {
    done()
    if (again()) return
    if (buf.length) { client.end(buf); return } // closed mid-answer: pass what came
    replyError(client, 502, 'weave proxy: the Docker engine closed the connection without answering')
  }
  const onError = (err: Error) => {
    done()
    if (again()) return
    if (!buf.length) replyError(client, 502, unreachable(ctx, err))
    else client.destroy()
  }
  up.on('data', onData)
  up.once('end', onEnd)
  up.once('error', onError)
  up.write(serializeHead(head))
}
