/**
 * The `weave` Linux bridge and, in sleeve mode, the `vethwe-bridge` ⇄ `vethwe-pcap` pair through
 * which the router takes frames off the bridge and puts them back; plus the sysctls and iptables
 * rules the bridge needs.
 */
import { NetCommandError } from './exec'
import { NetContext, bestEffort } from './context'
import { LinkInfo, bridgeArpSysctls, ip, isNoSuchDevice, noRouterAdvertsSysctl, parseLinks, sysctl, txOffloadOff } from './ip-args'
import { CHAINS, allInPlace, ensureChain, ensureRule, forwardRules, inputRules, jumpRules } from './iptables'

export const DEFAULT_BRIDGE = 'weave'
/** 1460 (GCE) − 20 IP − 8 UDP − 8 VXLAN − 14 Ethernet − 34 ESP: fits every overlay path. */
export const DEFAULT_MTU = 1376
/** Bridge end of the pair that links the weave bridge to the router (sleeve) or to OVS (fastdp). */
export const SLEEVE_BRIDGE_END = 'vethwe-bridge'
/** Far end for sleeve: the router captures and injects frames here with a packet socket. */
export const SLEEVE_PCAP_END = 'vethwe-pcap'
/** Far end for fastdp: a port of the OVS `datapath` bridge (added by router/ovsdb). */
export const DATAPATH_END = 'vethwe-datapath'

/** With OVS: the datapath's port towards the router; its peer is SLEEVE_PCAP_END, where the sleeve captures. */
export const OVS_ROUTER_END = 'vethwe-ovsrtr'

/**
 * What the bridge is linked to: the sleeve router (`pcap`), the OVS datapath, both in series
 * (`ovs`: bridge ⇄ datapath, and datapath ⇄ vethwe-ovsrtr ⇄ vethwe-pcap ⇄ router), or nothing.
 */
export type RouterLink = 'pcap' | 'datapath' | 'ovs' | 'none'
const FAR_END: Record<'pcap' | 'datapath', string> = { pcap: SLEEVE_PCAP_END, datapath: DATAPATH_END }
/** Port of the control API on 127.0.0.1 that the INPUT rule protects. */
export const DEFAULT_CONTROL_PORT = 6784

export interface BridgeOptions {
  /** Default `weave`. */
  name?: string
  /** Default 1376; an existing bridge with another MTU is changed to this one. */
  mtu?: number
  /** MAC for a newly created bridge (Weave uses the peer name); an existing bridge keeps its own. */
  mac?: string
  /**
   * `pcap` (default): the vethwe-bridge ⇄ vethwe-pcap pair for the sleeve router;
   * `datapath`: vethwe-bridge ⇄ vethwe-datapath for OVS (fastdp), replacing a pcap pair;
   * `ovs`: as `datapath`, plus vethwe-ovsrtr (for the OVS bridge) ⇄ vethwe-pcap (for the sleeve)
   *   so that one egress, the datapath, hands the sleeve what it cannot tunnel;
   * `none`: leave whatever pair exists alone.
   */
  routerLink?: RouterLink
  /** Protect this TCP port on 127.0.0.1 from non-local packets; null for no INPUT rule. Default 6784. */
  controlPort?: number | null
}

export interface BridgeInfo {
  name: string
  mtu: number
  mac: string
  /** True when this call created the bridge, false when it reused one. */
  created: boolean
  /** The interface the sleeve router captures on and injects into (routerLink `pcap`). */
  captureDevice?: string
  /** The interface to add to the OVS datapath (routerLink `datapath` or `ovs`). */
  datapathPort?: string
  /** The datapath's port towards the router (routerLink `ovs`). */
  routerPort?: string
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
  const routerLink = opts.routerLink ?? 'pcap'
  if (routerLink === 'pcap' || routerLink === 'datapath') await ensureRouterPair(ctx, name, mtu, routerLink)
  if (routerLink === 'ovs') {
    await ensureRouterPair(ctx, name, mtu, 'datapath')
    await ensureOvsRouterPair(ctx, mtu)
  }
  await ctx.run(ip.setUp(name))
  await ensureBridgeRules(ctx, name, opts.controlPort === undefined ? DEFAULT_CONTROL_PORT : opts.controlPort)
  link = await getLink(ctx, name)
  const info: BridgeInfo = { name, mtu, mac: link?.mac ?? '', created }
  if (routerLink === 'pcap') info.captureDevice = SLEEVE_PCAP_END
  if (routerLink === 'datapath') info.datapathPort = DATAPATH_END
  if (routerLink === 'ovs') Object.assign(info, { captureDevice: SLEEVE_PCAP_END, datapathPort: DATAPATH_END, routerPort: OVS_ROUTER_END })
  return info
}

