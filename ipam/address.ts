/**
 * IPv4 addresses and CIDR math on plain numbers. An address is an unsigned 32-bit integer held in
 * a JS number; a range is half-open `[start, end)`, so `end` may be 2^32.
 */

export type Addr = number

/** Half-open address range `[start, end)`. */
export interface Range {
  start: number
  end: number
}

/** An address with a prefix length, e.g. `10.32.0.1/12` (the address is kept as given). */
export interface Cidr {
  ip: Addr
  prefix: number
}

const IP_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/

/** Parse dotted-quad IPv4; undefined when malformed. */
export function parseIp(text: string): Addr | undefined {
  const m = IP_RE.exec(text.trim())
  if (!m) return undefined
  let out = 0
  for (let i = 1; i <= 4; i++) {
    const b = Number(m[i])
    if (b > 255) return undefined
    out = out * 256 + b
  }
  return out
}

export function formatIp(a: Addr): string {
  return `${Math.floor(a / 2 ** 24) % 256}.${Math.floor(a / 2 ** 16) % 256}.${Math.floor(a / 256) % 256}.${a % 256}`
}

/** Parse `a.b.c.d/len`; undefined when malformed. */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf('/')
  if (slash < 0) return undefined
  const ip = parseIp(text.slice(0, slash))
  const lenText = text.slice(slash + 1)
  if (ip === undefined || !/^\d{1,2}$/.test(lenText)) return undefined
  const prefix = Number(lenText)
  if (prefix > 32) return undefined
  return { ip, prefix }
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.ip)}/${c.prefix}`
}

export function blockSize(prefix: number): number {
  return 2 ** (32 - prefix)
}

/** The network address of `ip` under `prefix`. */
export function networkOf(ip: Addr, prefix: number): Addr {
  const size = blockSize(prefix)
  return Math.floor(ip / size) * size
}

/** The whole block of a CIDR, network and broadcast included. */
export function cidrRange(c: Cidr): Range {
  const start = networkOf(c.ip, c.prefix)
  return { start, end: start + blockSize(c.prefix) }
}

/** Whether the CIDR is written as its network address (`10.32.0.0/12`, not `10.32.0.1/12`). */
export function isNetworkCidr(c: Cidr): boolean {
  return networkOf(c.ip, c.prefix) === c.ip
}

/**
 * The addresses a subnet hands out: the block without its network and broadcast addresses
 * (a /31 or /32 has none to spare, so it yields an empty range).
 */
export function hostRange(c: Cidr): Range {
  const r = cidrRange(c)
  if (r.end - r.start < 4) return { start: r.start, end: r.start }
  return { start: r.start + 1, end: r.end - 1 }
}

export function rangeSize(r: Range): number {
  return Math.max(0, r.end - r.start)
}

export function intersect(a: Range, b: Range): Range | undefined {
  const start = Math.max(a.start, b.start)
  const end = Math.min(a.end, b.end)
  return start < end ? { start, end } : undefined
}

export function contains(r: Range, a: Addr): boolean {
  return a >= r.start && a < r.end
}

export function formatRange(r: Range): string {
  return `${formatIp(r.start)}-${formatIp(r.end - 1)}`
}

/**
 * The largest CIDR-aligned block inside `[start, end)` no bigger than `maxSize`; of equal-sized
 * candidates the highest is chosen, so a donor keeps its low addresses (where it allocates first)
 * contiguous. Undefined when the range is empty or maxSize < 1.
 */
export function largestAlignedBlock(r: Range, maxSize: number): Range | undefined {
  if (r.end <= r.start || maxSize < 1) return undefined
  let size = 1
  while (size * 2 <= Math.min(maxSize, r.end - r.start)) size *= 2
  for (; size >= 1; size /= 2) {
    // Highest aligned start s with s >= r.start and s + size <= r.end.
    const s = Math.floor((r.end - size) / size) * size
    if (s >= r.start) return { start: s, end: s + size }
  }
  return undefined
}
