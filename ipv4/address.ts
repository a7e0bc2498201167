/**
 * IPv4 addresses and prefixes: the one parser every part of weave-ts uses (IPAM, host plumbing,
 * WEAVE_CIDR, the native socket layer, OpenFlow), so they all accept and refuse the same text.
 *
 * An address is an unsigned 32-bit integer held in a JS number. Accepted text is a strict dotted
 * quad: four decimal octets 0..255 with no leading zeros ("010" is refused: inet_aton would read it
 * as octal 8, other tools as decimal 10, so it means different things to different programs), no
 * signs, no spaces. A prefix is 0..32, again without leading zeros.
 */

export type Addr = number

/** An address with a prefix length, e.g. `10.32.0.1/12` (the address is kept as given). */
export interface Cidr {
  ip: Addr
  prefix: number
}

const OCTET = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/
const PREFIX = /^(?:3[0-2]|[12]?\d)$/

/** Parse a dotted quad; undefined when it is not one. Never throws. */
export function parseIp(text: string): Addr | undefined {
  if (typeof text !== 'string' || text.length > 15) return undefined
  const parts = text.split('.')
  if (parts.length !== 4) return undefined
  let out = 0
  for (const p of parts) {
    if (!OCTET.test(p)) return undefined
    out = out * 256 + Number(p)
  }
  return out
}

export function formatIp(a: Addr): string {
  return `${Math.floor(a / 2 ** 24) % 256}.${Math.floor(a / 2 ** 16) % 256}.${Math.floor(a / 256) % 256}.${a % 256}`
}

/** Parse `a.b.c.d/len`; undefined when malformed. Never throws. */
export function parseCidr(text: string): Cidr | undefined {
  if (typeof text !== 'string') return undefined
  const slash = text.indexOf('/')
  if (slash < 0) return undefined
  const ip = parseIp(text.slice(0, slash))
  const lenText = text.slice(slash + 1)
  if (ip === undefined || !PREFIX.test(lenText)) return undefined
  return { ip, prefix: Number(lenText) }
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.ip)}/${c.prefix}`
}

/** Number of addresses in a block of this prefix length. */
export function blockSize(prefix: number): number {
  return 2 ** (32 - prefix)
}

/** The network address of `ip` under `prefix`. */
export function networkOf(ip: Addr, prefix: number): Addr {
  const size = blockSize(prefix)
  return Math.floor(ip / size) * size
}

/** Whether the CIDR is written as its network address (`10.32.0.0/12`, not `10.32.0.1/12`). */
export function isNetworkCidr(c: Cidr): boolean {
  return networkOf(c.ip, c.prefix) === c.ip
}

/** The last address of the block `c` is in (its broadcast address for prefixes below 31). */
export function lastOf(c: Cidr): Addr {
  return networkOf(c.ip, c.prefix) + blockSize(c.prefix) - 1
}

/** A value that is not IPv4 text where the caller required one (API misuse or bad input). */
export class Ipv4Error extends Error {
  readonly code = 'BAD_IPV4'
  constructor(readonly input: string, what: 'address' | 'address/prefix') {
    super(`not an IPv4 ${what}: ${JSON.stringify(input)}`)
    this.name = 'Ipv4Error'
  }
}

/** parseIp that throws Ipv4Error. */
export function mustParseIp(text: string): Addr {
  const a = parseIp(text)
  if (a === undefined) throw new Ipv4Error(text, 'address')
  return a
}

/** parseCidr that throws Ipv4Error. */
export function mustParseCidr(text: string): Cidr {
  const c = parseCidr(text)
  if (c === undefined) throw new Ipv4Error(text, 'address/prefix')
  return c
}
