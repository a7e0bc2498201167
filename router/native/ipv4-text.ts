/** IPv4 addresses between dotted-quad text and the host-order u32 the addon takes. */
import { parseIp } from '../../ipv4'

/** "10.0.0.1" → 0x0a000001; undefined when it is not a dotted quad (the shared ipv4/ parser). */
export const parseIpv4 = parseIp

export function formatIpv4(v: number): string {
  return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`
}
