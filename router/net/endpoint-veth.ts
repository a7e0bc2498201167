/**
 * The Docker network plugin's half of an attach. Docker creates a container's namespace only when
 * the container starts, after the driver has answered Join, and moves the interface the driver
 * names into it itself (renaming it `ethwe0`, setting the IPAM address and the routes the driver
 * returns). So the plugin cannot use attach() (which builds `ethwe` inside an existing namespace);
 * it makes the same pair here instead: host end `vethwepl<id>` on the bridge, hairpin on and up,
 * the bridge's MTU (or the one asked for) on both ends, and a container end left in our namespace
 * for Docker to take. After the start, announceIn() sends the gratuitous ARP attach() would have.
 */
import { NetCommandError } from './exec'
import { NetContext, NetnsRef, bestEffort, runIn } from './context'
import { Ipv4Cidr, formatCidr } from './cidr'
import { DEFAULT_BRIDGE } from './bridge'
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

/** Create (or find, idempotently) the pair for `endpointId`. */
export async function addEndpointVeth(ctx: NetContext, req: EndpointVethRequest): Promise<EndpointVeth> {
  const bridge = req.bridge ?? DEFAULT_BRIDGE
  const hostEnd = hostVethName(req.endpointId)
  const containerEnd = endpointPeerName(req.endpointId)
  const links = parseLinks((await ctx.run(ip.linkShow())).stdout)
  const br = links.find((l) => l.name === bridge)
  if (!br) throw new Error(`bridge ${bridge} does not exist: launch weave first`)
  const mtu = req.mtu ?? br.mtu
  let peer = links.find((l) => l.name === containerEnd)
  if (!peer || !links.some((l) => l.name === hostEnd)) {
    if (peer) await ctx.run(ip.delLink(containerEnd)) // half of an older pair: start again
    if (links.some((l) => l.name === hostEnd)) await ctx.run(ip.delLink(hostEnd))
    await ctx.run(ip.addVeth(hostEnd, containerEnd, mtu))
    try {
      await ctx.run(ip.setMaster(hostEnd, bridge))
      await bestEffort(ctx, ip.setHairpin(hostEnd), `hairpin on ${hostEnd}`)
      await ctx.run(ip.setUp(hostEnd))
      peer = parseLinks((await ctx.run(ip.linkShow(containerEnd))).stdout)[0]
    } catch (err) {
      await bestEffort(ctx, ip.delLink(hostEnd), 'cleanup after a failed endpoint')
      throw err
    }
  }
  if (!peer) throw new Error(`${containerEnd} vanished right after it was created`)
  return { hostEnd, containerEnd, mac: peer.mac, mtu }
}

/** Remove the pair of `endpointId` (either end takes the other with it); absent is fine. */
export async function delEndpointVeth(ctx: NetContext, endpointId: string): Promise<boolean> {
  for (const name of [hostVethName(endpointId), endpointPeerName(endpointId)]) {
    try {
      await ctx.run(ip.delLink(name))
      return true
    } catch (err) {
      if (!(err instanceof NetCommandError && isNoSuchDevice(err.stderr))) throw err
    }
  }
  return false
}

/**
 * Inside a started container: the sysctls attach() sets on ethwe, and one gratuitous ARP per
 * address, so other hosts learn a (possibly reused) address's new MAC at once. Docker named the
 * interface (`ethwe0`, `ethwe1`, ...), so each address's device is looked up. Best effort.
 */
export async function announceIn(ctx: NetContext, netns: NetnsRef, addresses: Ipv4Cidr[]): Promise<void> {
  const devs = parseAddrs((await runIn(ctx, netns, ['ip', '-j', 'addr', 'show'])).stdout)
  const tool = ctx.arping()
  for (const c of addresses) {
    const dev = devs.find((d) => d.addresses.some((a) => a.ip === c.ip))?.name
    if (!dev) continue
    const sysctls = [noRouterAdvertsSysctl(dev), ...bridgeArpSysctls(dev)].map(([k, v]) => `${k}=${v}`)
    await runIn(ctx, netns, ['sysctl', '-q', '-e', '-w', ...sysctls]).catch((err: Error) => ctx.log.warn(`sysctls on ${dev}: ${err.message}`))
    if (tool === 'none') continue
    await runIn(ctx, netns, gratuitousArp(tool, dev, c)).catch((err: Error) => ctx.log.warn(`gratuitous ARP for ${formatCidr(c)}: ${err.message}`))
  }
}
