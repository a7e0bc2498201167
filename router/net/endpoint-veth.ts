/**
 * The Docker network plugin's half of an attach. Docker creates a container's namespace only when
 * the container starts, after the driver has answered Join, and moves the interface the driver
 * names into it itself (renaming it `ethwe0`, setting the IPAM address and the routes the driver
 * returns). So the plugin cannot use attach() (which builds `ethwe` inside an existing namespace);
 * it makes the same pair here instead: host end `vethwepl<id>` on the bridge, hairpin on and up,
 * the bridge's MTU (or the one asked for) on both ends, and a container end left in our namespace
 * for Docker to take. After the start, announceIn() sends the gratuitous ARP attach() would have.
 */
import { createHash } from 'node:crypto'
import { NetCommandError } from './exec'
import * as fs from 'node:fs'
import { NetContext, NetnsRef, bestEffort, netnsRefPath, runIn } from './context'
import { Ipv4Cidr, formatCidr } from './cidr'
import { DEFAULT_BRIDGE } from './bridge'
import type { NativeNetlink } from '../native'
import { execIn, nativeDelete } from './attach-native'
import { ensureMulticastRules, multicastRulesRestore } from './attach'
import { bridgeArpSysctls, gratuitousArp, hostVethName, ip, isNoSuchDevice, noRouterAdvertsSysctl, parseAddrs, parseLinks } from './ip-args'

/** The container end until Docker renames it: `vethwepg` + 7 characters of the endpoint id. */
export function endpointPeerName(endpointId: string): string {
  return hostVethName(endpointId).replace(/^vethwepl/, 'vethwepg')
}

export interface EndpointVethRequest {
  /** Docker's endpoint id (names both ends). */
  endpointId: string
  /** Default: the bridge's MTU. */
  mtu?: number
  bridge?: string
}

export interface EndpointVeth {
  hostEnd: string
  /** The end Docker moves into the container (Join's InterfaceName.SrcName). */
  containerEnd: string
  /** MAC of the container end (CreateEndpoint's answer, so Docker keeps it). */
  mac: string
  mtu: number
}

/**
 * The container end's MAC, from the endpoint id: the same on every try (idempotent), locally
 * administered unicast, and known before the pair exists (no read-back).
 */
export function endpointMac(endpointId: string): string {
  const h = createHash('sha256').update(endpointId).digest()
  h[0] = (h[0] & 0xfe) | 0x02
  return [...h.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':')
}

/**
 * Create (or find, idempotently) the pair for `endpointId`. With the MTU given, the common case is
 * one `ip -batch` (a `docker run` waits for it; each process start costs milliseconds, more under
 * load); when that fails (a pair left from before, no bridge) the step-by-step way below says why.
 */
export async function addEndpointVeth(ctx: NetContext, req: EndpointVethRequest): Promise<EndpointVeth> {
  const bridge = req.bridge ?? DEFAULT_BRIDGE
  const hostEnd = hostVethName(req.endpointId)
  const containerEnd = endpointPeerName(req.endpointId)
  const mac = endpointMac(req.endpointId)
  const nl = ctx.netlink?.()
  if (nl && req.mtu) {
    const r = nativeAdd(ctx, nl, hostEnd, containerEnd, bridge, req.mtu)
    if (r) return r
  } else if (req.mtu) {
    const m = String(req.mtu)
    const batch = [
      ['link', 'add', 'name', hostEnd, 'mtu', m, 'type', 'veth', 'peer', 'name', containerEnd, 'mtu', m, 'address', mac],
      ['link', 'set', 'dev', hostEnd, 'master', bridge],
      ['link', 'set', 'dev', hostEnd, 'type', 'bridge_slave', 'hairpin', 'on'],
      ['link', 'set', 'dev', hostEnd, 'up'],
    ].map((l) => l.join(' ')).join('\\n')
    try {
      // Every word is a fixed keyword, a number or a name we built from [A-Za-z0-9_.-]: no quoting needed.
      await ctx.run(['sh', '-c', `printf '${batch}\\n' | ip -batch -`])
      return { hostEnd, containerEnd, mac, mtu: req.mtu }
    } catch {
      // Not deleted here: the pair may be a live one from before (the slow path reuses it).
    }
  }
  return addEndpointVethSlow(ctx, req, bridge, hostEnd, containerEnd, mac)
}

