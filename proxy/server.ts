/**
 * The Docker API proxy: listens like a Docker engine and forwards to the real one.
 *
 * Small framed calls (routes.ts keepAliveSafe: `HEAD /_ping`, version, lists, inspects) keep the
 * client's connection and the proxy's engine connection open: the answer is read whole by its
 * framing and the next request head is read after it, so the docker client's ping + call costs
 * one connection each way. Any other request is the last on its connection: the proxy forwards
 * it on a fresh engine connection with `Connection: close` added, and from then on copies bytes
 * both ways, relaying half-closes. Nothing of such a body is parsed, so chunked streams (logs -f,
 * events, stats), 101 upgrades and Docker's classic raw-stream hijack all pass unchanged, in any
 * API version. Only create (rewritten) and start/restart (held until `ethwe` is attached) are read.
 */
import { STATUS_CODES } from 'node:http'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import { inspectWeaveContainer } from './container-info'
import { rewriteCreate, needsImageCommand, strSlice, type ImageCommand } from './create-rewrite'
import { createEngineClient, describeEndpoint, engineMessage } from './engine-client'
import { watchContainerEvents, type EventWatcher } from './events'
import {
  decodeChunked, findHeadEnd, responseFrame, splitResponse, getHeader, parseHead, parseRequestLine, serializeHead, setHeader, statusOf, withConnectionClose,
  type HttpHead,
} from './http-head'
import { decideAttach, networkModeSkipReason, weaveCidrFromEnv } from './qualify'
import { keepAliveSafe, routeRequest } from './routes'
import type { Proxy, ProxyConfig, ProxyDeps } from './types'
import { requestLatency } from '../router/metrics'
import { listenerPolicy, refuseForeign, type LocalPolicy } from '../router/api'

const MAX_HEAD = 64 * 1024 // Go's engine allows 1 MiB; Docker clients send a few hundred bytes
const MAX_BODY = 16 * 1024 * 1024 // create/start bodies are JSON of a few KiB
const DEFAULT_ATTACH_TIMEOUT_MS = 60_000

/** Thrown to answer the client with a Docker-style error instead of forwarding. */
class ProxyReply extends Error {
  constructor(readonly status: number, message: string) { super(message) }
}

