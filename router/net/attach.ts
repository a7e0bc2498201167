/**
 * Attaching a container (or any network namespace) to the weave bridge:
 * `vethwepl<id>` on the bridge ⇄ `ethwe` in the container, with its addresses, the multicast
 * route and a gratuitous ARP; and undoing it.
 */
import { NetCommandError, Runner, inNetns } from './exec'
import { NetContext, NetnsRef, bestEffort, isNetnsGone, netnsRefPath, runIn } from './context'
import { Ipv4Cidr, formatCidr, networkOf, parseCidr, sameCidr } from './cidr'
import { containerMulticastAccept, containerMulticastDrop, deleteRule, ensureRule } from './iptables'
import { AddrInfo, CONTAINER_IFNAME, bridgeArpSysctls, gratuitousArp, hostVethName, ip, isNoSuchDevice, noRouterAdvertsSysctl, parseAddrs, sysctl, txOffloadOff } from './ip-args'
import { DEFAULT_BRIDGE, getLink } from './bridge'

export interface AttachRequest {
  netns: NetnsRef
  /** Names the host end `vethwepl<first 7 chars>`; a Docker id, or a pid for plain namespaces. */
  containerId: string
  /** `a.b.c.d/n` each; those already on ethwe are kept, missing ones added. */
  addresses: string[]
  /** Default: the bridge's MTU. */
  mtu?: number
  /** Default `weave`. */
  bridge?: string
  /** Add `224.0.0.0/4 dev ethwe` (default true). */
  multicastRoute?: boolean
  /** Drop multicast on ethwe except from the container's own subnets (default true, as Weave). */
  isolateMulticast?: boolean
  /** Turn tx checksum offload off on ethwe (needed when frames may go through sleeve; default true). */
  txOffloadOff?: boolean
}

export interface AttachResult {
  /** MAC of ethwe. */
  mac: string
  /** Every IPv4 address now on ethwe. */
  addresses: string[]
  /** Addresses this call added. */
  added: string[]
  /** True when this call created the veth pair. */
  created: boolean
}

export interface DetachRequest {
  netns: NetnsRef
  containerId: string
  /** Remove only these; the interface goes with its last address. Default: remove the interface. */
  addresses?: string[]
}

export interface DetachResult {
  removed: string[]
  remaining: string[]
  /** True when the veth pair is gone after this call (deleted now or already absent). */
  interfaceGone: boolean
}

export interface AttachedTarget { id: string; netns: NetnsRef }
export interface AttachedInfo { id: string; mac: string; addresses: string[] }

/** ethwe in `ref`: undefined when it has none, or when the namespace itself is gone. */
async function readEthwe(ctx: NetContext, ref: NetnsRef): Promise<AddrInfo | undefined> {
  try {
    return parseAddrs((await runIn(ctx, ref, ip.addrShow(CONTAINER_IFNAME))).stdout)[0]
  } catch (err) {
    if (err instanceof NetCommandError && (isNoSuchDevice(err.stderr) || isNetnsGone(err))) return undefined
    throw err
  }
}

export async function attach(ctx: NetContext, req: AttachRequest): Promise<AttachResult> {
  const want = req.addresses.map(parseCidr)
  const bridge = req.bridge ?? DEFAULT_BRIDGE
  const hostEnd = hostVethName(req.containerId)
  let current = await readEthwe(ctx, req.netns)
  const created = !current
  if (!current) {
    const br = await getLink(ctx, bridge)
    if (!br) throw new Error(`bridge ${bridge} does not exist: launch weave first`)
    await createPair(ctx, req, hostEnd, bridge, req.mtu ?? br.mtu)
    current = await readEthwe(ctx, req.netns)
    if (!current) throw new Error(`${CONTAINER_IFNAME} vanished right after it was created`)
  } else {
    await repairHostEnd(ctx, hostEnd, bridge)
  }
  const added: Ipv4Cidr[] = []
  try {
    for (const c of want) {
      if (current.addresses.some((h) => sameCidr(h, c)) || added.some((h) => sameCidr(h, c))) continue
      await runIn(ctx, req.netns, ip.addAddr(CONTAINER_IFNAME, c))
      added.push(c)
    }
    await runIn(ctx, req.netns, ip.setUp(CONTAINER_IFNAME))
    if (req.multicastRoute ?? true) await runIn(ctx, req.netns, ip.multicastRoute(CONTAINER_IFNAME))
    if (req.isolateMulticast ?? true) await ensureMulticastRules(ctx, req.netns, [...current.addresses, ...added])
  } catch (err) {
    // A pair we just made and could not finish is removed, so a retry starts clean.
    if (created) await bestEffort(ctx, inNs(req.netns, ip.delLink(CONTAINER_IFNAME)), 'cleanup after failed attach')
    throw err
  }
  await announce(ctx, req.netns, added)
  const all = [...current.addresses, ...added]
  return { mac: current.mac, addresses: all.map(formatCidr), added: added.map(formatCidr), created }
}

/** argv running `argv` inside `ref` (for bestEffort, which takes plain argv). */
function inNs(ref: NetnsRef, argv: readonly string[]): string[] {
  return inNetns(netnsRefPath(ref), argv)
}

/**
 * The pair is created from inside the container's namespace with the host end sent straight to
 * ours: the container never sees a temporary name, and no name in it can clash but `ethwe`.
 */
