/**
 * Faults on the lab LAN: link down/up, loss and delay, partitions. All rules live inside host
 * namespaces (or on the lab's own root-side veth), so nothing of the machine's firewall changes.
 *
 * Rules sit in nftables `netdev` tables hooked on the host's `eth0` (egress and ingress), not in
 * the inet input/output hooks: with OVS the host's traffic leaves through ovs-vswitchd's packet
 * socket on eth0, which bypasses the IP stack's hooks but still passes the device's egress hook.
 */
import { run } from './exec'
import type { LabHost } from './host'

/** A fault this kernel cannot produce (e.g. delay without sch_netem); tests may skip on it. */
export class FaultUnavailable extends Error {
  readonly code = 'fault-unavailable'
}

/** Pull the host's "cable": its veth end on the LAN bridge goes down (eth0 loses carrier). */
export async function linkDown(host: LabHost): Promise<void> {
  await run(['ip', 'link', 'set', 'dev', host.rootVeth, 'down'])
}

export async function linkUp(host: LabHost): Promise<void> {
  await run(['ip', 'link', 'set', 'dev', host.rootVeth, 'up'])
}

export interface NetemOptions {
  delayMs?: number
  /** Percentage of packets dropped, 0-100. */
  lossPct?: number
}

const LOSS_TABLE = 'wlabloss'
const PART_TABLE = 'wlabpart'

/**
 * Degrade the host's outgoing traffic on eth0. Uses `tc netem` when the kernel has it; without it
 * (this machine), loss falls back to an nftables random drop and delay throws FaultUnavailable.
 * `netem(host, {})` clears both.
 */
export async function netem(host: LabHost, opts: NetemOptions): Promise<void> {
  const delayMs = opts.delayMs ?? 0
  const lossPct = opts.lossPct ?? 0
  await host.exec(['tc', 'qdisc', 'del', 'dev', 'eth0', 'root'], { allowFail: true })
  await host.exec(['nft', 'delete', 'table', 'netdev', LOSS_TABLE], { allowFail: true })
  if (delayMs <= 0 && lossPct <= 0) return
  const args = ['tc', 'qdisc', 'add', 'dev', 'eth0', 'root', 'netem']
  if (delayMs > 0) args.push('delay', `${delayMs}ms`)
  if (lossPct > 0) args.push('loss', `${lossPct}%`)
  const r = await host.exec(args, { allowFail: true })
  if (r.code === 0) return
  if (delayMs > 0) throw new FaultUnavailable(`netem delay unavailable on this kernel (${r.stderr.trim()})`)
  const pct = Math.min(100, Math.round(lossPct))
  const rule = pct >= 100 ? 'drop' : `numgen random mod 100 < ${pct} drop`
  await host.exec(['nft', '-f', '-'], {
    input: `table netdev ${LOSS_TABLE} {
  chain out { type filter hook egress device "eth0" priority 0; ${rule}; }
}\n`,
  })
}

/**
 * Replace host's partition rules so it neither sends to nor accepts from `blocked` underlay IPs.
 * An empty list removes the table.
 */
export async function setBlocked(host: LabHost, blocked: string[]): Promise<void> {
  await host.exec(['nft', 'delete', 'table', 'netdev', PART_TABLE], { allowFail: true })
  if (!blocked.length) return
  const set = `{ ${blocked.join(', ')} }`
  await host.exec(['nft', '-f', '-'], {
    input: `table netdev ${PART_TABLE} {
  chain out { type filter hook egress device "eth0" priority 0; ip daddr ${set} drop; arp daddr ip ${set} drop; }
  chain in { type filter hook ingress device "eth0" priority 0; ip saddr ${set} drop; arp saddr ip ${set} drop; }
}\n`,
  })
}

const UDP_TABLE = 'wlabudp'

/** A rule on UDP between this host and `peer`: drop it all on `ports`, or only datagrams longer than `maxIpBytes`. */
export interface UdpRule {
  peer: string
  /** Destination ports to drop (default: any). */
  ports?: number[]
  /** Drop only IP packets of UDP longer than this (bytes, IP header included): a path that silently loses big datagrams. */
  maxIpBytes?: number
}

/**
 * Replace the host's UDP rules (in the same netdev hooks as setBlocked, so they hold with OVS too);
 * TCP and other protocols pass. No ICMP is sent for a drop: the kernel learns nothing, as behind a
 * firewall or a tunnel that loses big packets. An empty list removes the table.
 *
 * Port rules drop both ways at this host. Size rules drop what *arrives* bigger than the limit,
 * as a middle box would: the egress hook sees a UDP GSO send (sleeve batches equal-sized
 * datagrams into one) before it is cut into datagrams, so a size rule there would drop datagrams
 * that are each small enough. For the same reason this host's eth0 then cuts GSO sends itself
 * (tx-udp-segmentation off): a veth would carry them whole to the peer's ingress hook.
 */
export async function setUdpRules(host: LabHost, rules: UdpRule[]): Promise<void> {
  await host.exec(['nft', 'delete', 'table', 'netdev', UDP_TABLE], { allowFail: true })
  const sized = rules.some((r) => r.maxIpBytes)
  await host.exec(['ethtool', '-K', 'eth0', 'tx-udp-segmentation', sized ? 'off' : 'on'], { allowFail: true })
  if (!rules.length) return
  const match = (r: UdpRule, dir: 'daddr' | 'saddr') =>
    `ip ${dir} ${r.peer} meta l4proto udp${r.ports?.length ? ` udp dport { ${r.ports.join(', ')} }` : ''}${r.maxIpBytes ? ` ip length > ${r.maxIpBytes}` : ''} drop;`
  await host.exec(['nft', '-f', '-'], {
    input: `table netdev ${UDP_TABLE} {
  chain out { type filter hook egress device "eth0" priority 0; ${rules.filter((r) => !r.maxIpBytes).map((r) => match(r, 'daddr')).join(' ')} }
  chain in { type filter hook ingress device "eth0" priority 0; ${rules.map((r) => match(r, 'saddr')).join(' ')} }
}\n`,
  })
}