export function createProxy(config: ProxyConfig, deps: ProxyDeps): Proxy {
  const log = deps.logger
  const latency = requestLatency('proxy')
  const engine = createEngineClient(config.docker, { timeoutMs: config.engineTimeoutMs })
  const sockets = new Set<net.Socket>()
  const servers: net.Server[] = []
  let watcher: EventWatcher | undefined
  let unixListening = false

  const track = (s: net.Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    return s
  }

  const upstreamTarget: net.NetConnectOpts = 'socketPath' in config.docker
    ? { path: config.docker.socketPath, allowHalfOpen: true }
    : { host: config.docker.host, port: config.docker.port, allowHalfOpen: true }
  const connectUpstream = () => track(net.connect(upstreamTarget).setNoDelay(true))

  // ---- client connections ----

  /** A client connection; `up` is its kept-alive engine connection between requests, if any. */
  interface Conn { client: net.Socket; up?: net.Socket }
  /** Client connections that came through the TCP listener (the only ones a web page can reach). */
  const fromTcp = new WeakSet<net.Socket>()

  /**
   * The TCP listener is reachable from web pages: Host must name it (no DNS rebinding) and no
   * request may carry an Origin (Docker clients never send one; browsers send it on every
   * cross-origin write). Writes cannot demand a non-simple Content-Type here: the docker CLI sends
   * `text/plain` on body-less POSTs such as start. `docker` and `api.moby.localhost` are the names
   * Docker clients send on local sockets.
   */
  let tcpPolicy: LocalPolicy | undefined // set once the TCP listener has its port (port 0 in tests)
  let refusals = 0

  function onConnection(client: net.Socket, viaTcp: boolean) {
    track(client)
    if (viaTcp) fromTcp.add(client)
    client.setNoDelay(true) // TCP clients: answers are small writes a client waits on
    client.on('error', (err) => log.debug(`client connection: ${err.message}`))
    const conn: Conn = { client }
    client.on('close', () => conn.up?.destroy())
    readHead(conn, Buffer.alloc(0))
  }

  /** Wait for the next request head on `conn` (`buf`: bytes already read), then dispatch it. */
  function readHead(conn: Conn, buf: Buffer) {
    const { client } = conn
    const tryDispatch = (): boolean => {
      const end = findHeadEnd(buf)
      if (end < 0) {
        if (buf.length > MAX_HEAD) { stop(); replyError(client, 431, 'request head too large') }
        return false
      }
      stop()
      client.pause()
      dispatch(conn, buf.subarray(0, end), buf.subarray(end)).catch((err: Error) => {
        if (err instanceof ProxyReply) replyError(client, err.status, err.message)
        else if ((err as NodeJS.ErrnoException).code === 'ENGINE_TIMEOUT') { log.warn(`proxy: ${err.message}`); replyError(client, 504, `weave proxy: ${err.message}`) }
        else { log.error(`proxy: ${err.stack ?? err.message}`); replyError(client, 500, `weave proxy: ${err.message}`) }
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

  async function dispatch(conn: Conn, rawHead: Buffer, rest: Buffer) {
    const { client } = conn
    const t0 = deps.clock.now()
    let head = parseHead(rawHead)
    const line = head && parseRequestLine(head.startLine)
    if (!head || !line) throw new ProxyReply(400, 'malformed HTTP request')
    const policy = fromTcp.has(client) ? tcpPolicy : undefined
    const why = policy && refuseForeign(line.method, { host: getHeader(head, 'Host'), origin: getHeader(head, 'Origin') }, policy)
    if (why) {
      if (refusals++ < 10 || refusals % 100 === 0) log.warn(`proxy: ${line.method} ${line.target}: ${why} (${refusals} refused so far)`)
      throw new ProxyReply(403, `weave proxy: ${why}`)
    }
    // Old clients sent the socket path as Host ("Host: /var/run/docker.sock"), which Go rejects.
    if ((getHeader(head, 'Host') ?? '').startsWith('/')) head = setHeader(head, 'Host', 'docker')
    const route = routeRequest(line.method, line.target)
    const intercepted = route.kind === 'create' || route.kind === 'start' || (route.kind === 'inspect' && config.rewriteInspect && deps.hooks.inspectAddress)
    if (!intercepted && line.version === 'HTTP/1.1' && keepAliveSafe(line.method, line.target) && !hasRequestBody(head) && !/close|upgrade/i.test(getHeader(head, 'Connection') ?? '')) {
      forwardKeepAlive(conn, head, line.method, rest)
      return
    }
    // From here on one request per connection (see withConnectionClose).
    conn.up?.destroy()
    conn.up = undefined
    head = setHeader(head, 'Connection', withConnectionClose(getHeader(head, 'Connection')))
    const done = intercepted ? latency.start(route.kind) : undefined // until the client has its answer (metrics)
    if (intercepted) client.once('close', () => { done?.('forwarded'); log.debug(`${line.method} ${line.target}: ${deps.clock.now() - t0} ms`) })
    try {
      if (route.kind === 'create') {
        const body = await readBody(client, head, rest)
        const query = new URLSearchParams(line.target.split('?')[1] ?? '')
        const out = await interceptCreate(body, query.get('name') ?? undefined)
        forward(client, withBody(head, out), out)
      } else if (route.kind === 'start') {
        const body = await readBody(client, head, rest)
        await interceptStart(client, withBody(head, body), body, route.container)
      } else if (route.kind === 'inspect' && config.rewriteInspect && deps.hooks.inspectAddress) {
        const answer = await exchange(withBody(head, rest), rest)
        finish(client, await rewriteInspectAnswer(answer) ?? answer)
      } else {
        forward(client, head, rest)
      }
    } catch (err) { done?.(err instanceof ProxyReply ? err.status : 500); throw err }
  }

  /** A new engine connection kept for `conn` across calls. */
  function keptUpstream(conn: Conn): net.Socket {
    const up = connectUpstream()
    conn.up = up
    up.on('error', (err) => log.debug(`upstream connection: ${err.message}`))
    // The engine closed an idle kept connection: the next request opens a new one. (During a
    // call, forwardKeepAlive's own 'end' handler decides.)
    up.on('end', () => { if (up.listenerCount('end') === 1) up.destroy() })
    up.on('close', () => { if (conn.up === up) conn.up = undefined })
    return up
  }

  /**
   * A call with one small framed answer (keepAliveSafe) on a connection kept open both ways: the
   * request goes up as it came, the answer is read whole (up to MAX_BODY) and sent back, then
   * the next request head is read from the client. `rest` is what the client sent after the
   * head (the start of a next request, as the call has no body).
   */
  function forwardKeepAlive(conn: Conn, head: HttpHead, method: string, rest: Buffer, retry = true) {
    const { client } = conn
    const reused = !!conn.up && !conn.up.destroyed
    const up = reused ? conn.up! : keptUpstream(conn)
    // A kept connection the engine closed just as we sent on it: these calls are idempotent, so
    // once more on a fresh connection, as HTTP clients do (RFC 9110 §9.2.2).
    const again = (): boolean => {
      if (!reused || !retry || buf.length) return false
      up.destroy()
      conn.up = undefined
      forwardKeepAlive(conn, head, method, rest, false)
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
      readHead(conn, rest)
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
      if (!buf.length) replyError(client, 502, `weave proxy: cannot reach the Docker engine at ${describeEndpoint(config.docker)}: ${err.message}`)
      else client.destroy()
    }
    up.on('data', onData)
    up.once('end', onEnd)
    up.once('error', onError)
    up.write(serializeHead(head))
  }

  // ---- passthrough ----

  /** Send head + bytes upstream, then splice the two connections together. */
  function forward(client: net.Socket, head: HttpHead, first: Buffer) {
    const up = connectUpstream()
    let answered = false
    up.once('data', () => { answered = true })
    up.on('error', (err) => {
      log.debug(`upstream connection: ${err.message}`)
      if (!answered) replyError(client, 502, `weave proxy: cannot reach the Docker engine at ${describeEndpoint(config.docker)}: ${err.message}`)
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
  function splice(client: net.Socket, up: net.Socket) {
    client.pipe(up)
    up.pipe(client)
    client.on('error', () => up.destroy())
    // The client gone for good (not just half-closed): nobody can read the rest of a stream.
    client.on('close', () => { if (!up.destroyed) up.destroy() })
    up.on('close', () => { if (!client.writableEnded) client.end() })
    client.resume()
  }

  // ---- intercepted calls ----

  async function interceptCreate(body: Buffer, name: string | undefined): Promise<Buffer> {
    let req: Record<string, unknown>
    try {
      const parsed: unknown = JSON.parse(body.toString('utf8'))
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return body
      req = parsed as Record<string, unknown>
    } catch {
      return body // not JSON: let the engine refuse it in its own words
    }
    const hostConfig = (req.HostConfig ?? {}) as { NetworkMode?: string }
    const reqEnv = Array.isArray(req.Env) ? req.Env as string[] : []
    const networkMode = hostConfig.NetworkMode
    const netSkip = networkModeSkipReason(networkMode)
    if (netSkip) return skipCreate(body, name, netSkip)
    const own = decideAttach({ env: reqEnv, networkMode, defaultIpalloc: config.defaultIpalloc })
    if (own.kind === 'invalid') throw new ProxyReply(400, `weave: ${own.error}`)
    // Without a WEAVE_CIDR of its own the container inherits the image's (Docker merges the
    // env), which must be judged now: a container given /w/w but left alone at start would
    // only time out.
    const inherits = weaveCidrFromEnv(reqEnv) === undefined
    if (!inherits && own.kind === 'skip') return skipCreate(body, name, own.reason)
    const tImage = deps.clock.now()
    const image = inherits || needsImageCommand(req) ? await imageConfig(req.Image) : undefined
    log.debug(`create: image config ${deps.clock.now() - tImage} ms`)
    const decision = inherits ? decideAttach({ env: [...(image?.Env ?? []), ...reqEnv], networkMode, defaultIpalloc: config.defaultIpalloc }) : own
    if (decision.kind === 'invalid') throw new ProxyReply(400, `weave: ${decision.error} (set in image ${String(req.Image)})`)
    if (decision.kind === 'skip') return skipCreate(body, name, decision.reason)
    const rw = rewriteCreate(req, config.weavewaitDir, image)
    if (!rw.ok) throw new ProxyReply(rw.status, rw.message)
    const final = deps.hooks.onCreate ? await deps.hooks.onCreate(rw.body, { name, items: decision.items }) : rw.body
    return Buffer.from(JSON.stringify(final))
  }

  function skipCreate(body: Buffer, name: string | undefined, reason: string): Buffer {
    log.debug(`create${name ? ` ${name}` : ''}: not a weave container (${reason})`)
    return body
  }

  async function imageConfig(image: unknown): Promise<ImageCommand & { Env: string[] }> {
    if (typeof image !== 'string' || !image) throw new ProxyReply(400, 'weave: the create request names no image')
    const r = await engine.request('GET', `/images/${encodeURI(image)}/json`)
    // A 404 in Docker's words makes the docker client pull the image and create again.
    if (r.status === 404) throw new ProxyReply(404, `No such image: ${image}`)
    if (r.status !== 200) throw new ProxyReply(r.status, engineMessage(r))
    const cfg = ((r.json as { Config?: Record<string, unknown> } | undefined)?.Config ?? {})
    return { Entrypoint: strSlice(cfg.Entrypoint), Cmd: strSlice(cfg.Cmd), Env: Array.isArray(cfg.Env) ? cfg.Env.filter((e): e is string => typeof e === 'string') : [] }
  }

  /** Forward a start/restart and hold Docker's answer until `ethwe` is attached. */
  async function interceptStart(client: net.Socket, head: HttpHead, body: Buffer, container: string) {
    const answer = await exchange(head, body)
    const status = statusOf(parseHead(answer.subarray(0, Math.max(0, findHeadEnd(answer)))) ?? { startLine: '', headers: [] })
    if (status === 204) {
      try {
        await attachStarted(container)
      } catch (err) {
        const msg = (err as Error).message
        log.warn(`start ${container}: attach failed, killing the container: ${msg}`)
        const k = await engine.request('POST', `/containers/${encodeURIComponent(container)}/kill`).catch((e: Error) => ({ status: 0, text: e.message, json: undefined }))
        const killed = k.status === 204 || k.status === 409 // 409: it already stopped
        throw new ProxyReply(500, `weave: could not attach ethwe to container ${container}: ${msg}; ${killed ? 'the container was stopped' : `stopping it failed too: ${engineMessage(k)}`}`)
      }
    }
    finish(client, answer)
  }

  /** `--rewrite-inspect`: the weave address in NetworkSettings; undefined leaves the answer as it was. */
  async function rewriteInspectAnswer(answer: Buffer): Promise<Buffer | undefined> {
    const split = splitResponse(answer)
    if (!split || statusOf(split.head) !== 200) return undefined
    let json: { Id?: unknown; NetworkSettings?: Record<string, unknown> }
    try { json = JSON.parse(split.body.toString('utf8')) as typeof json } catch { return undefined }
    if (typeof json.Id !== 'string') return undefined
    const addr = await deps.hooks.inspectAddress!(json.Id)
    if (!addr) return undefined
    json.NetworkSettings = { ...json.NetworkSettings, IPAddress: addr.ip, IPPrefixLen: addr.prefixLen, ...(addr.mac ? { MacAddress: addr.mac } : {}) }
    const body = Buffer.from(JSON.stringify(json) + '\n')
    return Buffer.concat([serializeHead(withBody(split.head, body)), body])
  }

  /** One request upstream; the whole answer (head and body) as bytes. */
  function exchange(head: HttpHead, body: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const up = connectUpstream()
      const parts: Buffer[] = []
      let size = 0
      up.on('data', (d: Buffer) => {
        size += d.length
        if (size > MAX_BODY) up.destroy(new Error('engine answer too large'))
        else parts.push(d)
      })
      up.on('end', () => { up.end(); resolve(Buffer.concat(parts)) })
      up.on('error', (err) => reject(new ProxyReply(502, `weave proxy: cannot reach the Docker engine at ${describeEndpoint(config.docker)}: ${err.message}`)))
      up.end(Buffer.concat([serializeHead(head), body]))
    })
  }

  async function attachStarted(container: string) {
    const onStarted = deps.hooks.onStarted
    if (!onStarted) return
    const t0 = deps.clock.now()
    const started = await inspectWeaveContainer(engine, container, config.defaultIpalloc)
    const t1 = deps.clock.now()
    if (started) await withTimeout(onStarted(started), config.attachTimeoutMs ?? DEFAULT_ATTACH_TIMEOUT_MS)
    log.debug(`start ${container.slice(0, 12)}: inspect ${t1 - t0} ms, attach ${deps.clock.now() - t1} ms`)
  }

  function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
    return new Promise((resolve, reject) => {
      const cancel = deps.clock.setTimer(ms, () => reject(new Error(`attaching took longer than ${ms} ms`)))
      p.then((v) => { cancel(); resolve(v) }, (e: Error) => { cancel(); reject(e) })
    })
  }

  // ---- bodies and replies ----

  /** Read a request body framed by Content-Length or chunked encoding; `rest` is what came with the head. */
  function readBody(client: net.Socket, head: HttpHead, rest: Buffer): Promise<Buffer> {
    const chunked = /chunked/i.test(getHeader(head, 'Transfer-Encoding') ?? '')
    const length = Number(getHeader(head, 'Content-Length') ?? 0)
    if (!chunked && !(length > 0)) return Promise.resolve(Buffer.alloc(0))
    if (!chunked && length > MAX_BODY) return Promise.reject(new ProxyReply(413, 'request body too large'))
    return new Promise((resolve, reject) => {
      let buf: Buffer = rest
      const check = (): boolean => {
        if (chunked) {
          const r = decodeChunked(buf)
          if (r.kind === 'error') { reject(new ProxyReply(400, `bad chunked body: ${r.reason}`)); return true }
          if (r.kind === 'done') { resolve(r.body); return true }
        } else if (buf.length >= length) { resolve(buf.subarray(0, length)); return true }
        if (buf.length > MAX_BODY + 1024) { reject(new ProxyReply(413, 'request body too large')); return true }
        return false
      }
      if (check()) return
      const onData = (d: Buffer) => {
        buf = Buffer.concat([buf, d])
        if (check()) { client.off('data', onData); client.off('end', onEnd); client.pause() }
      }
      const onEnd = () => reject(new ProxyReply(400, 'request body ended early'))
      client.on('data', onData)
      client.once('end', onEnd)
      client.resume()
    })
  }

  function replyError(client: net.Socket, status: number, message: string) {
    if (client.destroyed || client.writableEnded) return
    const body = Buffer.from(JSON.stringify({ message }) + '\n')
    const head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`
    finish(client, Buffer.concat([Buffer.from(head, 'latin1'), body]))
  }

  /** Send a whole answer and close; drain what the client still sends so its FIN frees the socket. */
  function finish(client: net.Socket, answer: Buffer) {
    client.end(answer)
    client.resume()
  }

  // ---- listeners ----

  function listen(server: net.Server, how: { path: string } | { host: string; port: number }): Promise<void> {
    return new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(how, () => { server.off('error', reject); resolve() })
    })
  }

  function removeStaleSocket(path: string) {
    let st: fs.Stats
    try { st = fs.lstatSync(path) } catch { return }
    if (!st.isSocket()) throw new Error(`${path} exists and is not a socket; refusing to replace it`)
    fs.unlinkSync(path)
  }

  /** Give our socket the Docker socket's owner and mode, so the same users may use it. */
  function copyOwnerAndMode() {
    const from = config.socketModeFrom ?? ('socketPath' in config.docker ? config.docker.socketPath : undefined)
    if (!from) return
    try {
      const st = fs.statSync(from)
      fs.chownSync(config.socketPath, st.uid, st.gid)
      fs.chmodSync(config.socketPath, st.mode & 0o777)
    } catch (err) {
      log.warn(`cannot copy owner and mode of ${from} to ${config.socketPath}: ${(err as Error).message}`)
    }
  }

  const newServer = (viaTcp = false) => {
    const s = net.createServer({ allowHalfOpen: true }, (c) => onConnection(c, viaTcp))
    servers.push(s)
    return s
  }

  return {
    async start() {
      removeStaleSocket(config.socketPath)
      await listen(newServer(), { path: config.socketPath })
      unixListening = true
      copyOwnerAndMode()
      if (config.tcp) {
        const s = newServer(true)
        await listen(s, config.tcp)
        tcpPolicy = listenerPolicy(config.tcp.host, (s.address() as net.AddressInfo).port,
          { writesNeedNonSimpleType: false, refuseAnyOrigin: true, extraHosts: ['docker', 'api.moby.localhost', os.hostname()] })
      }
      if (deps.hooks.onEvent) watcher = watchContainerEvents(engine, deps.hooks.onEvent, { clock: deps.clock, logger: log })
      log.info(`Docker API proxy on ${this.addresses().join(', ')} → ${describeEndpoint(config.docker)}`)
    },
    async stop() {
      watcher?.stop()
      const closed = servers.map((s) => new Promise<void>((resolve) => s.listening ? s.close(() => resolve()) : resolve()))
      for (const s of sockets) s.destroy()
      await Promise.all(closed)
      servers.length = 0
      if (unixListening) { try { fs.unlinkSync(config.socketPath) } catch { /* already gone */ } unixListening = false }
    },
    openConnections: () => sockets.size,
    addresses() {
      return servers.filter((s) => s.listening).map((s) => {
        const a = s.address()
        return typeof a === 'string' ? `unix://${a}` : a ? `tcp://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}` : ''
      })
    },
  }
}

/** Whether a request head announces a body (Content-Length above 0, or chunked). */
function hasRequestBody(head: HttpHead): boolean {
  return /chunked/i.test(getHeader(head, 'Transfer-Encoding') ?? '') || Number(getHeader(head, 'Content-Length') ?? 0) > 0
}

/** The head for a body we re-framed: exact length, no chunking. */
function withBody(head: HttpHead, body: Buffer): HttpHead {
  return setHeader(setHeader(head, 'Transfer-Encoding', undefined), 'Content-Length', String(body.length))
}
