/**
 * IPv4 `address/prefix` values as router/net takes them. Validated before they reach a command
 * line: no shell is involved, but a value starting with `-` would still be read as an option.
 */
import { formatIp, mustParseIp, networkOf as ipv4NetworkOf, parseCidr as parseCidrText, parseIp } from '../../ipv4'

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

/** Parse `a.b.c.d/n` (n in 0..32, the shared strict IPv4 text of ipv4/); throws CidrError otherwise. */
export function parseCidr(s: string): Ipv4Cidr {
  const c = parseCidrText(s)
  if (!c) throw new CidrError(s)
  return { ip: formatIp(c.ip), prefix: c.prefix }
}

/** The address as an unsigned 32-bit integer, or undefined when it is not a dotted quad. */
export function ipToInt(ip: string): number | undefined {
  return parseIp(ip)
}

export function intToIp(v: number): string {
  return formatIp(v >>> 0)
}

export function formatCidr(c: Ipv4Cidr): string {
  return `${c.ip}/${c.prefix}`
}

/** The subnet an address is in, e.g. `10.32.0.5/12` → `10.32.0.0/12` (as iptables stores it). */
export function networkOf(c: Ipv4Cidr): string {
  return `${formatIp(ipv4NetworkOf(mustParseIp(c.ip), c.prefix))}/${c.prefix}`
}

/** Same address and prefix. */
export function sameCidr(a: Ipv4Cidr, b: Ipv4Cidr): boolean {
  return a.ip === b.ip && a.prefix === b.prefix
}
