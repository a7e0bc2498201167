/** Parsing the attach API's JSON bodies: bad input is a 400 saying what was wrong. */
import { ApiError } from './api'
import { parseWeaveCidr, type CidrItem } from '../proxy'
import { formatCidr, parseCidr } from '../ipam'

/** The body as a JSON object (an empty body is `{}`). */
export function jsonBody(req: { body: Buffer }): Record<string, unknown> {
  if (!req.body.length) return {}
  try {
    const b = JSON.parse(req.body.toString('utf8')) as unknown
    if (typeof b === 'object' && b !== null && !Array.isArray(b)) return b as Record<string, unknown>
  } catch { /* fall through */ }
  throw new ApiError(400, 'expected a JSON object')
}

/** Addresses in WEAVE_CIDR's grammar (net:default, net:CIDR, ip:CIDR, bare CIDR); none = []. */
export function cidrItems(addresses: unknown): CidrItem[] {
  if (addresses === undefined) return []
  if (!Array.isArray(addresses) || addresses.some((a) => typeof a !== 'string')) throw new ApiError(400, 'addresses must be a list of strings')
  const r = parseWeaveCidr((addresses as string[]).join(' '))
  if (!r.ok) throw new ApiError(400, r.error.replace('WEAVE_CIDR entry', 'address'))
  if (r.none) throw new ApiError(400, '"none" makes no sense here')
  return r.items
}

/** Plain CIDRs for detach/hide (`ip:` prefix allowed); undefined when none are given. */
export function plainCidrs(addresses: unknown): string[] | undefined {
  if (addresses === undefined || (Array.isArray(addresses) && addresses.length === 0)) return undefined
  if (!Array.isArray(addresses)) throw new ApiError(400, 'addresses must be a list of strings')
  return addresses.map((a) => {
    const text = String(a).replace(/^ip:/, '')
    const c = parseCidr(text)
    if (!c) throw new ApiError(400, `"${a}" is not an address in CIDR form`)
    return formatCidr(c)
  })
}

/** An ApiError passes as it is; anything else is a 500 with its message. */
export const fail = (err: unknown): never => {
  if (err instanceof ApiError) throw err
  throw new ApiError(500, (err as Error).message)
}
