/**
 * DNS names as weaveDNS keeps them (pure): lower case, absolute (trailing dot), checked against
 * RFC 1035's limits (labels ≤ 63 octets, names ≤ 253 characters without the root dot), plus the
 * reverse-lookup names of IPv4 addresses and the container-hostname rules of Weave's proxy.
 */

/** Weave's domain; `--dns-domain` changes it. */
export const DEFAULT_DOMAIN = 'weave.local.'
/** Weave's proxy skips hostnames longer than this (a container's hostname is limited to 64 by Linux). */
export const MAX_HOSTNAME_LENGTH = 64

const LABEL_RE = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/

/** A checked, lower-case, absolute name; undefined when it is not a valid host name. */
export function normalizeName(name: string): string | undefined {
  let n = name.trim().toLowerCase()
  if (!n.endsWith('.')) n += '.'
  if (n === '.' || n.length > 254) return undefined
  const labels = n.slice(0, -1).split('.')
  return labels.every((l) => LABEL_RE.test(l)) ? n : undefined
}

/** The domain in canonical form (`weave.local` → `weave.local.`); throws on a bad one (config error). */
export function normalizeDomain(domain: string): string {
  const d = normalizeName(domain)
  if (!d) throw new Error(`"${domain}" is not a DNS domain`)
  return d
}

/** Whether `fqdn` (normalized) lies inside `domain` (normalized) and is not the domain itself. */
export function inDomain(fqdn: string, domain: string): boolean {
  return fqdn.length > domain.length && fqdn.endsWith('.' + domain)
}

/**
 * A queried name, as weaveDNS resolves it: lower case, absolute; a single label (`web`) gets the
 * domain appended, as Weave does for unqualified names.
 */
export function qualify(qname: string, domain: string): string {
  let n = qname.toLowerCase()
  if (n.endsWith('.')) n = n.slice(0, -1)
  if (n !== '' && !n.includes('.')) return `${n}.${domain}`
  return n + '.'
}

const IPV4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/

export function isIPv4(s: string): boolean {
  return IPV4_RE.test(s)
}

/** `10.32.0.1` → `1.0.32.10.in-addr.arpa.` */
export function reverseName(ip: string): string {
  return ip.split('.').reverse().join('.') + '.in-addr.arpa.'
}

/** `1.0.32.10.in-addr.arpa.` (any case, dot optional) → `10.32.0.1`, or undefined. */
export function addressOfReverseName(qname: string): string | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.in-addr\.arpa\.?$/i.exec(qname)
  if (!m) return undefined
  const ip = [m[4], m[3], m[2], m[1]].join('.')
  return isIPv4(ip) ? ip : undefined
}

export interface HostnameRules {
  domain: string
  /** `--hostname-from-label L`: the value of label L names the container. */
  fromLabel?: string
  /** `--hostname-match RE` / `--hostname-replacement R`: rewrite the container name first. */
  match?: RegExp
  replacement?: string
}

export type HostnameChoice =
  | { kind: 'given' }
  | { kind: 'derived'; hostname: string; domainname: string }
  | { kind: 'skip'; reason: string }

/**
 * Weave's proxy rule for a container's hostname: a hostname the user gave (`-h`) wins; otherwise
 * the name comes from the label (`--hostname-from-label`) or the container name, rewritten by
 * `--hostname-match`/`--hostname-replacement`, and gets the weave domain. Names over 64
 * characters are skipped (Linux refuses them as a hostname).
 */
export function deriveHostname(rules: HostnameRules, c: { name?: string; hostname?: string; labels?: Record<string, string> }): HostnameChoice {
  if (c.hostname) return { kind: 'given' }
  let base = rules.fromLabel ? c.labels?.[rules.fromLabel] : undefined
  if (!base) base = c.name?.replace(/^\//, '')
  if (!base) return { kind: 'skip', reason: 'no container name' }
  if (rules.match) base = base.replace(rules.match, rules.replacement ?? '')
  const domain = rules.domain.replace(/\.$/, '')
  const hostname = base
  if (`${hostname}.${domain}`.length > MAX_HOSTNAME_LENGTH) {
    return { kind: 'skip', reason: `hostname ${hostname}.${domain} is longer than ${MAX_HOSTNAME_LENGTH} characters` }
  }
  if (!normalizeName(`${hostname}.${domain}`)) return { kind: 'skip', reason: `"${hostname}" is not a valid host name` }
  return { kind: 'derived', hostname, domainname: domain }
}