async function createPair(ctx: NetContext, req: AttachRequest, hostEnd: string, bridge: string, mtu: number): Promise<void> {
  if (await getLink(ctx, hostEnd)) {
    // A veth end lives exactly as long as its peer, so this one belongs to a live interface:
    // another container whose id starts with the same 7 characters. Never take it over.
    throw Object.assign(new Error(`${hostEnd} already exists (another container with the same id prefix?); not attaching`), { code: 'HOST_VETH_EXISTS' })
  }
  await runIn(ctx, req.netns, ip.addVethPeerIn(CONTAINER_IFNAME, hostEnd, mtu, ctx.hostNetns))
  try {
    await ctx.run(ip.setMaster(hostEnd, bridge))
    await bestEffort(ctx, ip.setHairpin(hostEnd), `${hostEnd}: could not turn hairpin on`)
    await ctx.run(ip.setUp(hostEnd))
    const [raKey, raVal] = noRouterAdvertsSysctl(CONTAINER_IFNAME)
    await bestEffort(ctx, inNs(req.netns, sysctl.set(raKey, raVal)), 'ethwe: could not disable router adverts')
    for (const [k, v] of bridgeArpSysctls(CONTAINER_IFNAME)) await runIn(ctx, req.netns, sysctl.set(k, v))
    if (req.txOffloadOff ?? true) {
      await bestEffort(ctx, inNs(req.netns, txOffloadOff(CONTAINER_IFNAME)), 'ethwe: could not turn off tx checksum offload')
    }
  } catch (err) {
    await bestEffort(ctx, ip.delLink(hostEnd), 'cleanup after failed attach')
    throw err
  }
}

/** ethwe exists already: make sure its host end is still on the bridge (the bridge may be new). */
async function repairHostEnd(ctx: NetContext, hostEnd: string, bridge: string): Promise<void> {
  const l = await getLink(ctx, hostEnd)
  if (!l) {
    // Created by someone else under another host name; not ours to rename.
    ctx.log.warn(`ethwe exists but ${hostEnd} does not; leaving the existing pair as it is`)
    return
  }
  if (l.master !== bridge) await ctx.run(ip.setMaster(hostEnd, bridge))
  if (!l.up) await ctx.run(ip.setUp(hostEnd))
}

/** One gratuitous ARP per new address, so neighbours (and other hosts' bridges) learn the MAC now. */
async function announce(ctx: NetContext, ref: NetnsRef, added: Ipv4Cidr[]): Promise<void> {
  const tool = ctx.arping()
  if (tool === 'none') return
  for (const c of added) {
    await bestEffort(ctx, inNs(ref, gratuitousArp(tool, CONTAINER_IFNAME, c)), `gratuitous ARP for ${formatCidr(c)}`)
  }
}

export async function detach(ctx: NetContext, req: DetachRequest): Promise<DetachResult> {
  const current = await readEthwe(ctx, req.netns)
  if (!current) {
    // Container gone (its veth pair went with its namespace) or never attached. A host end named
    // like ours would belong to another live container: not ours to touch.
    return { removed: [], remaining: [], interfaceGone: true }
  }
  const drop = req.addresses ? req.addresses.map(parseCidr) : current.addresses
  const removed = current.addresses.filter((h) => drop.some((c) => sameCidr(h, c)))
  const remaining = current.addresses.filter((h) => !removed.includes(h))
  if (remaining.length === 0) {
    await runIn(ctx, req.netns, ip.delLink(CONTAINER_IFNAME))
  } else {
    for (const c of removed) await runIn(ctx, req.netns, ip.delAddr(CONTAINER_IFNAME, c))
  }
  await removeMulticastRules(ctx, req.netns, removed, remaining)
  return { removed: removed.map(formatCidr), remaining: remaining.map(formatCidr), interfaceGone: remaining.length === 0 }
}

/** A Runner whose commands run inside `ref` (for the iptables helpers). */
function runnerIn(ctx: NetContext, ref: NetnsRef): Runner {
  return (argv) => runIn(ctx, ref, argv)
}

async function ensureMulticastRules(ctx: NetContext, ref: NetnsRef, addrs: Ipv4Cidr[]): Promise<void> {
  const run = runnerIn(ctx, ref)
  await ensureRule(run, containerMulticastDrop(CONTAINER_IFNAME))
  for (const a of addrs) await ensureRule(run, containerMulticastAccept(CONTAINER_IFNAME, a), true)
}

/** Accepts for subnets no remaining address is in; the drop too once ethwe is gone. */
async function removeMulticastRules(ctx: NetContext, ref: NetnsRef, removed: Ipv4Cidr[], remaining: Ipv4Cidr[]): Promise<void> {
  const run = runnerIn(ctx, ref)
  const kept = new Set(remaining.map(networkOf))
  for (const a of removed) if (!kept.has(networkOf(a))) await deleteRule(run, containerMulticastAccept(CONTAINER_IFNAME, a))
  if (remaining.length === 0) await deleteRule(run, containerMulticastDrop(CONTAINER_IFNAME))
}

/** MAC and addresses of ethwe in each target; targets without ethwe (or gone) are left out. */
export async function listAttached(ctx: NetContext, targets: AttachedTarget[]): Promise<AttachedInfo[]> {
  const out: AttachedInfo[] = []
  for (const t of targets) {
    const e = await readEthwe(ctx, t.netns)
    if (e) out.push({ id: t.id, mac: e.mac, addresses: e.addresses.map(formatCidr) })
  }
  return out
}
