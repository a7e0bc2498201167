/**
 * Docker's plugin protocol (libnetwork's remote driver and remote IPAM docs): every call is
 * `POST /<Interface>.<Method>` with a JSON body, answered with JSON; a failure is `{"Err": "…"}`.
 * Pure: a route table from path to handler, and the request checks every handler shares. The
 * socket side (server.ts) only moves bytes.
 */

/** The interfaces Plugin.Activate names: exactly what the routes below serve. */
export const IMPLEMENTS = ['NetworkDriver', 'IpamDriver'] as const

/** Docker's media type for plugin answers. */
export const PLUGIN_CONTENT_TYPE = 'application/vnd.docker.plugins.v1.2+json'

/** A refusal with the HTTP status Docker is given and the text it shows the user. */
export class PluginError extends Error {
  constructor(readonly status: number, message: string) {
    super(message)
    this.name = 'PluginError'
  }
}

export type Json = Record<string, unknown>
export type Handler = (body: Json) => Promise<Json> | Json

/** `Interface.Method` → handler. */
export type Routes = ReadonlyMap<string, Handler>

export interface PluginAnswer {
  status: number
  body: Json
}

/**
 * Answer one call: `path` is the request path, `raw` its body. Unknown paths 404, malformed JSON
 * 400, a handler's PluginError its own status, anything else 500; every error is `{"Err"}`.
 */
export async function answer(routes: Routes, method: string, path: string, raw: string): Promise<PluginAnswer> {
  const name = path.replace(/^\//, '').split('?')[0]
  const handler = routes.get(name)
  if (!handler) return { status: 404, body: { Err: `no such plugin call: ${name || '/'}` } }
  if (method !== 'POST') return { status: 405, body: { Err: `${name} takes POST, not ${method}` } }
  let body: Json = {}
  if (raw.trim()) {
    let v: unknown
    try {
      v = JSON.parse(raw)
    } catch (err) {
      return { status: 400, body: { Err: `${name}: the body is not JSON (${(err as Error).message})` } }
    }
    // Docker sends `null` for calls without arguments (Plugin.Activate, GetCapabilities).
    if (v !== null && (typeof v !== 'object' || Array.isArray(v))) return { status: 400, body: { Err: `${name}: the body must be a JSON object` } }
    body = (v ?? {}) as Json
  }
  try {
    return { status: 200, body: await handler(body) }
  } catch (err) {
    const status = err instanceof PluginError ? err.status : 500
    return { status, body: { Err: (err as Error).message } }
  }
}

/** A required string field, else a 400 naming it. */
export function str(body: Json, field: string, call: string): string {
  const v = body[field]
  if (typeof v !== 'string' || !v) throw new PluginError(400, `${call}: ${field} must be a non-empty string`)
  return v
}

/** An optional string field ('' and absent are the same to Docker). */
export function optStr(body: Json, field: string, call: string): string | undefined {
  const v = body[field]
  if (v === undefined || v === null || v === '') return undefined
  if (typeof v !== 'string') throw new PluginError(400, `${call}: ${field} must be a string`)
  return v
}

/** An optional object field of strings (Options maps). */
export function optMap(body: Json, field: string): Record<string, unknown> {
  const v = body[field]
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {}
}
