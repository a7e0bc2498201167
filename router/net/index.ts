/**
 * Public door of router/net: host plumbing for the data plane.
 *
 * Attaching a new container goes over netlink with the native addon when it is built
 * (router/native/netlink.c: no process but one iptables-restore, started by vfork (ns-exec.c) so the daemon
 * is not forked); everything else, and attach without the addon, runs the host's own tools
 * (`ip`, `sysctl`, `iptables`, `ethtool`, `nsenter`, `arping`/busybox) through
 * child_process.execFile, never a shell (`sh -c` only for quoted batches); a failed command throws a
 * NetCommandError (code NET_COMMAND_FAILED) naming the command and its stderr. All operations are
 * idempotent, and one NetHost runs them one at a time. Other error codes: BAD_CIDR (CidrError),
 * HOST_VETH_EXISTS (attach found `vethwepl<id>` taken by another container with the same id prefix).
 *
 * Where the daemon calls these (router/weaver.ts, `// ---- overlay ----`):
 *   const net = createNetHost({ logger })            // no I/O yet
 *   const br = await net.ensureBridge({ mtu, mac: peerName, routerLink: fastdp ? 'datapath' : 'pcap' })
 *   // sleeve captures/injects on br.captureDevice ('vethwe-pcap'); fastdp adds br.datapathPort
 *   // ('vethwe-datapath') to the OVS bridge through router/ovsdb
 *   every 10 s: await net.ensureRules()                              // re-adds rules a reload wiped
 *   await net.attach({ netns: { pid }, containerId, addresses })   // weave attach / proxy start
 *   await net.detach({ netns: { pid }, containerId, addresses })   // weave detach
 *   await net.listAttached(targets)                                // weave ps
 *   await net.expose('10.32.0.254/12'); await net.hide('10.32.0.254/12')
 *   await net.resetHost()                                          // weave reset
 */
import type { Logger } from '../deps'
import { nullLogger } from '../deps'
import { Runner, createRunner } from './exec'
import { NetContext, NetnsRef, detectArping } from './context'
import { applyFdb, ensureKernelVxlan, KERNEL_VXLAN_PORT, localMacs, removeKernelVxlan, type FdbOp, type VxlanOptions } from './vxlan'
import { ensureVxlanCounters, readVxlanCounters, removeVxlanCounters, updateVxlanCounters, type PathTraffic } from './vxlan-counters'
import { BridgeInfo, BridgeOptions, DEFAULT_BRIDGE, DEFAULT_CONTROL_PORT, ensureBridge, ensureBridgeRules } from './bridge'
import { AttachRequest, AttachResult, AttachedInfo, AttachedTarget, DetachRequest, DetachResult, attach, detach, listAttached, readEthwe, removeLink } from './attach'
import { ExposeOptions, ExposeResult, HideResult, bridgeAddresses, bridgeInfo, expose, hide } from './expose'
import { ResetResult, resetHost } from './reset'
import { formatCidr } from './cidr'
import { sysctl } from './ip-args'
import { nativeNetlink, type NativeNetlink } from '../native'
import { warmUpNativeAttach } from './attach-native'
import { AnnounceOptions, EndpointVeth, EndpointVethRequest, addEndpointVeth, announceIn, delEndpointVeth } from './endpoint-veth'
import { parseCidr as parseCidrStrict } from './cidr'

export { NetCommandError, createRunner, inNetns, netnsPath } from './exec'
export type { Runner, RunResult, RunnerOptions } from './exec'
export type { NetnsRef } from './context'
export { netnsRefPath } from './context'
export { CidrError, parseCidr, networkOf } from './cidr'
export type { Ipv4Cidr } from './cidr'
export { KERNEL_VXLAN_DEV, KERNEL_VXLAN_PORT, KERNEL_VXLAN_VNI, fdbCommands, parseLocalMacs } from './vxlan'
export type { FdbOp, VxlanOptions } from './vxlan'
export { TRAFFIC_TABLE, VXLAN_UNDERLAY_BYTES, countersPeersScript, countersTableScript, parseCounters } from './vxlan-counters'
export type { PathTraffic } from './vxlan-counters'
export { DEFAULT_BRIDGE, DEFAULT_MTU, DEFAULT_CONTROL_PORT, SLEEVE_BRIDGE_END, SLEEVE_PCAP_END, DATAPATH_END } from './bridge'
export type { BridgeInfo, BridgeOptions, RouterLink } from './bridge'
export type { AttachRequest, AttachResult, AttachedInfo, AttachedTarget, DetachRequest, DetachResult, RouteSpec } from './attach'
export type { ExposeOptions, ExposeResult, HideResult } from './expose'
export type { ResetResult } from './reset'
export { CONTAINER_IFNAME, hostVethName } from './ip-args'
export type { AnnounceOptions, EndpointVeth, EndpointVethRequest } from './endpoint-veth'
export { endpointPeerName } from './endpoint-veth'
export { createXfrm, probeEsp, removeAllEsp, ESP_KEY_BYTES } from './xfrm'
export type { Xfrm, EspSa, XfrmOp } from './xfrm'

