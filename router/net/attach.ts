/**
 * Attaching a container (or any network namespace) to the weave bridge:
 * `vethwepl<id>` on the bridge ⇄ `ethwe` in the container, with its addresses, the multicast
 * route and a gratuitous ARP; and undoing it.
 */
import { NetCommandError, Runner, inNetns } from './exec'
import { NetContext, NetnsRef, bestEffort, isNetnsGone, netnsRefPath, runIn } from './context'
import { Ipv4Cidr, formatCidr, networkOf, parseCidr, sameCidr } from './cidr'
import { Rule, containerMulticastAccept, containerMulticastDrop, deleteRule, ensureRule, iptables } from './iptables'
import { AddrInfo, CONTAINER_IFNAME, MULTICAST_ROUTE, bridgeArpSysctls, gratuitousArp, hostVethName, ip, isNoSuchDevice, noRouterAdvertsSysctl, parseAddrs, parseLinks, txOffloadOff } from './ip-args'
import { DEFAULT_BRIDGE, getLink } from './bridge'
import type { NativeNetlink } from '../native'
import { nativeAttach, nativeDelete } from './attach-native'

/**
 * Longest wait for the kernel's link watcher to mark both veth ends running (usually well under
 * a millisecond; seconds only for a kernel far behind).
 */
const LINK_WATCH_WAIT_MS = 1000

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
  /** Interface name in the namespace (default `ethwe`; a CNI runtime names it, e.g. `eth0`). */
  ifname?: string
  /** Hairpin mode on the host end (default true, as Weave's attach; CNI's `hairpinMode`). */
  hairpin?: boolean
  /**
   * Routes in the namespace via this interface, added after its addresses: `dst` a CIDR, `gw` an
   * address (none: on-link). A CNI pod's default route via the bridge's address.
   */
  routes?: RouteSpec[]
  /**
   * Turn tx checksum offload off on ethwe (default false). Sleeve takes frames with the kernel's
   * virtio header, so it carries TSO super-frames whole and fills in partial checksums itself;
   * turning offload off would make every container send frame by frame (about 8× slower).
   */
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

export interface RouteSpec { dst: string; gw?: string }

