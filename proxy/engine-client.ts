/**
 * The proxy's own calls to the Docker engine (image and container inspect, kill, events).
 * Paths carry no version prefix, so the engine answers in its own current version: nothing is
 * pinned to an old API (Weave pinned 1.18, which Docker 25+ refuses).
 */
import * as http from 'node:http'

/** Where the engine listens: its unix socket, or TCP (no TLS). */
export type DockerEndpoint = { socketPath: string } | { host: string; port: number }

export interface EngineResponse {
  status: number
  /** Parsed JSON body, or undefined when the body is empty or not JSON. */
  json: unknown
  text: string
}

export interface EngineClient {
  /** One call, answered in full within the client's timeout or rejected with code ENGINE_TIMEOUT. */
  request(method: string, path: string, body?: unknown): Promise<EngineResponse>
  /** Open a streaming GET (its headers within the timeout); the caller reads and destroys the response. */
  stream(path: string): Promise<http.IncomingMessage>
  readonly endpoint: DockerEndpoint
}

export interface EngineClientOptions {
  /** A hung dockerd must not hang the daemon: every call ends by then. */
  timeoutMs?: number
}

/** Inspects, kills and lists answer in milliseconds; 30 s is a dockerd that is stuck. */
export const DEFAULT_ENGINE_TIMEOUT_MS = 30_000

export function describeEndpoint(ep: DockerEndpoint): string {
  return 'socketPath' in ep ? `unix://${ep.socketPath}` : `tcp://${ep.host}:${ep.port}`
}

/** Largest engine answer the proxy reads for itself (inspect bodies are a few KiB). */
const MAX_BODY = 16 * 1024 * 1024

export function createEngineClient(endpoint: DockerEndpoint, opts: EngineClientOptions = {}): EngineClient {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_ENGINE_TIMEOUT_MS
  const base = (method: string, path: string, headers: Record<string, string>): http.RequestOptions => ({
    ...endpoint, method, path, headers: { Host: 'docker', ...headers }, agent: false,
  })
  const timeoutError = (what: string) => Object.assign(
    new Error(`the Docker engine at ${describeEndpoint(endpoint)} did not answer ${what} within ${timeoutMs / 1000} s`), { code: 'ENGINE_TIMEOUT' })
  /** Fails the call with `err` and destroys `req` unless `until` settles first (a real timer: this is the edge). */
  const deadline = (req: http.ClientRequest, err: Error, fail: (e: Error) => void, until: Promise<unknown>) => {
    const t = setTimeout(() => { fail(err); req.destroy(err) }, timeoutMs)
    until.then(() => clearTimeout(t), () => clearTimeout(t))
  }
  return {
    endpoint,
    request(method, path, body) {
      let req!: http.ClientRequest
      let fail!: (e: Error) => void
      const done = new Promise<EngineResponse>((resolve, reject) => {
        fail = reject
        const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
        const headers: Record<string, string> = payload ? { 'Content-Type': 'application/json', 'Content-Length': String(payload.length) } : {}
        req = http.request(base(method, path, headers), (res) => {
          const parts: Buffer[] = []
          let size = 0
          res.on('data', (d: Buffer) => {
            size += d.length
            if (size > MAX_BODY) { req.destroy(new Error(`engine answer to ${method} ${path} is larger than ${MAX_BODY} bytes`)); return }
            parts.push(d)
          })
          res.on('end', () => {
            const text = Buffer.concat(parts).toString('utf8')
            let json: unknown
            try { json = text ? JSON.parse(text) : undefined } catch { json = undefined }
            resolve({ status: res.statusCode ?? 0, json, text })
          })
          res.on('error', reject)
        })
        req.on('error', (err) => reject(new Error(`cannot reach the Docker engine at ${describeEndpoint(endpoint)}: ${err.message}`, { cause: err })))
        req.end(payload)
      })
      deadline(req, timeoutError(`${method} ${path}`), fail, done)
      return done
    },
    stream(path) {
      let req!: http.ClientRequest
      let fail!: (e: Error) => void
      const headers = new Promise<http.IncomingMessage>((resolve, reject) => {
        fail = reject
        req = http.request(base('GET', path, {}), resolve)
        req.on('error', reject)
        req.end()
      })
      deadline(req, timeoutError(`GET ${path} (its headers)`), fail, headers)
      return headers
    },
  }
}

/** The `message` of a Docker error body, else the raw text. */
export function engineMessage(r: EngineResponse): string {
  const m = (r.json as { message?: unknown } | undefined)?.message
  return typeof m === 'string' ? m : r.text.trim() || `HTTP ${r.status}`
}
