/**
 * The `weave` Linux bridge and, in sleeve mode, the `vethwe-bridge` ⇄ `vethwe-pcap` pair through
 * which the router takes frames off the bridge and puts them back; plus the sysctls and iptables
 * rules the bridge needs.
 */
import { NetCommandError } from './exec'
import { NetContext, bestEffort } from './context'
import { LinkInfo, bridgeArpSysctls, ip, isNoSuchDevice, noRouterAdvertsSysctl, parseLinks, sysctl, txOffloadOff } from './ip-args'
import { CHAINS, ensureChain, ensureRule, forwardRules, inputRules, jumpRules } from './iptables'

export const DEFAULT_BRIDGE = 'weave'
/** 1460 (GCE) − 20 IP − 8 UDP − 8 VXLAN − 14 Ethernet − 34 ESP: fits every overlay path. */
export const DEFAULT_MTU = 1376
export const SLEEVE_BRIDGE_END = 'vethwe-bridge'
export const SLEEVE_PCAP_END = 'vethwe-pcap'
/** Port of the control API on 127.0.0.1 that the INPUT rule protects. */
export const DEFAULT_CONTROL_PORT = 6784

export interface BridgeOptions {
  /** Default `weave`. */
  name?: string
  /** Default 1376; an existing bridge with another MTU is changed to this one. */
  mtu?: number
  /** MAC for a newly created bridge (Weave uses the peer name); an existing bridge keeps its own. */
  mac?: string
  /** Create the vethwe-bridge ⇄ vethwe-pcap pair for the sleeve router (default true). */
  sleeve?: boolean
  /** Protect this TCP port on 127.0.0.1 from non-local packets; null for no INPUT rule. Default 6784. */
  controlPort?: number | null
}

export interface BridgeInfo {
  name: string
  mtu: number
  mac: string
  /** True when this call created the bridge, false when it reused one. */
  created: boolean
  /** The interface the sleeve router captures on and injects into (undefined without sleeve). */
  captureDevice?: string
}

/** One link by name, or undefined when it does not exist. */
export async function getLink(ctx: NetContext, name: string): Promise<LinkInfo | undefined> {
  try {
    return parseLinks((await ctx.run(ip.linkShow(name))).stdout)[0]
  } catch (err) {
    if (err instanceof NetCommandError && isNoSuchDevice(err.stderr)) return undefined
    throw err
  }
}

/** Create the bridge if missing (reuse it if present), fix its MTU, bring it up, add rules. */
export async function ensureBridge(ctx: NetContext, opts: BridgeOptions = {}): Promise<BridgeInfo> {
  const name = opts.name ?? DEFAULT_BRIDGE
  const mtu = opts.mtu ?? DEFAULT_MTU
  if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535) throw new Error(`bad MTU ${mtu}`)
  let link = await getLink(ctx, name)
  if (link && link.kind !== 'bridge') throw new Error(`${name} exists and is ${link.kind ? `a ${link.kind}` : 'not a bridge'}; remove it or choose another name`)
  const created = !link
  if (!link) {
    await ctx.run(ip.addBridge(name, mtu, opts.mac))
    ctx.log.info(`created bridge ${name} (mtu ${mtu})`)
  } else if (link.mtu !== mtu) {
    await ctx.run(ip.setMtu(name, mtu))
    ctx.log.info(`bridge ${name}: mtu ${link.mtu} → ${mtu}`)
  }
  await setBridgeSysctls(ctx, name)
  let captureDevice: string | undefined
  if (opts.sleeve ?? true) captureDevice = await ensureSleevePair(ctx, name, mtu)
  await ctx.run(ip.setUp(name))
  await ensureBridgeRules(ctx, name, opts.controlPort === undefined ? DEFAULT_CONTROL_PORT : opts.controlPort)
  link = await getLink(ctx, name)
  return { name, mtu, mac: link?.mac ?? '', created, captureDevice }
}

async function setBridgeSysctls(ctx: NetContext, name: string): Promise<void> {
  // IPv6 may be disabled on the host; then there is no accept_ra to turn off.
  const [raKey, raVal] = noRouterAdvertsSysctl(name)
  await bestEffort(ctx, sysctl.set(raKey, raVal), `bridge ${name}: could not disable router adverts`)
  // Short ARP timers: a container that moved to another host is found again within seconds.
  for (const [k, v] of bridgeArpSysctls(name)) await ctx.run(sysctl.set(k, v))
}

async function ensureSleevePair(ctx: NetContext, bridge: string, mtu: number): Promise<string> {
  let end = await getLink(ctx, SLEEVE_BRIDGE_END)
  let pcap = await getLink(ctx, SLEEVE_PCAP_END)
  if (end && (end.kind !== 'veth' || !pcap)) {
    // Half a pair, or something else under our name: start over.
    await ctx.run(ip.delLink(SLEEVE_BRIDGE_END))
    end = undefined
  }
  if (!end) {
    if (pcap) await ctx.run(ip.delLink(SLEEVE_PCAP_END))
    await ctx.run(ip.addVeth(SLEEVE_BRIDGE_END, SLEEVE_PCAP_END, mtu))
    end = await getLink(ctx, SLEEVE_BRIDGE_END)
    pcap = await getLink(ctx, SLEEVE_PCAP_END)
  }
  for (const l of [end, pcap]) if (l && l.mtu !== mtu) await ctx.run(ip.setMtu(l.name, mtu))
  if (end?.master !== bridge) await ctx.run(ip.setMaster(SLEEVE_BRIDGE_END, bridge))
  for (const dev of [SLEEVE_PCAP_END, SLEEVE_BRIDGE_END, bridge]) {
    await bestEffort(ctx, txOffloadOff(dev), `${dev}: could not turn off tx checksum offload (sleeve may send bad checksums)`)
  }
  await ctx.run(ip.setUp(SLEEVE_BRIDGE_END))
  await ctx.run(ip.setUp(SLEEVE_PCAP_END))
  return SLEEVE_PCAP_END
}

/** Our chains and the rules ensureBridge owns; idempotent, appends only what is missing. */
export async function ensureBridgeRules(ctx: NetContext, bridge: string, controlPort: number | null): Promise<void> {
  await ensureChain(ctx.run, CHAINS.forward.table, CHAINS.forward.chain)
  await ensureChain(ctx.run, CHAINS.expose.table, CHAINS.expose.chain)
  await ensureChain(ctx.run, CHAINS.nat.table, CHAINS.nat.chain)
  for (const r of forwardRules(bridge)) await ensureRule(ctx.run, r)
  if (controlPort != null) {
    await ensureChain(ctx.run, CHAINS.input.table, CHAINS.input.chain)
    for (const r of inputRules(controlPort)) await ensureRule(ctx.run, r)
  }
  for (const j of jumpRules({ controlPort })) await ensureRule(ctx.run, j, true)
}
