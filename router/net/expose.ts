/**
 * `weave expose` / `weave hide`: an address for the host on a weave subnet, with masquerading
 * so the subnet reaches the outside world through the host and the host reaches the subnet.
 */
import { NetCommandError } from './exec'
import { NetContext, bestEffort } from './context'
import { Ipv4Cidr, formatCidr, networkOf, parseCidr, sameCidr } from './cidr'
import { gratuitousArp, ip, isNoSuchDevice, parseAddrs } from './ip-args'
import { CHAINS, deleteRule, ensureChain, ensureRule, exposeRules } from './iptables'
import { DEFAULT_BRIDGE } from './bridge'

export interface ExposeOptions {
  bridge?: string
  /** Add the MASQUERADE rules (default true; `--without-masquerade` turns it off). */
  masquerade?: boolean
}

export interface ExposeResult { address: string; addedAddress: boolean; addedRules: number }
export interface HideResult { address: string; removedAddress: boolean; removedRules: number }

/** IPv4 addresses on the bridge (empty when it does not exist). */
export async function bridgeAddresses(ctx: NetContext, bridge = DEFAULT_BRIDGE): Promise<Ipv4Cidr[]> {
  return (await bridgeInfo(ctx, bridge))?.addresses ?? []
}

/** The bridge's MAC and IPv4 addresses (one `ip addr show`); undefined when there is no bridge. */
export async function bridgeInfo(ctx: NetContext, bridge = DEFAULT_BRIDGE): Promise<{ mac: string; addresses: Ipv4Cidr[] } | undefined> {
  try {
    return parseAddrs((await ctx.run(ip.addrShow(bridge))).stdout)[0]
  } catch (err) {
    if (err instanceof NetCommandError && isNoSuchDevice(err.stderr)) return undefined
    throw err
  }
}

export async function expose(ctx: NetContext, cidr: string, opts: ExposeOptions = {}): Promise<ExposeResult> {
  const c = parseCidr(cidr)
  const bridge = opts.bridge ?? DEFAULT_BRIDGE
  const have = await bridgeAddresses(ctx, bridge)
  const addedAddress = !have.some((h) => sameCidr(h, c))
  if (addedAddress) {
    await ctx.run(ip.addAddr(bridge, c))
    const tool = ctx.arping()
    if (tool !== 'none') await bestEffort(ctx, gratuitousArp(tool, bridge, c), `gratuitous ARP for ${formatCidr(c)}`)
  }
  await ensureChain(ctx.run, CHAINS.expose.table, CHAINS.expose.chain)
  await ensureChain(ctx.run, CHAINS.nat.table, CHAINS.nat.chain)
  let addedRules = 0
  for (const r of exposeRules(c, { masquerade: opts.masquerade ?? true })) if (await ensureRule(ctx.run, r)) addedRules++
  ctx.log.info(`exposed ${formatCidr(c)} on ${bridge}`)
  return { address: formatCidr(c), addedAddress, addedRules }
}

/**
 * Remove the address and every rule expose added for its subnet (including the multicast RETURN
 * rule Weave forgot), unless another address on the bridge still exposes the same subnet.
 */
export async function hide(ctx: NetContext, cidr: string, opts: { bridge?: string } = {}): Promise<HideResult> {
  const c = parseCidr(cidr)
  const bridge = opts.bridge ?? DEFAULT_BRIDGE
  const have = await bridgeAddresses(ctx, bridge)
  const removedAddress = have.some((h) => sameCidr(h, c))
  if (removedAddress) await ctx.run(ip.delAddr(bridge, c))
  let removedRules = 0
  const stillExposed = have.some((h) => !sameCidr(h, c) && networkOf(h) === networkOf(c))
  if (!stillExposed) {
    for (const r of exposeRules(c, { masquerade: true })) removedRules += await deleteRuleIfChain(ctx, r)
  }
  return { address: formatCidr(c), removedAddress, removedRules }
}

/** deleteRule, treating a missing chain (never launched, or reset) as "nothing to delete". */
async function deleteRuleIfChain(ctx: NetContext, r: Parameters<typeof deleteRule>[1]): Promise<number> {
  try {
    return await deleteRule(ctx.run, r)
  } catch (err) {
    if (err instanceof NetCommandError && /No chain|does not exist/i.test(err.stderr)) return 0
    throw err
  }
}
