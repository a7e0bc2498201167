/** `weave reset`: remove every link, address, route and iptables rule of ours from the host. */
import { NetCommandError } from './exec'
import { NetContext } from './context'
import { ip, isNoSuchDevice, parseLinks } from './ip-args'
import { removeAllOurs } from './iptables'
import { DEFAULT_BRIDGE } from './bridge'
import { removeAllEsp } from './xfrm'
import { KERNEL_VXLAN_DEV } from './vxlan'
import { removeVxlanCounters } from './vxlan-counters'

/** Links of ours besides the bridge: vethwe-bridge/-pcap/-datapath, vethwedu, vethwepl<id>, and the kernel path's vxlan-6784. */
export const OUR_LINK_PREFIX = 'vethwe'

export interface ResetResult { links: string[]; iptablesJumps: number; iptablesChains: number }

/** Names `resetHost` deletes, from the host's link list. Pure. */
export function linksToRemove(names: string[], bridge: string): string[] {
  return names.filter((n) => n === bridge || n.startsWith(OUR_LINK_PREFIX) || n === KERNEL_VXLAN_DEV)
}

/**
 * Delete the bridge (its addresses and routes go with it), the kernel path's vxlan-6784, every vethwe* link (a container's
 * ethwe goes with its host end), the kernel path's nftables counter table, encrypted fastdp's xfrm SAs and policies, then our iptables jumps
 * and chains. Safe to run twice.
 */
export async function resetHost(ctx: NetContext, opts: { bridge?: string } = {}): Promise<ResetResult> {
  const bridge = opts.bridge ?? DEFAULT_BRIDGE
  const names = parseLinks((await ctx.run(ip.linkShow())).stdout).map((l) => l.name)
  const gone: string[] = []
  for (const n of linksToRemove(names, bridge)) {
    try {
      await ctx.run(ip.delLink(n))
      gone.push(n)
    } catch (err) {
      // The other end of a veth we already deleted.
      if (!(err instanceof NetCommandError && isNoSuchDevice(err.stderr))) throw err
    }
  }
  // the kernel path's nftables counters (a table of ours; without nft there is none to remove)
  await removeVxlanCounters(ctx).catch((err: Error) => ctx.log.warn(`reset: nft table: ${err.message}`))
  // encrypted fastdp's SAs and policies (found by our reqid and priority); its chain goes below
  await removeAllEsp({ run: ctx.run, iptables: false })
  const filter = await removeAllOurs(ctx.run, 'filter')
  const nat = await removeAllOurs(ctx.run, 'nat')
  ctx.log.info(`reset: removed ${gone.length} links, ${filter.chains + nat.chains} chains`)
  return { links: gone, iptablesJumps: filter.jumps + nat.jumps, iptablesChains: filter.chains + nat.chains }
}
