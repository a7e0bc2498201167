/**
 * IPAM's HTTP API, transport-agnostic: (method, path, query) in, {status, text|json} out. Routes
 * and answers follow Weave's (reference §1), except that a cancelled or failed request is always
 * an error status with a message (Weave answered 200 `cancelled`).
 *
 *   POST   /ip/{id}                  allocate in the default subnet -> `a.b.c.d/len`
 *   POST   /ip/{id}/{net}/{len}      allocate in that subnet
 *   GET    /ip/{id}[/{net}/{len}]    look up: space-separated CIDRs (empty when none)
 *   PUT    /ip/{id}/{ip}[/{len}]     claim -> 204 (`?noErrorOnUnknown=true`: 204 at once if no ring yet)
 *   DELETE /ip/{id}                  release all of id -> 204, else 400
 *   DELETE /ip/{id}/{ip}             release one -> 204, else 400
 *   GET    /ip                       JSON {owned: [{containerid, addrs}]}
 *   GET    /ring                     wait for the ring (weave prime) -> 200 `ready`
 *   DELETE /peer/{name|nick}         rmpeer -> `N IPs taken over from X` (`?also=P,Q`: other dead
 *                                    peers removed in the same command, left out of the vote)
 *   DELETE /peer                     reset: hand our ranges to a live peer, confirmed
 *   GET    /ipinfo/defaultsubnet     the default subnet
 * `?check-alive=true` is accepted; liveness of the container is the proxy's business here.
 */
import { type Cidr, blockSize, formatCidr, parseCidr, parseIp } from './address'
import type { Allocator } from './allocator'
import { IpamError } from './errors'

export interface IpamRequest {
  method: string
  path: string
  query: URLSearchParams
}

export interface IpamResponse {
  status: number
  text?: string
  json?: unknown
}

/** Every path prefix this module answers, for registering with a router. */
export const IPAM_ROUTES: Array<[method: string, pattern: string]> = [
  ['GET', '/ip'],
  ...(['GET', 'POST', 'PUT', 'DELETE'] as const).flatMap((m) => [[m, '/ip/:id'], [m, '/ip/:id/*rest']] as Array<[string, string]>),
  ['GET', '/ring'],
  ['DELETE', '/peer'],
  ['DELETE', '/peer/:name'],
  ['GET', '/ipinfo/defaultsubnet'],
]

const ok = (text: string): IpamResponse => ({ status: 200, text })
const noContent: IpamResponse = { status: 204 }
const bad = (status: number, text: string): IpamResponse => ({ status, text })

export async function handleIpamHttp(a: Allocator, req: IpamRequest): Promise<IpamResponse> {
  try {
    return await route(a, req)
  } catch (err) {
    if (err instanceof IpamError) return bad(err.status, err.message)
    return bad(500, `internal error: ${(err as Error).message}`)
  }
}

async function route(a: Allocator, req: IpamRequest): Promise<IpamResponse> {
  const segs = req.path.split('/').filter(Boolean).map(decode)
  const m = req.method.toUpperCase()
  const [top, ...rest] = segs
  if (top === 'ring' && rest.length === 0 && m === 'GET') {
    await a.prime()
    return ok(a.statusText())
  }
  if (top === 'ipinfo' && rest[0] === 'defaultsubnet' && m === 'GET') return ok(formatCidr(a.config.defaultSubnet))
  if (top === 'peer' && m === 'DELETE') {
    if (rest.length === 0) {
      const heir = await a.reset()
      return ok(heir ? `address ranges handed over to ${a.describe(heir)}` : 'no address ranges to hand over')
    }
    const also = (req.query.get('also') ?? '').split(',').filter(Boolean)
    const r = await a.removePeer(rest.join('/'), also)
    return ok(`${r.addresses} IPs taken over from ${a.describe(r.peer)}`)
  }
  if (top !== 'ip') return bad(404, `no such IPAM path: ${req.path}`)
  if (rest.length === 0) {
    return m === 'GET' ? { status: 200, json: { owned: a.owned() } } : bad(405, `method ${m} not allowed on ${req.path}`)
  }
  const [id, ...args] = rest
  if (!id) return bad(400, 'empty container ID')
  switch (m) {
    case 'POST': {
      const subnet = args.length ? parseSubnet(args) : undefined
      const c = await a.allocate(id, subnet)
      return ok(formatCidr(c))
    }
    case 'GET': {
      const subnet = args.length ? parseSubnet(args) : undefined
      return ok(a.lookup(id, subnet).map(formatCidr).join(' '))
    }
    case 'PUT': {
      const c = parseClaim(args, a.config.universe.prefix)
      const claim = a.claim(id, c)
      if (req.query.get('noErrorOnUnknown') === 'true' && a.ring.isEmpty()) {
        claim.catch(() => {})
        return noContent
      }
      await claim
      return noContent
    }
    case 'DELETE': {
      let addr: number | undefined
      if (args.length) {
        addr = parseIp(args[0])
        if (addr === undefined) return bad(400, `bad address ${args[0]}`)
      }
      const done = await a.release(id, addr)
      return done ? noContent : bad(400, addr === undefined ? `no addresses for ${id}` : `${args[0]} is not allocated to ${id}`)
    }
    default:
      return bad(405, `method ${m} not allowed on ${req.path}`)
  }
}

function parseSubnet(args: string[]): Cidr {
  const c = args.length === 2 ? parseCidr(`${args[0]}/${args[1]}`) : undefined
  if (!c) throw new IpamError(400, `bad subnet ${args.join('/')}: want NET/LEN`)
  if (blockSize(c.prefix) < 4) throw new IpamError(400, `subnet ${formatCidr(c)} is too small: at least /30`)
  return c
}

function parseClaim(args: string[], defaultPrefix: number): Cidr {
  const text = args.length === 1 ? `${args[0]}/${defaultPrefix}` : args.length === 2 ? `${args[0]}/${args[1]}` : ''
  const c = parseCidr(text)
  if (!c) throw new IpamError(400, `bad address ${args.join('/')}: want IP or IP/LEN`)
  return c
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}
