/**
 * What a web page must not be able to do to a service listening on this host (the control API on
 * 127.0.0.1:6784, the Docker proxy's TCP listener): a browser reaches loopback from any page it
 * opens, so each request is checked before any handler sees it.
 *
 * - Host: must name the listener itself (`127.0.0.1:PORT`, `localhost:PORT`, `[::1]:PORT`, the
 *   configured address) or be absent (HTTP/1.0 clients). A DNS-rebinding page sends its own name.
 * - Origin: absent (non-browser clients, same-origin GETs) or the listener's own origin
 *   (`http://` + an allowed Host, e.g. a page the API serves itself). Browsers send Origin on every
 *   cross-origin request, `no-cors` fetches and form posts too, and on WebSocket handshakes.
 * - Writes (every method but GET and HEAD) need a Content-Type a page cannot send without a CORS
 *   preflight — anything but the CORS-safelisted text/plain, application/x-www-form-urlencoded
 *   and multipart/form-data, and not absent (a body-less `fetch(url, {method:'POST'})` has none).
 *   The preflight itself gets no CORS headers back, so the browser never sends the real request.
 *
 * Pure: the server edges (router/api/server.ts, proxy/server.ts) hand it the request's method and
 * headers and answer 403 with the reason when it returns one.
 */
import * as net from 'node:net'

export interface LocalPolicy {
  /** Host header values accepted, lower case, `host:port` (and `host` alone where the port is 80). */
  readonly hosts: ReadonlySet<string>
  /** Listening on a wildcard address: any IP literal with this port is the listener too. */
  readonly anyIpPort?: number
  /** Refuse writes without a non-simple Content-Type (the API; not the Docker proxy, see there). */
  readonly writesNeedNonSimpleType: boolean
  /** Refuse any request carrying an Origin header at all (no client of this service is a page). */
  readonly refuseAnyOrigin?: boolean
}

/** The header values the guard looks at (node's IncomingMessage headers fit). */
export interface GuardHeaders {
  host?: string
  origin?: string
  'content-type'?: string
}

const LOOPBACK_NAMES = ['127.0.0.1', 'localhost', '[::1]']
const WILDCARDS = new Set(['0.0.0.0', '::', '[::]', ''])
/** Fetch's CORS-safelisted request content types: a page sends these cross-origin without asking. */
const SIMPLE_TYPES = new Set(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data'])

/** The policy for a listener on `host:port`: its own address plus the loopback names. */
export function listenerPolicy(host: string, port: number, opts: { writesNeedNonSimpleType: boolean; refuseAnyOrigin?: boolean; extraHosts?: string[] }): LocalPolicy {
  const names = new Set(LOOPBACK_NAMES)
  const h = host.toLowerCase()
  const wildcard = WILDCARDS.has(h)
  if (!wildcard) names.add(net.isIPv6(h) ? `[${h}]` : h)
  for (const e of opts.extraHosts ?? []) names.add(e.toLowerCase())
  const hosts = new Set<string>()
  for (const n of names) {
    hosts.add(`${n}:${port}`)
    if (port === 80) hosts.add(n)
  }
  return { hosts, anyIpPort: wildcard ? port : undefined, writesNeedNonSimpleType: opts.writesNeedNonSimpleType, refuseAnyOrigin: opts.refuseAnyOrigin }
}

/** Why the request must be refused, or undefined when it may go on. */
export function refuseForeign(method: string, headers: GuardHeaders, policy: LocalPolicy): string | undefined {
  const host = headers.host?.trim().toLowerCase()
  if (host !== undefined && !hostAllowed(host, policy)) {
    return `refused: Host ${JSON.stringify(headers.host)} is not this listener's address (a web page's request?)`
  }
  const origin = headers.origin?.trim().toLowerCase()
  if (origin !== undefined) {
    if (policy.refuseAnyOrigin) return `refused: a request from a web page (Origin ${JSON.stringify(headers.origin)})`
    if (!origin.startsWith('http://') || !hostAllowed(origin.slice('http://'.length), policy)) {
      return `refused: foreign Origin ${JSON.stringify(headers.origin)}`
    }
  }
  const m = method.toUpperCase()
  if (policy.writesNeedNonSimpleType && m !== 'GET' && m !== 'HEAD') {
    const type = (headers['content-type'] ?? '').split(';')[0].trim().toLowerCase()
    if (type === '' || SIMPLE_TYPES.has(type)) {
      return `refused: ${m} needs Content-Type: application/json (got ${type ? JSON.stringify(type) : 'none'}; ` +
        'a web page cannot send that without a CORS preflight)'
    }
  }
  return undefined
}

function hostAllowed(host: string, p: LocalPolicy): boolean {
  if (p.hosts.has(host)) return true
  if (p.anyIpPort === undefined) return false
  const m = /^(?:\[([0-9a-f:.]+)\]|([0-9.]+))(?::(\d+))?$/.exec(host)
  if (!m) return false
  const ip = m[1] ?? m[2]
  const port = m[3] === undefined ? 80 : Number(m[3])
  return net.isIP(ip) !== 0 && port === p.anyIpPort
}
