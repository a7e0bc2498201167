/**
 * `--trusted-subnets`: underlay subnets whose peers get no data-plane encryption, as Weave's.
 * A connection's overlay traffic goes in clear only when trust is mutual: we trust the remote's
 * address and the remote's hello says it trusts ours (Weave's `Trusted` feature). The mesh's TCP
 * connection stays encrypted either way: it carries the keys.
 */
import { networkOf, parseCidr, parseIp, formatCidr, type Cidr } from '../ipv4'

export interface TrustedSubnets {
  /** As given (normalised to the network address), for `weave status` and `weave report`. */
  readonly cidrs: readonly string[]
  /** Whether an underlay address ("1.2.3.4" or "::ffff:1.2.3.4", no port) is in one of them. */
  trusts(addr: string): boolean
}

/** Parse Weave's comma-separated list; throws an Error naming the bad entry. Empty → none. */
export function parseTrustedSubnets(text: string | undefined): TrustedSubnets {
  const cidrs: Cidr[] = []
  for (const part of (text ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    const c = parseCidr(part)
    if (!c) throw new Error(`"${part}" is not a subnet (want CIDR notation, e.g. 192.168.48.0/24)`)
    cidrs.push({ ip: networkOf(c.ip, c.prefix), prefix: c.prefix })
  }
  return {
    cidrs: cidrs.map(formatCidr),
    trusts(addr) {
      const ip = parseIp(addr.replace(/^::ffff:/i, ''))
      return ip !== undefined && cidrs.some((c) => networkOf(ip, c.prefix) === c.ip)
    },
  }
}
