/**
 * WEAVE_CIDR: which weave addresses a container asks for (pure; no I/O).
 *
 * Grammar (tokens separated by whitespace):
 *   net:default    allocate an address in the default subnet
 *   net:A.B.C.D/N  allocate an address in that subnet (host bits are cleared: net:10.32.2.7/24 = 10.32.2.0/24)
 *   ip:A.B.C.D/N   claim exactly that address, with that prefix (as Weave, also the subnet's network
 *                  address: `ip:10.2.3.0/24` claims 10.2.3.0, it does not allocate in the subnet)
 *   A.B.C.D/N      same as ip:
 *   none           leave the container alone (only on its own)
 * An empty value means net:default (Weave's `WEAVE_CIDR=""` forces default allocation).
 * The input comes from users, so a bad value is a result, never an exception.
 */
import { parseCidr } from '../ipv4'

/** One address request. `cidr` is canonical `a.b.c.d/n` text (for `net`, the network address). */
export type CidrItem =
  | { kind: 'net-default' }
  | { kind: 'net'; cidr: string }
  | { kind: 'ip'; cidr: string }

export type WeaveCidrResult =
  | { ok: true; none: true; items: [] }
  | { ok: true; none: false; items: CidrItem[] }
  | { ok: false; token: string; error: string }

/** The shared strict IPv4 text (ipv4/): no leading zeros, so "010" is not silently octal or decimal. */
const parseCidrText = parseCidr

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0
}

function formatCidr(ip: number, prefix: number): string {
  return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}/${prefix}`
}

function bad(token: string, why: string): WeaveCidrResult {
  return { ok: false, token, error: `invalid WEAVE_CIDR entry ${JSON.stringify(token)}: ${why}` }
}

/**
 * Parse one `ip:` / bare token's CIDR. Weave claims whatever address it is given (its `weave
 * attach 10.2.3.0/24` puts 10.2.3.0/24 on ethwe, which Linux accepts), so the network address is
 * taken as a claim too; the broadcast address is refused (a host there cannot be reached).
 */
function parseIpToken(token: string, text: string): CidrItem | WeaveCidrResult {
  const c = parseCidrText(text)
  if (!c) return bad(token, 'expected an IPv4 address with a prefix length, like ip:10.32.2.50/24')
  // /31 and /32 have no broadcast address to avoid (RFC 3021).
  if (c.prefix < 31) {
    const host = c.ip & ~maskOf(c.prefix)
    if ((host >>> 0) === (~maskOf(c.prefix) >>> 0)) return bad(token, 'that is the broadcast address of its subnet')
  }
  return { kind: 'ip', cidr: formatCidr(c.ip, c.prefix) }
}

function parseToken(token: string): CidrItem | WeaveCidrResult {
  if (token === 'net:default') return { kind: 'net-default' }
  if (token.startsWith('net:')) {
    const c = parseCidrText(token.slice(4))
    if (!c) return bad(token, 'expected net:default or a subnet like net:10.32.2.0/24')
    if (c.prefix > 30) return bad(token, 'a subnet needs a prefix of /30 or shorter to hold a host address')
    return { kind: 'net', cidr: formatCidr((c.ip & maskOf(c.prefix)) >>> 0, c.prefix) }
  }
  if (token.startsWith('ip:')) return parseIpToken(token, token.slice(3))
  if (/^\d/.test(token)) return parseIpToken(token, token)
  return bad(token, 'expected net:default, net:CIDR, ip:CIDR, a bare CIDR, or none')
}

/** Parse a WEAVE_CIDR value. Never throws. */
export function parseWeaveCidr(value: string): WeaveCidrResult {
  const tokens = value.split(/\s+/).filter((t) => t !== '')
  if (tokens.length === 0) return { ok: true, none: false, items: [{ kind: 'net-default' }] }
  if (tokens.includes('none')) {
    if (tokens.length === 1) return { ok: true, none: true, items: [] }
    return bad('none', 'none cannot be combined with other entries')
  }
  const items: CidrItem[] = []
  for (const t of tokens) {
    const r = parseToken(t)
    if ('ok' in r) return r
    items.push(r)
  }
  return { ok: true, none: false, items }
}

/** Text form of an item, as a user would write it (for logs and messages). */
export function formatCidrItem(item: CidrItem): string {
  return item.kind === 'net-default' ? 'net:default' : `${item.kind}:${item.cidr}`
}