async function addEndpointVethSlow(ctx: NetContext, req: EndpointVethRequest, bridge: string, hostEnd: string, containerEnd: string, mac: string): Promise<EndpointVeth> {
  const links = parseLinks((await ctx.run(ip.linkShow())).stdout)
  const br = links.find((l) => l.name === bridge)
  if (!br) throw new Error(`bridge ${bridge} does not exist: launch weave first`)
  const mtu = req.mtu ?? br.mtu
  const host = links.find((l) => l.name === hostEnd)
  let peer = links.find((l) => l.name === containerEnd)
  if (host && peer) {
    // The pair from before (or one a failed batch left half set up): on the bridge and up.
    if (host.master !== bridge) await ctx.run(ip.setMaster(hostEnd, bridge))
    if (!host.up) await ctx.run(ip.setUp(hostEnd))
    return { hostEnd, containerEnd, mac: peer.mac, mtu }
  }
  // Its other end is in a container already (Docker moved and renamed it): never take that over.
  if (host) throw new Error(`${hostEnd} exists and its other end is in a container already`)
  if (peer) await ctx.run(ip.delLink(containerEnd)) // not a veth end of ours any more: start again
  await ctx.run([...ip.addVeth(hostEnd, containerEnd, mtu), 'address', mac])
  try {
    await ctx.run(ip.setMaster(hostEnd, bridge))
    await bestEffort(ctx, ip.setHairpin(hostEnd), `hairpin on ${hostEnd}`)
    await ctx.run(ip.setUp(hostEnd))
    peer = parseLinks((await ctx.run(ip.linkShow(containerEnd))).stdout)[0]
  } catch (err) {
    await bestEffort(ctx, ip.delLink(hostEnd), 'cleanup after a failed endpoint')
    throw err
  }
  if (!peer) throw new Error(`${containerEnd} vanished right after it was created`)
  return { hostEnd, containerEnd, mac: peer.mac, mtu }
}

/** nsfs path of the namespace `ctx.hostNetns` names; null when it is our own. */
function hostNs(ctx: NetContext): string | null {
  const h = ctx.hostNetns
  if (/^\d+$/.test(h)) return Number(h) === process.pid ? null : `/proc/${h}/ns/net`
  return `/var/run/netns/${h}`
}

/**
 * The common case over netlink (no process at all: a `docker run` waits for this, and under load
 * each process start costs tens of milliseconds). Undefined when either end exists already: the
 * slow path decides what to do with it.
 */
function nativeAdd(ctx: NetContext, nl: NativeNetlink, hostEnd: string, containerEnd: string, bridge: string, mtu: number): EndpointVeth | undefined {
  const fd = nl.nlOpen(hostNs(ctx))
  try {
    const br = nl.nlLink(fd, bridge)
    if (!br) throw new Error(`bridge ${bridge} does not exist: launch weave first`)
    if (nl.nlLink(fd, hostEnd) || nl.nlLink(fd, containerEnd)) return undefined
    nl.nlVethAdd(fd, hostEnd, containerEnd, mtu, null)
    try {
      const h = nl.nlLink(fd, hostEnd)
      const p = nl.nlLink(fd, containerEnd)
      if (!h || !p) throw new Error(`${hostEnd} vanished right after it was created`)
      nl.nlLinkSet(fd, h.index, 1, br.index, 0)
      try { nl.nlHairpin(fd, h.index, true) } catch (err) { ctx.log.warn(`hairpin on ${hostEnd}: ${(err as Error).message}`) }
      return { hostEnd, containerEnd, mac: p.mac, mtu }
    } catch (err) {
      const h = nl.nlLink(fd, hostEnd)
      if (h) nl.nlLinkDel(fd, h.index)
      throw err
    }
  } finally {
    nl.nlClose(fd)
  }
}