export interface DetachRequest {
  netns: NetnsRef
  containerId: string
  /** Default `ethwe`. */
  ifname?: string
  /** Remove attach's multicast rules too (default true; false when attach was told not to add them). */
  isolateMulticast?: boolean
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
export async function readEthwe(ctx: NetContext, ref: NetnsRef, ifname = CONTAINER_IFNAME): Promise<AddrInfo | undefined> {
  try {
    return parseAddrs((await runIn(ctx, ref, ip.addrShow(ifname))).stdout)[0]
  } catch (err) {
    if (err instanceof NetCommandError && (isNoSuchDevice(err.stderr) || isNetnsGone(err))) return undefined
    throw err
  }
}

export async function attach(ctx: NetContext, req: AttachRequest): Promise<AttachResult> {
  const want = req.addresses.map(parseCidr)
  const bridge = req.bridge ?? DEFAULT_BRIDGE
  const hostEnd = hostVethName(req.containerId)
  const nl = ctx.netlink?.()
  if (nl) {
    const r = await attachNewNative(ctx, nl, req, hostEnd, bridge, dedupe(want))
    if (r) return r
    // ethwe exists already: the rare re-attach goes the step-by-step way below.
  }
  const E = req.ifname ?? CONTAINER_IFNAME
  const current = await readEthwe(ctx, req.netns, E)
  if (!current) return attachNew(ctx, req, hostEnd, bridge, dedupe(want))
  // Already attached: add what is missing, step by step (rare, so no batching).
  await repairHostEnd(ctx, hostEnd, bridge)
  const added: Ipv4Cidr[] = []
  for (const c of want) {
    if (current.addresses.some((h) => sameCidr(h, c)) || added.some((h) => sameCidr(h, c))) continue
    await runIn(ctx, req.netns, ip.addAddr(E, c))
    added.push(c)
  }
  await runIn(ctx, req.netns, ip.setUp(E))
  if (req.multicastRoute ?? true) await runIn(ctx, req.netns, ip.multicastRoute(E))
  for (const r of req.routes ?? []) await runIn(ctx, req.netns, ip.route(E, r))
  if (req.isolateMulticast ?? true) await ensureMulticastRules(ctx, req.netns, [...current.addresses, ...added], E)
  await announce(ctx, req.netns, added, E)
  const all = [...current.addresses, ...added]
  return { mac: current.mac, addresses: all.map(formatCidr), added: added.map(formatCidr), created: false }
}

function dedupe(cs: Ipv4Cidr[]): Ipv4Cidr[] {
  return cs.filter((c, i) => cs.findIndex((d) => sameCidr(c, d)) === i)
}

/** One step of a script; an optional step's failure is ignored (`{ optional: argv }`). */
type Step = readonly string[] | { optional: readonly string[] }

/** A shell script running each argv in turn, stopping at the first failure; every word quoted. */
function script(steps: ReadonlyArray<Step>): string[] {
  const q = (w: string) => `'${w.replace(/'/g, `'\\''`)}'`
  const words = (c: readonly string[]) => c.map(q).join(' ')
  return ['sh', '-c', steps.map((st) => ('optional' in st ? `{ ${words(st.optional)} >/dev/null 2>&1 || true; }` : words(st))).join(' && ')]
}

/**
 * The common case without the native addon (attachNewNative does the same over netlink), in four
 * process runs instead of one per step (each `nsenter`/`ip` start costs milliseconds, and `docker
 * run` through the proxy waits for all of them): (1) in the container, create the pair with the
 * host end sent to us, set sysctls and multicast rules on the still-down ethwe; (2) on the host,
 * enslave and up the host end; (3) in the container, ethwe up, the multicast route and the
 * addresses, last, because weavewait lets the container's command run once ethwe is up with an
 * address; (4) the gratuitous ARP.
 */
async function attachNew(ctx: NetContext, req: AttachRequest, hostEnd: string, bridge: string, want: Ipv4Cidr[]): Promise<AttachResult> {
  const links = parseLinks((await ctx.run(ip.linkShow())).stdout)
  const br = links.find((l) => l.name === bridge)
  if (!br) throw new Error(`bridge ${bridge} does not exist: launch weave first`)
  if (links.some((l) => l.name === hostEnd)) {
    // A veth end lives exactly as long as its peer, so this one belongs to a live interface:
    // another container whose id starts with the same 7 characters. Never take it over.
    throw Object.assign(new Error(`${hostEnd} already exists (another container with the same id prefix?); not attaching`), { code: 'HOST_VETH_EXISTS' })
  }
  const mtu = req.mtu ?? br.mtu
  const E = req.ifname ?? CONTAINER_IFNAME
  const [raKey, raVal] = noRouterAdvertsSysctl(E)
  const sysctls = [[raKey, raVal] as [string, number], ...bridgeArpSysctls(E)].map(([k, v]) => `${k}=${v}`)
  const inContainer: string[][] = [
    ip.addVethPeerIn(E, hostEnd, mtu, ctx.hostNetns),
    ['sysctl', '-q', '-e', '-w', ...sysctls],
  ]
  if (req.isolateMulticast ?? true) inContainer.push(...addMulticastRulesArgv(want, E))
  const ns = netnsRefPath(req.netns)
  try {
    await ctx.run(inNetns(ns, script(inContainer)))
  } catch (err) {
    await bestEffort(ctx, inNetns(ns, ip.delLink(E)), 'cleanup after failed attach')
    throw err
  }
  let current: AddrInfo | undefined
  try {
    await ctx.run(script([ip.setMaster(hostEnd, bridge), ...((req.hairpin ?? true) ? [{ optional: ip.setHairpin(hostEnd) }] : []), ip.setUp(hostEnd)]))
    const up = await ctx.run(inNetns(ns, script([
      ...((req.txOffloadOff ?? false) ? [{ optional: txOffloadOff(E) }] : []),
      ip.setUp(E),
      ...((req.multicastRoute ?? true) ? [ip.multicastRoute(E)] : []),
      ...want.map((c) => ip.addAddr(E, c)),
      ...(req.routes ?? []).map((r) => ip.route(E, r)),
      ip.addrShow(E), // its JSON is the script's only output: the MAC and addresses we report
    ])))
    current = parseAddrs(up.stdout)[0]
  } catch (err) {
    await bestEffort(ctx, ip.delLink(hostEnd), 'cleanup after failed attach')
    throw err
  }
  if (!current) throw new Error(`${E} vanished right after it was created`)
  // Not awaited: neighbours learning the MAC a little later is harmless, the caller (a `docker
  // run` waiting on us) should not wait for it.
  void announce(ctx, req.netns, want, E)
  return { mac: current.mac, addresses: current.addresses.map(formatCidr), added: want.map(formatCidr), created: true }
}

/** nsfs path of the namespace `ctx.hostNetns` names; null when it is our own. */
function hostNetnsPath(ctx: NetContext): string | null {
  const h = ctx.hostNetns
  if (/^\d+$/.test(h)) return Number(h) === process.pid ? null : `/proc/${h}/ns/net`
  return netnsRefPath({ name: h })
}

/**
 * attachNew over netlink: the same steps and order without starting a process, except the
 * multicast iptables rules (iptables has no small kernel interface), which run as one
 * iptables-restore in the container while the netlink steps go on, and are waited for before
 * ethwe comes up. Runs in the netlink worker (attach-native.ts). Undefined when the container
 * already has ethwe (the caller takes the step-by-step path).
 */
async function attachNewNative(ctx: NetContext, nl: NativeNetlink, req: AttachRequest, hostEnd: string, bridge: string, want: Ipv4Cidr[]): Promise<AttachResult | undefined> {
  const E = req.ifname ?? CONTAINER_IFNAME
  const [mdst, mprefix] = MULTICAST_ROUTE.split('/')
  const isolate = req.isolateMulticast ?? true
  const r = await nativeAttach(nl, {
    hostNs: hostNetnsPath(ctx),
    ns: netnsRefPath(req.netns),
    ifname: E,
    bridge,
    hostEnd,
    mtu: req.mtu,
    addresses: want.map((a) => ({ ip: a.ip, prefix: a.prefix })),
    sysctls: [noRouterAdvertsSysctl(E), ...bridgeArpSysctls(E)].map(([k, v]) => [k, String(v)] as [string, string]),
    multicastRoute: (req.multicastRoute ?? true) ? [mdst, Number(mprefix)] : null,
    hairpin: req.hairpin ?? true,
    routes: (req.routes ?? []).map((r) => { const d = parseCidr(r.dst); return { dst: d.ip, prefix: d.prefix, gw: r.gw ?? null } }),
    rules: isolate ? multicastRulesRestore(want, 'add', E) : null,
    rulesUndo: isolate ? multicastRulesRestore(want, 'delete', E) : null,
    beforeUp: (req.txOffloadOff ?? false) ? txOffloadOff(E) : null,
    linkWatchWaitMs: LINK_WATCH_WAIT_MS,
  })
  if (r.kind === 'exists') return undefined
  for (const n of r.notes) ctx.log.debug(`attach ${hostEnd}: ${n}`)
  for (const w of r.warnings) ctx.log.warn(`attach ${hostEnd}: ${w}`)
  return { mac: r.mac, addresses: want.map(formatCidr), added: want.map(formatCidr), created: true }
}

/** The drop for multicast on ethwe, then an accept per subnet of `want` (inserted in front of it). */
function multicastRules(want: Ipv4Cidr[], ifname = CONTAINER_IFNAME): Rule[] {
  const nets = new Set<string>()
  const accepts: Rule[] = []
  for (const c of want) {
    if (nets.has(networkOf(c))) continue
    nets.add(networkOf(c))
    accepts.push(containerMulticastAccept(ifname, c))
  }
  return [containerMulticastDrop(ifname), ...accepts]
}

/**
 * multicastRules as one iptables-restore input (one process instead of a shell and one iptables
 * per rule); `delete` gives the input that removes them again.
 */
export function multicastRulesRestore(want: Ipv4Cidr[], mode: 'add' | 'delete' = 'add', ifname = CONTAINER_IFNAME): string {
  const q = (w: string) => (/^[\w./:-]+$/.test(w) ? w : `"${w}"`)
  const verb = (i: number) => (mode === 'delete' ? ['-D'] : i === 0 ? ['-A'] : ['-I'])
  const lines = multicastRules(want, ifname).map((r, i) => [...verb(i), r.chain, ...(mode === 'add' && i > 0 ? ['1'] : []), ...r.spec].map(q).join(' '))
  return `*filter\n${lines.join('\n')}\nCOMMIT\n`
}

function addMulticastRulesArgv(want: Ipv4Cidr[], ifname: string): string[][] {
  return multicastRules(want, ifname).map((r, i) => (i === 0 ? iptables.append(r) : iptables.insertFirst(r)))
}

/** argv running `argv` inside `ref` (for bestEffort, which takes plain argv). */
function inNs(ref: NetnsRef, argv: readonly string[]): string[] {
  return inNetns(netnsRefPath(ref), argv)
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
async function announce(ctx: NetContext, ref: NetnsRef, added: Ipv4Cidr[], ifname: string): Promise<void> {
  const tool = ctx.arping()
  if (tool === 'none') return
  for (const c of added) {
    await bestEffort(ctx, inNs(ref, gratuitousArp(tool, ifname, c)), `gratuitous ARP for ${formatCidr(c)}`)
  }
}

export async function detach(ctx: NetContext, req: DetachRequest): Promise<DetachResult> {
  const E = req.ifname ?? CONTAINER_IFNAME
  const current = await readEthwe(ctx, req.netns, E)
  if (!current) {
    // Container gone (its veth pair went with its namespace) or never attached. A host end named
    // like ours would belong to another live container: not ours to touch.
    return { removed: [], remaining: [], interfaceGone: true }
  }
  const drop = req.addresses ? req.addresses.map(parseCidr) : current.addresses
  const removed = current.addresses.filter((h) => drop.some((c) => sameCidr(h, c)))
  const remaining = current.addresses.filter((h) => !removed.includes(h))
  if (remaining.length === 0) {
    await runIn(ctx, req.netns, ip.delLink(E))
  } else {
    for (const c of removed) await runIn(ctx, req.netns, ip.delAddr(E, c))
  }
  if (req.isolateMulticast ?? true) await removeMulticastRules(ctx, req.netns, removed, remaining, E)
  return { removed: removed.map(formatCidr), remaining: remaining.map(formatCidr), interfaceGone: remaining.length === 0 }
}

/** A Runner whose commands run inside `ref` (for the iptables helpers). */
function runnerIn(ctx: NetContext, ref: NetnsRef): Runner {
  return (argv) => runIn(ctx, ref, argv)
}

/** The multicast drop on `ifname` and an accept per subnet of `addrs`, each added unless present. */
export async function ensureMulticastRules(ctx: NetContext, ref: NetnsRef, addrs: Ipv4Cidr[], ifname: string): Promise<void> {
  const run = runnerIn(ctx, ref)
  await ensureRule(run, containerMulticastDrop(ifname))
  for (const a of addrs) await ensureRule(run, containerMulticastAccept(ifname, a), true)
}

/** Accepts for subnets no remaining address is in; the drop too once ethwe is gone. */
async function removeMulticastRules(ctx: NetContext, ref: NetnsRef, removed: Ipv4Cidr[], remaining: Ipv4Cidr[], ifname: string): Promise<void> {
  const run = runnerIn(ctx, ref)
  const kept = new Set(remaining.map(networkOf))
  for (const a of removed) if (!kept.has(networkOf(a))) await deleteRule(run, containerMulticastAccept(ifname, a))
  if (remaining.length === 0) await deleteRule(run, containerMulticastDrop(ifname))
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

/**
 * Delete `ifname` in a namespace (CNI DEL): over netlink when the addon is built, else one `ip`.
 * True when it was there; a missing interface or namespace is not an error (DEL is idempotent).
 */
export async function removeLink(ctx: NetContext, ref: NetnsRef, ifname: string): Promise<boolean> {
  const nl = ctx.netlink?.()
  if (nl) return (await nativeDelete(nl, { ns: netnsRefPath(ref), ifname })) === 'deleted'
  try {
    await runIn(ctx, ref, ip.delLink(ifname))
    return true
  } catch (err) {
    if (err instanceof NetCommandError && (isNoSuchDevice(err.stderr) || isNetnsGone(err))) return false
    throw err
  }
}
