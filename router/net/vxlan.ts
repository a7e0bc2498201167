/**
 * The kernel vxlan path's host side: the vxlan device `vxlan-6784` on the weave bridge, its fdb
 * (which the router fills: no kernel learning), and the bridge's view of our local MACs.
 *
 * Two ports of the bridge lead off the host: the sleeve's `vethwe-bridge` and `vxlan-6784`. Both
 * are `isolated`: the bridge never passes a frame from one to the other, so a frame that came
 * through the tunnel is not sent on by the sleeve (or the reverse) — every peer gets a broadcast
 * once, from its origin, and nothing loops. `learning off` on the vxlan port: the router installs
 * both entries a remote MAC needs (bridge: MAC → vxlan port; vxlan: MAC → the peer's address),
 * and removes them together when the peer falls back to the sleeve.
 */
import { NetCommandError } from './exec'
import type { NetContext } from './context'
import { getLink, SLEEVE_BRIDGE_END } from './bridge'
import { ip, isNoSuchDevice } from './ip-args'

export const KERNEL_VXLAN_DEV = 'vxlan-6784'
export const KERNEL_VXLAN_PORT = 6784
/** Our VNI ('WEA'): the kernel path uses one key; the peers are told apart by address. */
export const KERNEL_VXLAN_VNI = 0x574541
const ZERO_MAC = '00:00:00:00:00:00'

export type FdbOp =
  | { op: 'add-flood'; ip: string }
  | { op: 'del-flood'; ip: string }
  | { op: 'set-mac'; mac: string; ip: string }
  | { op: 'del-mac'; mac: string }

export interface VxlanOptions { bridge: string; mtu: number }

/** The `bridge`/`ip` commands of one fdb change. Pure. */
export function fdbCommands(o: FdbOp, dev = KERNEL_VXLAN_DEV): string[][] {
  switch (o.op) {
    case 'add-flood': return [['bridge', 'fdb', 'append', ZERO_MAC, 'dev', dev, 'dst', o.ip, 'self', 'permanent']]
    case 'del-flood': return [['bridge', 'fdb', 'del', ZERO_MAC, 'dev', dev, 'dst', o.ip, 'self']]
    case 'set-mac': return [
      ['bridge', 'fdb', 'replace', o.mac, 'dev', dev, 'dst', o.ip, 'self', 'permanent'],
      ['bridge', 'fdb', 'replace', o.mac, 'dev', dev, 'master', 'static'],
    ]
    case 'del-mac': return [['bridge', 'fdb', 'del', o.mac, 'dev', dev, 'self'], ['bridge', 'fdb', 'del', o.mac, 'dev', dev, 'master']]
  }
}

/** Make (or remake) vxlan-6784 on the bridge, isolated from the sleeve's port, up. */
export async function ensureKernelVxlan(ctx: NetContext, o: VxlanOptions): Promise<void> {
  const dev = KERNEL_VXLAN_DEV
  // whatever a killed daemon left (its fdb entries point at peers that may have gone)
  if (await getLink(ctx, dev)) await ctx.run(ip.delLink(dev))
  await ctx.run(['ip', 'link', 'add', 'name', dev, 'mtu', String(o.mtu), 'type', 'vxlan', 'id', String(KERNEL_VXLAN_VNI),
    'dstport', String(KERNEL_VXLAN_PORT), 'nolearning'])
  try {
    await ctx.run(ip.setMaster(dev, o.bridge))
    await ctx.run(['bridge', 'link', 'set', 'dev', dev, 'isolated', 'on', 'learning', 'off'])
    await ctx.run(['bridge', 'link', 'set', 'dev', SLEEVE_BRIDGE_END, 'isolated', 'on'])
    await ctx.run(ip.setUp(dev))
  } catch (err) {
    await ctx.run(ip.delLink(dev)).catch(() => undefined) // leave nothing half-made
    throw err
  }
}

/** Remove vxlan-6784 (its fdb goes with it); fine when it is not there. */
export async function removeKernelVxlan(ctx: NetContext): Promise<boolean> {
  try {
    await ctx.run(ip.delLink(KERNEL_VXLAN_DEV))
    return true
  } catch (err) {
    if (err instanceof NetCommandError && isNoSuchDevice(err.stderr)) return false
    throw err
  }
}

/** Carry out fdb changes in order; a removal of what is already gone is no error. */
export async function applyFdb(ctx: NetContext, ops: readonly FdbOp[]): Promise<void> {
  for (const o of ops) {
    for (const argv of fdbCommands(o)) {
      try {
        await ctx.run(argv)
      } catch (err) {
        if (argv[2] === 'del' && err instanceof NetCommandError && /No such file|not found|Cannot find/i.test(err.stderr)) continue
        if (argv[2] === 'append' && err instanceof NetCommandError && /File exists/i.test(err.stderr)) continue
        throw err
      }
    }
  }
}

interface FdbRow { mac?: string; ifname?: string; master?: string; state?: string; flags?: string[] }

/**
 * MACs the bridge learnt on its local ports (containers), from `bridge -j fdb show br BRIDGE`:
 * not on the ports that lead off the host, not its own permanent entries. Pure.
 */
export function parseLocalMacs(json: string, bridge: string, offHost: readonly string[]): string[] {
  let rows: FdbRow[]
  try { rows = JSON.parse(json) as FdbRow[] } catch { return [] }
  if (!Array.isArray(rows)) return []
  const out = new Set<string>()
  for (const r of rows) {
    if (!r.mac || r.master !== bridge || r.state === 'permanent' || (r.flags ?? []).includes('self')) continue
    if (r.ifname === undefined || offHost.includes(r.ifname)) continue
    if (parseInt(r.mac.slice(0, 2), 16) & 1) continue // group addresses
    out.add(r.mac.toLowerCase())
  }
  return [...out]
}

/** The bridge's learnt local MACs now. */
export async function localMacs(ctx: NetContext, bridge: string): Promise<string[]> {
  const r = await ctx.run(['bridge', '-j', 'fdb', 'show', 'br', bridge])
  return parseLocalMacs(r.stdout, bridge, [KERNEL_VXLAN_DEV, SLEEVE_BRIDGE_END, 'vethwe-datapath'])
}