/** Remove the pair of `endpointId` (either end takes the other with it); absent is fine. */
export async function delEndpointVeth(ctx: NetContext, endpointId: string): Promise<boolean> {
  const names = [hostVethName(endpointId), endpointPeerName(endpointId)]
  const nl = ctx.netlink?.()
  if (nl) {
    // In the netlink worker: deleting a veth waits for the kernel's RCU grace period (tens of ms),
    // which must not stall the daemon's event loop, and no process is started for it.
    for (const ifname of names) if ((await nativeDelete(nl, { ns: hostNs(ctx), ifname })) === 'deleted') return true
    return false
  }
  // Without the addon: `ip` in a child process, for the same reason.
  for (const name of names) {
    try {
      await ctx.run(ip.delLink(name))
      return true
    } catch (err) {
      if (!(err instanceof NetCommandError && isNoSuchDevice(err.stderr))) throw err
    }
  }
  return false
}

/** announceIn's options. */
export interface AnnounceOptions {
  /**
   * The container's namespace is new (its start event): the multicast rules go in with one
   * iptables-restore, unchecked. False (a restarted router going over running containers): each
   * rule is checked first, so none is added twice.
   */
  fresh?: boolean
}

/**
 * Inside a started container: what attach() does to ethwe and Docker could not (it moved and
 * addressed the interface itself): the sysctls, the multicast isolation rules (a container hears
 * multicast only from its own subnets; Weave's attach), and one gratuitous ARP per address, so
 * other hosts learn a (possibly reused) address's new MAC at once. Docker named the interface
 * (`ethwe0`, `ethwe1`, ...), so each address's device is looked up. Best effort.
 */
export async function announceIn(ctx: NetContext, netns: NetnsRef, addresses: Ipv4Cidr[], opts: AnnounceOptions = {}): Promise<void> {
  const nl = ctx.netlink?.()
  if (nl && addresses.length === 1 && opts.fresh) {
    // One weave network: Docker named its interface ethwe0. One process (the rules), started
    // first and awaited last; the rest over netlink.
    const ns = netnsRefPath(netns)
    const dev = 'ethwe0'
    const rules = execIn(nl, ns, ['iptables-restore', '--noflush', '-w', '5'], multicastRulesRestore(addresses, 'add', dev))
    rules.catch(() => undefined) // awaited below
    try {
      for (const [k, v] of [noRouterAdvertsSysctl(dev), ...bridgeArpSysctls(dev)]) nl.nlSysctl(ns, k, String(v))
      // The packet socket's close is slow (it waits for the kernel): not on the event loop.
      fs.close(nl.nlGarp(ns, dev, addresses[0].ip), () => undefined)
    } catch (err) {
      if (!fs.existsSync(ns)) return // it ran and exited already (`docker run --rm ... true`)
      ctx.log.debug(`announce on ${dev} over netlink: ${(err as Error).message}; trying the tools`)
      await rules.catch(() => undefined)
      return announceWithTools(ctx, netns, addresses)
    }
    await rules.catch((err: Error) => { if (fs.existsSync(ns)) ctx.log.warn(`multicast rules on ${dev}: ${err.message}`) })
    return
  }
  return announceWithTools(ctx, netns, addresses)
}

async function announceWithTools(ctx: NetContext, netns: NetnsRef, addresses: Ipv4Cidr[]): Promise<void> {
  const devs = parseAddrs((await runIn(ctx, netns, ['ip', '-j', 'addr', 'show'])).stdout)
  const tool = ctx.arping()
  for (const d of devs) {
    const mine = addresses.filter((c) => d.addresses.some((a) => a.ip === c.ip))
    if (!mine.length) continue
    const dev = d.name
    const sysctls = [noRouterAdvertsSysctl(dev), ...bridgeArpSysctls(dev)].map(([k, v]) => `${k}=${v}`)
    await runIn(ctx, netns, ['sysctl', '-q', '-e', '-w', ...sysctls]).catch((err: Error) => ctx.log.warn(`sysctls on ${dev}: ${err.message}`))
    // Checked rule by rule: this way also goes over containers a restarted router finds running.
    await ensureMulticastRules(ctx, netns, mine, dev).catch((err: Error) => ctx.log.warn(`multicast rules on ${dev}: ${err.message}`))
    if (tool === 'none') continue
    for (const c of mine) {
      await runIn(ctx, netns, gratuitousArp(tool, dev, c)).catch((err: Error) => ctx.log.warn(`gratuitous ARP for ${formatCidr(c)}: ${err.message}`))
    }
  }
}
