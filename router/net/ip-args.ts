/**
 * argv builders for `ip`, `sysctl`, `ethtool` and `arping`, and parsers for `ip -j` output.
 * Pure: no I/O, so unit tests check exactly what would run.
 */
import { Ipv4Cidr, formatCidr } from './cidr'

/** Linux IFNAMSIZ is 16 including the NUL. */
export const MAX_IFNAME = 15
export const CONTAINER_IFNAME = 'ethwe'
export const HOST_VETH_PREFIX = 'vethwepl'
export const MULTICAST_ROUTE = '224.0.0.0/4'

/** Host end of a container's veth: `vethwepl` + the first 7 characters of its id. */
export function hostVethName(containerId: string): string {
  const id = containerId.replace(/[^A-Za-z0-9_.-]/g, '')
  if (!id) throw new Error(`container id ${JSON.stringify(containerId)} has no usable characters for an interface name`)
  return HOST_VETH_PREFIX + id.slice(0, MAX_IFNAME - HOST_VETH_PREFIX.length)
}

export const ip = {
  linkShow: (dev?: string): string[] => ['ip', '-j', '-d', 'link', 'show', ...(dev ? ['dev', dev] : [])],
  addrShow: (dev: string): string[] => ['ip', '-j', 'addr', 'show', 'dev', dev],
  addBridge: (name: string, mtu: number, mac?: string): string[] =>
    ['ip', 'link', 'add', 'name', name, ...(mac ? ['address', mac] : []), 'mtu', String(mtu), 'type', 'bridge'],
  /** A veth pair in the current namespace. */
  addVeth: (name: string, peer: string, mtu: number): string[] =>
    ['ip', 'link', 'add', 'name', name, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', peer, 'mtu', String(mtu)],
  /**
   * A veth pair whose peer end goes straight into namespace `peerNetns` (a name under
   * /var/run/netns or a pid): no moment where a half-configured end is visible in the wrong place.
   */
  addVethPeerIn: (name: string, peer: string, mtu: number, peerNetns: string): string[] =>
    ['ip', 'link', 'add', 'name', name, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', peer, 'mtu', String(mtu), 'netns', peerNetns],
  setMtu: (dev: string, mtu: number): string[] => ['ip', 'link', 'set', 'dev', dev, 'mtu', String(mtu)],
  setMaster: (dev: string, master: string): string[] => ['ip', 'link', 'set', 'dev', dev, 'master', master],
  setUp: (dev: string): string[] => ['ip', 'link', 'set', 'dev', dev, 'up'],
  setHairpin: (dev: string): string[] => ['ip', 'link', 'set', 'dev', dev, 'type', 'bridge_slave', 'hairpin', 'on'],
  delLink: (dev: string): string[] => ['ip', 'link', 'del', 'dev', dev],
  addAddr: (dev: string, c: Ipv4Cidr): string[] => ['ip', 'addr', 'add', formatCidr(c), 'dev', dev],
  delAddr: (dev: string, c: Ipv4Cidr): string[] => ['ip', 'addr', 'del', formatCidr(c), 'dev', dev],
  multicastRoute: (dev: string): string[] => ['ip', 'route', 'replace', MULTICAST_ROUTE, 'dev', dev, 'scope', 'link'],
  /** `dst` via `gw` (or on-link) on `dev`; replace, so a repeated attach does not fail. */
  route: (dev: string, r: { dst: string; gw?: string }): string[] =>
    ['ip', 'route', 'replace', r.dst, ...(r.gw ? ['via', r.gw] : []), 'dev', dev],
}

export const sysctl = {
  set: (key: string, value: string | number): string[] => ['sysctl', '-q', '-w', `${key}=${value}`],
}

/** Per-device sysctls Weave sets on its bridge (and, for ARP, on ethwe). */
export function bridgeArpSysctls(dev: string): Array<[string, number]> {
  return [
    [`net.ipv4.neigh.${dev}.base_reachable_time`, 5],
    [`net.ipv4.neigh.${dev}.delay_first_probe_time`, 2],
    [`net.ipv4.neigh.${dev}.ucast_solicit`, 1],
  ]
}

/** Router advertisements on the overlay would give containers surprise IPv6 routes. */
export function noRouterAdvertsSysctl(dev: string): [string, number] {
  return [`net.ipv6.conf.${dev}.accept_ra`, 0]
}

/**
 * Checksum offload off: a frame the kernel leaves with a partial checksum would be captured by the
 * sleeve router and leave the host with a wrong one.
 */
export function txOffloadOff(dev: string): string[] {
  return ['ethtool', '-K', dev, 'tx', 'off']
}

/** One unsolicited ARP announcing `c.ip` on `dev`, with busybox's or iputils' arping. */
export function gratuitousArp(tool: 'busybox' | 'arping', dev: string, c: Ipv4Cidr): string[] {
  const args = ['-U', '-c', '1', '-w', '1', '-I', dev, '-s', c.ip, c.ip]
  return tool === 'busybox' ? ['busybox', 'arping', ...args] : ['arping', ...args]
}

// ---- `ip -j` output ----

export interface LinkInfo {
  name: string
  mac: string
  mtu: number
  up: boolean
  /** `bridge`, `veth`, ... ; undefined for plain devices. */
  kind?: string
  /** Bridge this link is enslaved to. */
  master?: string
}

export interface AddrInfo {
  name: string
  mac: string
  /** IPv4 addresses only. */
  addresses: Ipv4Cidr[]
}

interface IpJsonLink {
  ifname?: string
  address?: string
  mtu?: number
  flags?: string[]
  master?: string
  linkinfo?: { info_kind?: string }
  addr_info?: Array<{ family?: string; local?: string; prefixlen?: number }>
}

function parseJsonArray(text: string): IpJsonLink[] {
  const trimmed = text.trim()
  if (!trimmed) return []
  const v: unknown = JSON.parse(trimmed)
  if (!Array.isArray(v)) throw new Error('ip -j: expected a JSON array')
  return v as IpJsonLink[]
}

/** Links from `ip -j -d link show`. */
export function parseLinks(text: string): LinkInfo[] {
  return parseJsonArray(text).filter((l) => l.ifname).map((l) => ({
    name: l.ifname!,
    mac: l.address ?? '',
    mtu: l.mtu ?? 0,
    up: (l.flags ?? []).includes('UP'),
    kind: l.linkinfo?.info_kind,
    master: l.master,
  }))
}

/** MAC and IPv4 addresses from `ip -j addr show dev X`. */
export function parseAddrs(text: string): AddrInfo[] {
  return parseJsonArray(text).filter((l) => l.ifname).map((l) => ({
    name: l.ifname!,
    mac: l.address ?? '',
    addresses: (l.addr_info ?? [])
      .filter((a) => a.family === 'inet' && a.local && typeof a.prefixlen === 'number')
      .map((a) => ({ ip: a.local!, prefix: a.prefixlen! })),
  }))
}

/** `ip` says this when a device is missing; we treat that as "absent", anything else as an error. */
export function isNoSuchDevice(stderr: string): boolean {
  return /does not exist|Cannot find device|No such device/i.test(stderr)
}