async function setBridgeSysctls(ctx: NetContext, name: string): Promise<void> {
  // IPv6 may be disabled on the host; then there is no accept_ra to turn off.
  const [raKey, raVal] = noRouterAdvertsSysctl(name)
  await bestEffort(ctx, sysctl.set(raKey, raVal), `bridge ${name}: could not disable router adverts`)
  // Short ARP timers: a container that moved to another host is found again within seconds.
  for (const [k, v] of bridgeArpSysctls(name)) await ctx.run(sysctl.set(k, v))
}

/** vethwe-ovsrtr ⇄ vethwe-pcap (neither on the Linux bridge); made after ensureRouterPair('datapath'), which removes a pcap pair. */
async function ensureOvsRouterPair(ctx: NetContext, mtu: number): Promise<void> {
  let a = await getLink(ctx, OVS_ROUTER_END)
  let b = await getLink(ctx, SLEEVE_PCAP_END)
  if (a && (a.kind !== 'veth' || !b)) { await ctx.run(ip.delLink(OVS_ROUTER_END)); a = undefined }
  if (!a) {
    if (b) await ctx.run(ip.delLink(SLEEVE_PCAP_END))
    await ctx.run(ip.addVeth(OVS_ROUTER_END, SLEEVE_PCAP_END, mtu))
    a = await getLink(ctx, OVS_ROUTER_END)
    b = await getLink(ctx, SLEEVE_PCAP_END)
  }
  for (const l of [a, b]) if (l && l.mtu !== mtu) await ctx.run(ip.setMtu(l.name, mtu))
  // OVS reads and writes this pair without virtio headers: what the sleeve injects as TSO
  // super-frames is segmented by the kernel on the way (and checksummed) before OVS sees it.
  for (const dev of [SLEEVE_PCAP_END, OVS_ROUTER_END]) {
    await bestEffort(ctx, txOffloadOff(dev), `${dev}: could not turn off tx checksum offload (sleeve may send bad checksums)`)
  }
  await ctx.run(ip.setUp(OVS_ROUTER_END))
  await ctx.run(ip.setUp(SLEEVE_PCAP_END))
}

async function ensureRouterPair(ctx: NetContext, bridge: string, mtu: number, kind: 'pcap' | 'datapath'): Promise<void> {
  const farName = FAR_END[kind]
  const otherFar = FAR_END[kind === 'pcap' ? 'datapath' : 'pcap']
  // Switching modes: the other pair goes (deleting one end of a veth deletes both).
  if (await getLink(ctx, otherFar)) await ctx.run(ip.delLink(otherFar))
  let end = await getLink(ctx, SLEEVE_BRIDGE_END)
  let far = await getLink(ctx, farName)
  if (end && (end.kind !== 'veth' || !far)) {
    // Half a pair, or something else under our name: start over.
    await ctx.run(ip.delLink(SLEEVE_BRIDGE_END))
    end = undefined
  }
  if (!end) {
    if (far) await ctx.run(ip.delLink(farName))
    await ctx.run(ip.addVeth(SLEEVE_BRIDGE_END, farName, mtu))
    end = await getLink(ctx, SLEEVE_BRIDGE_END)
    far = await getLink(ctx, farName)
  }
  for (const l of [end, far]) if (l && l.mtu !== mtu) await ctx.run(ip.setMtu(l.name, mtu))
  if (end?.master !== bridge) await ctx.run(ip.setMaster(SLEEVE_BRIDGE_END, bridge))
  // Sleeve-only (pcap): offloads stay on. The sleeve's packet socket reads each frame with its
  // virtio header, so TSO super-frames cross the bridge whole and partial checksums are filled in
  // by the router; turning tx offload off here would make the bridge segment everything.
  await ctx.run(ip.setUp(SLEEVE_BRIDGE_END))
  await ctx.run(ip.setUp(farName))
}

/**
 * Our chains and the rules ensureBridge owns; idempotent, appends only what is missing and returns
 * how many chains and rules it had to (re)create: the daemon calls it periodically, since a
 * firewall reload (firewalld, `iptables -F`) can wipe them under a running network.
 */
export async function ensureBridgeRules(ctx: NetContext, bridge: string, controlPort: number | null): Promise<number> {
  const chains = [CHAINS.forward, CHAINS.expose, CHAINS.nat, ...(controlPort != null ? [CHAINS.input] : [])]
  const rules = [...forwardRules(bridge), ...(controlPort != null ? inputRules(controlPort) : [])]
  const jumps = jumpRules({ controlPort })
  // The periodic re-check: one iptables-save per table when all is in place (the usual case),
  // instead of one process per chain and rule every few seconds on an idle host.
  if (await allInPlace(ctx.run, chains, [...rules, ...jumps])) return 0
  let n = 0
  const count = (added: boolean) => { if (added) n++ }
  for (const c of chains) count(await ensureChain(ctx.run, c.table, c.chain))
  for (const r of rules) count(await ensureRule(ctx.run, r))
  for (const j of jumps) count(await ensureRule(ctx.run, j, true))
  return n
}
