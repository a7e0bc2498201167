/**
 * Address ranges for IPAM on plain numbers: a range is half-open `[start, end)`, so `end` may be
 * 2^32. Parsing and formatting of addresses are the shared ones of ipv4/ (re-exported here).
 */

import { type Addr, type Cidr, blockSize, formatIp, networkOf } from '../ipv4'

export { type Addr, type Cidr, parseIp, formatIp, parseCidr, formatCidr, blockSize, networkOf, isNetworkCidr } from '../ipv4'

/** Half-open address range `[start, end)`. */
export interface Range {
  start: number
  end: number
}

/** The whole block of a CIDR, network and broadcast included. */
export function cidrRange(c: Cidr): Range {
  const start = networkOf(c.ip, c.prefix)
  return { start, end: start + blockSize(c.prefix) }
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
