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
  request(method: string, path: string, body?: unknown): Promise<EngineResponse>
  /** Open a streaming GET; the caller reads and destroys the response. */
  stream(path: string): Promise<http.IncomingMessage>
  readonly endpoint: DockerEndpoint
}

export function describeEndpoint(ep: DockerEndpoint): string {
  return 'socketPath' in ep ? `unix://${ep.socketPath}` : `tcp://${ep.host}:${ep.port}`
}

/** Largest engine answer the proxy reads for itself (inspect bodies are a few KiB). */
const MAX_BODY = 16 * 1024 * 1024

export function createEngineClient(endpoint: DockerEndpoint): EngineClient {
  const base = (method: string, path: string, headers: Record<string, string>): http.RequestOptions => ({
    ...endpoint, method, path, headers: { Host: 'docker', ...headers }, agent: false,
  })
  return {
    endpoint,
    request(method, path, body) {
      return new Promise((resolve, reject) => {
        const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
        const headers: Record<string, string> = payload ? { 'Content-Type': 'application/json', 'Content-Length': String(payload.length) } : {}
        const req = http.request(base(method, path, headers), (res) => {
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
    },
    stream(path) {
      return new Promise((resolve, reject) => {
        const req = http.request(base('GET', path, {}), resolve)
        req.on('error', reject)
        req.end()
      })
    },
  }
}

/** The `message` of a Docker error body, else the raw text. */
export function engineMessage(r: EngineResponse): string {
  const m = (r.json as { message?: unknown } | undefined)?.message
  return typeof m === 'string' ? m : r.text.trim() || `HTTP ${r.status}`
}