/** The id `weave ps` shows for the host's own exposed addresses. */
export const EXPOSE_ID = 'weave:expose'

/** One `weave ps` line: `id MAC cidr…`. */
export function formatPsLine(info: AttachedInfo): string {
  // Docker's short form for container IDs, as Weave prints them
  const id = /^[0-9a-f]{64}$/.test(info.id) ? info.id.slice(0, 12) : info.id
  return [id, info.mac, ...info.addresses].join(' ')
}

export interface NetHostOptions {
  /**
   * Run everything inside this named network namespace instead of our own (lab hosts in tests;
   * iptables then changes only that namespace). Ignored when `run` is given.
   */
  netns?: string
  /** Replace the command runner (unit tests record argv instead). */
  run?: Runner
  /** How container-side commands name our namespace to `ip ... netns`; default netns or our pid. */
  hostNetns?: string
  /** Gratuitous ARP tool; default: `arping` if in a system bin directory, else busybox, else none. */
  arping?: 'busybox' | 'arping' | 'none'
  /**
   * Attach over netlink with the native addon when it is built (default true unless `run` is
   * given: a recording runner must see every change as argv).
   */
  native?: boolean
  logger?: Logger
}

export interface NetHost {
  /** Create or reuse the bridge (and sleeve pair), fix its MTU, sysctls, iptables chains and rules. */
  ensureBridge(opts?: BridgeOptions): Promise<BridgeInfo>
  /**
   * Re-create any of ensureBridge's iptables chains/rules that vanished (a firewall reload);
   * returns how many it added, 0 when all were in place. Cheap enough to run every ~10 s.
   */
  ensureRules(opts?: { bridge?: string; controlPort?: number | null }): Promise<number>
  /** Give the namespace an `ethwe` on the bridge with `addresses`; idempotent; returns the MAC. */
  attach(req: AttachRequest): Promise<AttachResult>
  /** Remove addresses from ethwe; the interface goes with its last one (or all when none given). */
  detach(req: DetachRequest): Promise<DetachResult>
  /**
   * `weave ps`: first the bridge (MAC and exposed addresses, as `weave:expose`, whenever the
   * bridge exists), then the ethwe MAC and addresses of each target that has one.
   */
  listAttached(targets: AttachedTarget[], opts?: { bridge?: string }): Promise<AttachedInfo[]>
  /**
   * MAC and IPv4 addresses of `ifname` (default ethwe) in a namespace; undefined when it has no
   * such interface or the namespace is gone (CNI's CHECK).
   */
  inspect(netns: NetnsRef, ifname?: string): Promise<{ mac: string; addresses: string[] } | undefined>
  /**
   * Delete `ifname` in a namespace, its veth peer with it, and nothing else (CNI DEL; no multicast
   * rules to undo); false when it or the namespace was gone already.
   */
  removeLink(netns: NetnsRef, ifname: string): Promise<boolean>
  /** The bridge's own IPv4 addresses (what expose gave it), `a.b.c.d/n` each. */
  bridgeAddresses(opts?: { bridge?: string }): Promise<string[]>
  /**
   * net.ipv4.ip_forward=1: pods whose default route is the bridge's address reach other hosts
   * (and portmap's DNAT reaches them) only through the host's forwarding, as with Docker's bridge.
   */
  enableIpForwarding(): Promise<void>
  /** Address on the bridge + MASQUERADE and WEAVE-EXPOSE accept for its subnet. */
  expose(cidr: string, opts?: ExposeOptions): Promise<ExposeResult>
  /** Undo expose: the address and every rule it added. */
  hide(cidr: string, opts?: { bridge?: string }): Promise<HideResult>
  /** Delete the bridge, all vethwe* links, vxlan-6784, our iptables chains and the jumps into them. */
  resetHost(opts?: { bridge?: string }): Promise<ResetResult>
  /**
   * The Docker plugin's attach: a veth pair with its host end on the bridge and the other end
   * left here for Docker to move into the container (see endpoint-veth.ts); idempotent.
   */
  addEndpointVeth(req: EndpointVethRequest): Promise<EndpointVeth>
  /** Remove an endpoint's pair; false when it was already gone. */
  delEndpointVeth(endpointId: string): Promise<boolean>
  /**
   * In a started container: ethwe's sysctls, the multicast isolation rules and a gratuitous ARP, on
   * whichever interface holds each address (`fresh`: the namespace is new, see AnnounceOptions).
   */
  announceIn(netns: NetnsRef, addresses: string[], opts?: AnnounceOptions): Promise<void>
  /** The kernel vxlan path's device and fdb (see vxlan.ts). */
  readonly kernelVxlan: {
    ensure(o: VxlanOptions): Promise<void>
    remove(): Promise<boolean>
    applyFdb(ops: readonly FdbOp[]): Promise<void>
    localMacs(bridge?: string): Promise<string[]>
    /** Per-peer nftables counters of the path's datagrams (see vxlan-counters.ts). */
    readonly counters: {
      /** Make the table afresh; heartbeats (inner `heartbeatEthertype`) are not counted. */
      ensure(heartbeatEthertype: number): Promise<void>
      /** Count traffic with the underlay addresses `add`; stop counting (and forget) `del`. */
      update(add: readonly string[], del: readonly string[]): Promise<void>
      /** Inner-frame bytes and packets by peer address since its counter was made. */
      read(): Promise<Map<string, PathTraffic>>
      remove(): Promise<boolean>
    }
  }
}

