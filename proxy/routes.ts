/**
 * Which Docker API calls the proxy intercepts (pure). Paths may carry any `/vX.Y` version
 * prefix or none; everything not listed here passes through untouched.
 */

export type Route =
  | { kind: 'create' }
  | { kind: 'start'; container: string; action: 'start' | 'restart' }
  | { kind: 'inspect'; container: string }
  | { kind: 'pass' }

/** `/v1.41/containers/json?all=1` → `/containers/json` */
export function stripVersion(target: string): string {
  const path = target.split('?')[0]
  const m = /^\/v\d+(?:\.\d+)?(\/.*)$/.exec(path)
  return m ? m[1] : path
}

export function routeRequest(method: string, target: string): Route {
  const path = stripVersion(target)
  if (method === 'GET') {
    const i = /^\/containers\/([^/]+)\/json$/.exec(path)
    const container = i && safeDecode(i[1])
    return container ? { kind: 'inspect', container } : { kind: 'pass' }
  }
  if (method !== 'POST') return { kind: 'pass' }
  if (path === '/containers/create') return { kind: 'create' }
  const m = /^\/containers\/([^/]+)\/(start|restart)$/.exec(path)
  if (m) {
    const container = safeDecode(m[1])
    return container ? { kind: 'start', container, action: m[2] as 'start' | 'restart' } : { kind: 'pass' }
  }
  return { kind: 'pass' }
}

function safeDecode(s: string): string | undefined {
  try { return decodeURIComponent(s) } catch { return undefined }
}

/**
 * Calls whose answer is one small framed response (never a stream, upgrade or hijack), so the
 * proxy may keep the client's connection (and its own to the engine) open after them. The docker
 * client sends `HEAD /_ping` and then its call on one connection: closing after each would cost
 * it a reconnect per call. Everything else still gets `Connection: close`, so no request can
 * follow on a connection the proxy no longer reads.
 */
const KEEP_ALIVE_PATHS = [
  /^\/_ping$/, /^\/version$/, /^\/info$/, /^\/system\/df$/,
  /^\/containers\/json$/, /^\/containers\/[^/]+\/json$/, /^\/containers\/[^/]+\/top$/,
  /^\/images\/json$/, /^\/images\/.+\/json$/, /^\/images\/.+\/history$/,
  /^\/networks$/, /^\/networks\/[^/]+$/, /^\/volumes$/, /^\/volumes\/[^/]+$/, /^\/exec\/[^/]+\/json$/,
]

export function keepAliveSafe(method: string, target: string): boolean {
  if (method !== 'GET' && method !== 'HEAD') return false
  const path = stripVersion(target)
  return KEEP_ALIVE_PATHS.some((re) => re.test(path))
}
