/**
 * IPv4 `address/prefix` values as router/net takes them. Validated before they reach a command
 * line: no shell is involved, but a value starting with `-` would still be read as an option.
 */

/** An interface address with its prefix, e.g. `10.32.0.5/12`. */
export interface Ipv4Cidr {
  /** Dotted quad of the address itself (host bits kept). */
  ip: string
  prefix: number
}

export class CidrError extends Error {
  readonly code = 'BAD_CIDR'
  constructor(readonly input: string) {
    super(`not an IPv4 address/prefix: ${JSON.stringify(input)}`)
    this.name = 'CidrError'
  }
}

const QUAD = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/

/** Parse `a.b.c.d/n` (n in 0..32); throws CidrError otherwise. */
export function parseCidr(s: string): Ipv4Cidr {
  const slash = s.indexOf('/')
  if (slash < 0) throw new CidrError(s)
  const ip = s.slice(0, slash)
  const pfx = s.slice(slash + 1)
  if (!/^\d{1,2}$/.test(pfx) || Number(pfx) > 32) throw new CidrError(s)
  if (ipToInt(ip) === undefined) throw new CidrError(s)
  return { ip: normalizeIp(ip), prefix: Number(pfx) }
}

/** The address as an unsigned 32-bit integer, or undefined when it is not a dotted quad. */
export function ipToInt(ip: string): number | undefined {
  const m = QUAD.exec(ip)
  if (!m) return undefined
  let v = 0
  for (let i = 1; i <= 4; i++) {
    const octet = Number(m[i])
    if (octet > 255) return undefined
    v = v * 256 + octet
  }
  return v
}

export function intToIp(v: number): string {
  return [24, 16, 8, 0].map((s) => (v >>> s) & 255).join('.')
}

function normalizeIp(ip: string): string {
  return intToIp(ipToInt(ip)!)
}

export function formatCidr(c: Ipv4Cidr): string {
  return `${c.ip}/${c.prefix}`
}

/** The subnet an address is in, e.g. `10.32.0.5/12` → `10.32.0.0/12` (as iptables stores it). */
export function networkOf(c: Ipv4Cidr): string {
  const mask = c.prefix === 0 ? 0 : (0xffffffff << (32 - c.prefix)) >>> 0
  return `${intToIp((ipToInt(c.ip)! & mask) >>> 0)}/${c.prefix}`
}

/** Same address and prefix (textual forms may differ, e.g. leading zeros). */
export function sameCidr(a: Ipv4Cidr, b: Ipv4Cidr): boolean {
  return a.ip === b.ip && a.prefix === b.prefix
}
