import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'

/**
 * A tiny HTTP router for the daemon's control API. Components (mesh, ipam, proxy, overlay)
 * register their routes here; the server edge (server.ts) only turns node's requests into
 * ApiRequest and ApiResult into a response, so handlers are testable without sockets.
 */

export interface ApiRequest {
  method: string
  /** Path without the query string, percent-decoded per segment. */
  path: string
  /** Values of `:name` (one segment) and `*name` (the rest of the path) in the route pattern. */
  params: Record<string, string>
  query: URLSearchParams
  body: Buffer
}

export interface ApiResult {
  status?: number
  /** Plain text body (status views); a trailing newline is added if missing. */
  text?: string
  /** JSON body (report, ipam answers). */
  json?: unknown
  headers?: Record<string, string>
}

export type ApiHandler = (req: ApiRequest) => ApiResult | Promise<ApiResult>

/**
 * Takes over a connection that asked to upgrade (a WebSocket, e.g. for /ui), after the server's
 * Host/Origin check (router/api/local-guard.ts) let it through. `ws`'s `handleUpgrade` fits.
 */
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void

/** An error a handler throws to answer with a given status and a one-line message. */
export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message)
  }
}

interface Route {
  method: string
  segments: string[]
  handler: ApiHandler
}

export class ApiRouter {
  private readonly routes: Route[] = []
  private readonly upgrades: Array<{ segments: string[]; handler: UpgradeHandler }> = []

  /** Register a handler for upgrade requests (WebSocket) on `pattern`; served on the API's sockets. */
  upgrade(pattern: string, handler: UpgradeHandler): void {
    const segments = splitPath(pattern)
    if (this.upgrades.some((u) => u.segments.join('/') === segments.join('/'))) throw new Error(`upgrade ${pattern} registered twice`)
    this.upgrades.push({ segments, handler })
  }

  /** The upgrade handler for `path`, if any. */
  matchUpgrade(path: string): UpgradeHandler | undefined {
    const segs = splitPath(path)
    return this.upgrades.find((u) => matchSegments(u.segments, segs))?.handler
  }

  /**
   * Register `handler` for `method` and `pattern`, e.g. `route('GET', '/status/peers', h)`,
   * `route('POST', '/ip/:id/*cidr', h)`. Registering the same method and pattern twice is a bug.
   */
  route(method: string, pattern: string, handler: ApiHandler): void {
    const segments = splitPath(pattern)
    const m = method.toUpperCase()
    if (this.routes.some((r) => r.method === m && r.segments.join('/') === segments.join('/'))) {
      throw new Error(`route ${m} ${pattern} registered twice`)
    }
    this.routes.push({ method: m, segments, handler })
  }

  /** Find the handler for a request; `undefined` params means no route, 'method' means path known, method not. */
  match(method: string, path: string): { handler: ApiHandler; params: Record<string, string> } | 'no-route' | 'bad-method' {
    const segs = splitPath(path)
    let pathKnown = false
    for (const r of this.routes) {
      const params = matchSegments(r.segments, segs)
      if (!params) continue
      pathKnown = true
      if (r.method === method.toUpperCase()) return { handler: r.handler, params }
    }
    return pathKnown ? 'bad-method' : 'no-route'
  }

  /** Handle a request end to end, turning thrown errors into answers. Never throws. */
  async handle(req: Omit<ApiRequest, 'params'>): Promise<ApiResult> {
    const found = this.match(req.method, req.path)
    if (found === 'no-route') return { status: 404, text: `no such API path: ${req.path}` }
    if (found === 'bad-method') return { status: 405, text: `method ${req.method} not allowed on ${req.path}` }
    try {
      return await found.handler({ ...req, params: found.params })
    } catch (err) {
      if (err instanceof ApiError) return { status: err.status, text: err.message }
      return { status: 500, text: `internal error: ${(err as Error).message}` }
    }
  }
}

function splitPath(p: string): string[] {
  return p.split('/').filter((s) => s.length > 0)
}

function matchSegments(pattern: string[], segs: string[]): Record<string, string> | undefined {
  const params: Record<string, string> = {}
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]
    if (p.startsWith('*')) {
      if (i >= segs.length) return undefined
      params[p.slice(1)] = segs.slice(i).map(safeDecode).join('/')
      return params
    }
    if (i >= segs.length) return undefined
    if (p.startsWith(':')) params[p.slice(1)] = safeDecode(segs[i])
    else if (p !== segs[i]) return undefined
  }
  return pattern.length === segs.length ? params : undefined
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}
