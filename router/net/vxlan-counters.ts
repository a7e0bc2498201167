/**
 * Per-peer traffic counters of the kernel vxlan path, kept by the kernel: the router never sees
 * the path's packets, so nftables counts them. One table of ours, `ip weave_traffic`, in the
 * host's namespace: a named counter per peer and direction, chosen by the peer's underlay
 * address through a map (`counter name ip daddr map @tx`), on the encapsulated UDP 6784 datagrams
 * leaving (output hook) and arriving (input hook, after the filter table: what a firewall drops
 * is not counted as received). The heartbeats (inner ethertype 0x88b5, 28 bytes into the UDP
 * datagram) are left out: they are the path's control traffic, as the sleeve leaves out its own.
 *
 * Read with one `nft -j list counters` per scrape; peers come and go by set changes, so the table
 * holds exactly the connected peers (bounded). The table goes with the device (stop, `weave
 * reset`): a counter table without its router would only count.
 */
import type { NetContext } from './context'
import { NetCommandError } from './exec'

export const TRAFFIC_TABLE = 'weave_traffic'
/** Outer IPv4 20 + UDP 8 + vxlan 8: what a datagram carries besides its inner frame. */
export const VXLAN_UNDERLAY_BYTES = 36

/** Bytes and packets with one peer (inner Ethernet frames, as the sleeve counts them). */
export interface PathTraffic { txBytes: number; txPackets: number; rxBytes: number; rxPackets: number }

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/

function checkIp(ip: string): string {
  const m = IPV4.exec(ip)
  if (!m || m.slice(1).some((o) => Number(o) > 255)) throw new TypeError(`bad IPv4 address ${JSON.stringify(ip)}`)
  return ip
}

/** The counter's name for a peer's address and direction (`tx_10_0_0_2`). */
export const counterName = (dir: 'tx' | 'rx', ip: string): string => `${dir}_${checkIp(ip).replace(/\./g, '_')}`

/**
 * The table from scratch (what a killed daemon left goes first), as one nft transaction. Pure.
 * `port`: the vxlan UDP port; `heartbeatEthertype`: the inner ethertype left out.
 */
export function countersTableScript(port: number, heartbeatEthertype: number): string {
  const t = `ip ${TRAFFIC_TABLE}`
  const not = `@th,224,16 != 0x${heartbeatEthertype.toString(16)}`
  return [
    `add table ${t}`,
    `delete table ${t}`,
    `add table ${t}`,
    `add map ${t} tx { type ipv4_addr : counter ; }`,
    `add map ${t} rx { type ipv4_addr : counter ; }`,
    `add chain ${t} out { type filter hook output priority 100 ; policy accept ; }`,
    `add chain ${t} in { type filter hook input priority 100 ; policy accept ; }`,
    `add rule ${t} out udp dport ${port} ${not} counter name ip daddr map @tx`,
    `add rule ${t} in udp dport ${port} ${not} counter name ip saddr map @rx`,
  ].join('\n')
}

/** Add counters for `add`, remove those of `del`, in one transaction. Pure; '' when nothing changes. */
export function countersPeersScript(add: readonly string[], del: readonly string[]): string {
  const t = `ip ${TRAFFIC_TABLE}`
  const lines: string[] = []
  for (const ip of del) {
    for (const dir of ['tx', 'rx'] as const) {
      lines.push(`delete element ${t} ${dir} { ${checkIp(ip)} }`, `delete counter ${t} ${counterName(dir, ip)}`)
    }
  }
  for (const ip of add) {
    for (const dir of ['tx', 'rx'] as const) {
      lines.push(`add counter ${t} ${counterName(dir, ip)}`, `add element ${t} ${dir} { ${checkIp(ip)} : "${counterName(dir, ip)}" }`)
    }
  }
  return lines.join('\n')
}

/**
 * `nft -j list counters table ip weave_traffic` → traffic by peer address, inner frames only
 * (each datagram's VXLAN_UNDERLAY_BYTES taken off). Pure; unknown entries are skipped.
 */
export function parseCounters(json: string): Map<string, PathTraffic> {
  const out = new Map<string, PathTraffic>()
  const doc = JSON.parse(json) as { nftables?: Array<{ counter?: { name?: string; table?: string; packets?: number; bytes?: number } }> }
  for (const e of doc.nftables ?? []) {
    const c = e.counter
    const m = c && c.table === TRAFFIC_TABLE ? /^(tx|rx)_(\d+)_(\d+)_(\d+)_(\d+)$/.exec(c.name ?? '') : null
    if (!c || !m) continue
    const ip = m.slice(2).join('.')
    let t = out.get(ip)
    if (!t) out.set(ip, (t = { txBytes: 0, txPackets: 0, rxBytes: 0, rxPackets: 0 }))
    const packets = Number(c.packets ?? 0), bytes = Math.max(0, Number(c.bytes ?? 0) - VXLAN_UNDERLAY_BYTES * packets)
    if (m[1] === 'tx') { t.txPackets = packets; t.txBytes = bytes } else { t.rxPackets = packets; t.rxBytes = bytes }
  }
  return out
}

const isNoTable = (err: unknown) => err instanceof NetCommandError && /No such file or directory|does not exist/i.test(err.stderr)

/** Make the table (replacing a leftover one). */
export async function ensureVxlanCounters(ctx: NetContext, port: number, heartbeatEthertype: number): Promise<void> {
  await ctx.run(['nft', countersTableScript(port, heartbeatEthertype)])
}

export async function updateVxlanCounters(ctx: NetContext, add: readonly string[], del: readonly string[]): Promise<void> {
  const script = countersPeersScript(add, del)
  if (script) await ctx.run(['nft', script])
}

export async function readVxlanCounters(ctx: NetContext): Promise<Map<string, PathTraffic>> {
  return parseCounters((await ctx.run(['nft', '-j', 'list', 'counters', 'table', 'ip', TRAFFIC_TABLE])).stdout)
}

/** Remove the table; false when it was not there. */
export async function removeVxlanCounters(ctx: NetContext): Promise<boolean> {
  try {
    await ctx.run(['nft', 'delete', 'table', 'ip', TRAFFIC_TABLE])
    return true
  } catch (err) {
    if (isNoTable(err)) return false
    throw err
  }
}