/**
 * Build a NetHost; does no I/O until a method is called. Calls run one at a time, in call order:
 * every operation is check-then-change (`iptables -C` then `-A`, "has ethwe?" then create), and
 * two of them interleaved could add a rule twice or race on one container's veth.
 */
export function createNetHost(opts: NetHostOptions = {}): NetHost {
  let tail: Promise<unknown> = Promise.resolve()
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = tail.then(fn, fn)
    tail = p.catch(() => undefined)
    return p
  }
  let arping = opts.arping
  const useNative = opts.native ?? !opts.run
  let netlink: NativeNetlink | undefined | null = useNative ? null : undefined // null: not loaded yet
  const ctx: NetContext = {
    run: opts.run ?? createRunner({ netns: opts.netns }),
    log: (opts.logger ?? nullLogger).child('net'),
    hostNetns: opts.hostNetns ?? opts.netns ?? String(process.pid),
    arping: () => (arping ??= detectArping()),
    netlink: () => (netlink === null ? (netlink = nativeNetlink()) : netlink),
  }
  return {
    ensureBridge: (o) => {
      if (ctx.netlink?.()) warmUpNativeAttach() // attaches follow a bridge; a worker's start should not fall on one
      return serial(() => ensureBridge(ctx, o))
    },
    ensureRules: (o = {}) => serial(() => ensureBridgeRules(ctx, o.bridge ?? DEFAULT_BRIDGE, o.controlPort === undefined ? DEFAULT_CONTROL_PORT : o.controlPort)),
    attach: (req) => serial(() => attach(ctx, req)),
    detach: (req) => serial(() => detach(ctx, req)),
    listAttached: (targets, o = {}) => serial(async () => {
      const out = await listAttached(ctx, targets)
      // As Weave's: the bridge's line first, with its MAC even when nothing is exposed
      const br = await bridgeInfo(ctx, o.bridge)
      if (br) out.unshift({ id: EXPOSE_ID, mac: br.mac, addresses: br.addresses.map(formatCidr) })
      return out
    }),
    inspect: (netns, ifname) => serial(async () => {
      const e = await readEthwe(ctx, netns, ifname)
      return e && { mac: e.mac, addresses: e.addresses.map(formatCidr) }
    }),
    removeLink: (netns, ifname) => serial(() => removeLink(ctx, netns, ifname)),
    bridgeAddresses: (o = {}) => serial(async () => (await bridgeAddresses(ctx, o.bridge)).map(formatCidr)),
    enableIpForwarding: () => serial(async () => { await ctx.run(sysctl.set('net.ipv4.ip_forward', 1)) }),
    expose: (cidr, o) => serial(() => expose(ctx, cidr, o)),
    hide: (cidr, o) => serial(() => hide(ctx, cidr, o)),
    resetHost: (o) => serial(() => resetHost(ctx, o)),
    addEndpointVeth: (req) => serial(() => addEndpointVeth(ctx, req)),
    // Not serialised: it removes names only this endpoint uses, and takes tens of ms.
    delEndpointVeth: (id) => delEndpointVeth(ctx, id),
    // Not serialised: it only touches the container's namespace, and an ARP may take a second.
    announceIn: (ns, addrs, opts) => announceIn(ctx, ns, addrs.map(parseCidrStrict), opts),
    // fdb changes and MAC reads run beside attach: they touch only vxlan-6784's and the bridge's fdb
    kernelVxlan: {
      ensure: (o) => serial(() => ensureKernelVxlan(ctx, o)),
      remove: () => serial(() => removeKernelVxlan(ctx)),
      applyFdb: (ops) => applyFdb(ctx, ops),
      localMacs: (bridge) => localMacs(ctx, bridge ?? DEFAULT_BRIDGE),
      // nft transactions of their own table: nothing else of ours touches it
      counters: {
        ensure: (ethertype) => ensureVxlanCounters(ctx, KERNEL_VXLAN_PORT, ethertype),
        update: (add, del) => updateVxlanCounters(ctx, add, del),
        read: () => readVxlanCounters(ctx),
        remove: () => removeVxlanCounters(ctx),
      },
    },
  }
}
