/**
 * Which Docker API calls the proxy intercepts (pure). Paths may carry any `/vX.Y` version
 * prefix or none; everything not listed here passes through untouched.
 */

export type Route =
  | { kind: 'create' }
  | { kind: 'start'; container: string; action: 'start' | 'restart' }
  | { kind: 'pass' }

/** `/v1.41/containers/json?all=1` → `/containers/json` */
export function stripVersion(target: string): string {
  const path = target.split('?')[0]
  const m = /^\/v\d+(?:\.\d+)?(\/.*)$/.exec(path)
  return m ? m[1] : path
}

export function routeRequest(method: string, target: string): Route {
  if (method !== 'POST') return { kind: 'pass' }
  const path = stripVersion(target)
  if (path === '/containers/create') return { kind: 'create' }
  const m = /^\/containers\/([^/]+)\/(start|restart)$/.exec(path)
  if (m) {
    let container: string
    try { container = decodeURIComponent(m[1]) } catch { return { kind: 'pass' } }
    return { kind: 'start', container, action: m[2] as 'start' | 'restart' }
  }
  return { kind: 'pass' }
}
