/**
 * The data-plane baseline: a kernel vxlan device between two lab hosts with static fdb and
 * neighbour entries (the flannel-style fast path, no learning, no multicast). Every data-plane
 * benchmark reports itself as a ratio to this, measured in the same run.
 *
 * Measure it between hosts WITHOUT Open vSwitch: on an OVS host the underlay runs through the
 * userspace datapath (br-phy, ~1 Gbit/s here) and the baseline would be no baseline. A datapath
 * benchmark can make a lab of 4 hosts, OVS on h1/h2 only, and take the baseline on h3/h4.
 */
import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import type { LabHost } from './host'
import { iperf, type IperfOptions } from './iperf'

export interface KernelVxlanOptions {
  /** VXLAN network identifier; default 4242. */
  vni?: number
  /** UDP destination port; default 4789 (IANA vxlan). */
  dstPort?: number
  /** Device name in both hosts; default `vxbase`. */
  dev?: string
  /** First three octets of the inner /24; host a gets .1, b gets .2. Default 172.31.250. */
  innerNet?: string
  /** Underlay MTU; the inner MTU leaves 50 bytes for the vxlan headers. Default 1500. */
  underlayMtu?: number
}

export interface KernelVxlan {
  dev: string
  /** Inner addresses of a and b. */
  ipA: string
  ipB: string
  mtu: number
  remove(): Promise<void>
}

/** MAC of `dev` in host `h`. */
async function macOf(h: LabHost, dev: string): Promise<string> {
  const r = await h.exec(['ip', '-o', 'link', 'show', 'dev', dev])
  const mac = /link\/ether ([0-9a-f:]{17})/.exec(r.stdout)?.[1]
  if (!mac) throw new Error(`${h.name}: no MAC for ${dev} in: ${r.stdout}`)
  return mac
}

/** Create the vxlan pair between `a` and `b` (over their underlay devices). */
export async function setupKernelVxlan(a: LabHost, b: LabHost, opts: KernelVxlanOptions = {}): Promise<KernelVxlan> {
  const dev = opts.dev ?? 'vxbase'
  const net = opts.innerNet ?? '172.31.250'
  const mtu = (opts.underlayMtu ?? 1500) - 50
  const ends = [{ h: a, ip: `${net}.1`, peer: b }, { h: b, ip: `${net}.2`, peer: a }]
  for (const e of ends) {
    await e.h.exec(['ip', 'link', 'add', 'name', dev, 'type', 'vxlan', 'id', String(opts.vni ?? 4242),
      'dstport', String(opts.dstPort ?? 4789), 'local', e.h.underlayIp, 'dev', e.h.underlayDev, 'nolearning'])
    await e.h.exec(['ip', 'link', 'set', 'dev', dev, 'mtu', String(mtu), 'up'])
    await e.h.exec(['ip', 'addr', 'add', `${e.ip}/24`, 'dev', dev])
  }
  const macs = [await macOf(a, dev), await macOf(b, dev)]
  for (const [i, e] of ends.entries()) {
    const peerMac = macs[1 - i]
    const peerIp = ends[1 - i].ip
    await e.h.exec(['bridge', 'fdb', 'append', peerMac, 'dev', dev, 'dst', e.peer.underlayIp, 'self', 'permanent'])
    await e.h.exec(['ip', 'neigh', 'replace', peerIp, 'lladdr', peerMac, 'dev', dev, 'nud', 'permanent'])
  }
  return {
    dev, ipA: ends[0].ip, ipB: ends[1].ip, mtu,
    async remove() {
      for (const e of ends) await e.h.exec(['ip', 'link', 'del', 'dev', dev], { allowFail: true })
    },
  }
}

/** Set up the kernel vxlan between `a` and `b`, measure iperf3 a -> b over it, remove it. Gbit/s. */
export async function measureKernelVxlan(a: LabHost, b: LabHost,
  opts: KernelVxlanOptions & IperfOptions = {}): Promise<number> {
  const vx = await setupKernelVxlan(a, b, opts)
  try {
    return (await iperf(b, a, vx.ipB, opts)).gbps
  } finally {
    await vx.remove()
  }
}

/** iperf3 a -> b over the plain underlay. Gbit/s. */
export async function measureUnderlay(a: LabHost, b: LabHost, opts: IperfOptions = {}): Promise<number> {
  return (await iperf(b, a, b.underlayIp, opts)).gbps
}

/**
 * The container-to-container baseline, flannel's layout: on each host a plain Linux bridge with a
 * kernel vxlan device (static fdb: the peer container's MAC and an all-zeros flood entry, no
 * learning) and a namespace on a veth, at `mtu` (give the weave MTU, so only the datapath
 * differs). iperf3 from a's namespace to b's; everything made is removed. Gbit/s.
 */
export async function measureKernelVxlanContainers(a: LabHost, b: LabHost, opts: { mtu: number; seconds?: number }): Promise<number> {
  const run = promisify(execFile)
  const ends = [{ h: a, ns: `${a.ns}-kvc`, ip: '172.31.251.1', peer: b }, { h: b, ns: `${b.ns}-kvc`, ip: '172.31.251.2', peer: a }]
  const m = String(opts.mtu)
  const inNs = (ns: string, argv: string[]) => run('ip', ['netns', 'exec', ns, ...argv], { timeout: 60_000 })
  try {
    for (const e of ends) {
      await run('ip', ['netns', 'add', e.ns])
      await inNs(e.ns, ['ip', 'link', 'set', 'lo', 'up'])
      await e.h.exec(['ip', 'link', 'add', 'name', 'kvbr', 'mtu', m, 'type', 'bridge'])
      await e.h.exec(['ip', 'link', 'add', 'name', 'kvbase', 'mtu', m, 'type', 'vxlan', 'id', '4243', 'dstport', '4790', 'nolearning'])
      await e.h.exec(['ip', 'link', 'add', 'name', 'kvveth', 'mtu', m, 'type', 'veth', 'peer', 'name', 'ethkv', 'mtu', m, 'netns', e.ns])
      for (const dev of ['kvbase', 'kvveth']) await e.h.exec(['ip', 'link', 'set', 'dev', dev, 'master', 'kvbr', 'up'])
      await e.h.exec(['ip', 'link', 'set', 'dev', 'kvbr', 'up'])
      await inNs(e.ns, ['ip', 'addr', 'add', `${e.ip}/24`, 'dev', 'ethkv'])
      await inNs(e.ns, ['ip', 'link', 'set', 'dev', 'ethkv', 'up'])
    }
    const macs = await Promise.all(ends.map(async (e) => /link\/ether ([0-9a-f:]{17})/.exec((await inNs(e.ns, ['ip', '-o', 'link', 'show', 'dev', 'ethkv'])).stdout)?.[1] ?? ''))
    for (const [i, e] of ends.entries()) {
      const o = ends[1 - i]
      await e.h.exec(['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'kvbase', 'dst', e.peer.underlayIp, 'self', 'permanent'])
      await e.h.exec(['bridge', 'fdb', 'replace', macs[1 - i], 'dev', 'kvbase', 'dst', e.peer.underlayIp, 'self', 'permanent'])
      await inNs(e.ns, ['ip', 'neigh', 'replace', o.ip, 'lladdr', macs[1 - i], 'dev', 'ethkv', 'nud', 'permanent'])
    }
    const srv = spawn('ip', ['netns', 'exec', ends[1].ns, 'iperf3', '-s', '-1', '-p', '5202'], { stdio: 'ignore' })
    try {
      const t0 = Date.now()
      while (!(await inNs(ends[1].ns, ['ss', '-Hltn', 'sport = :5202'])).stdout.trim()) {
        if (Date.now() - t0 > 20_000) throw new Error('iperf3 server did not start')
        await new Promise((r) => setTimeout(r, 50))
      }
      const seconds = opts.seconds ?? 5
      const r = await inNs(ends[0].ns, ['iperf3', '-c', ends[1].ip, '-p', '5202', '-t', String(seconds), '-J'])
      const j = JSON.parse(r.stdout) as { end?: { sum_received?: { bits_per_second: number } }; error?: string }
      if (!j.end?.sum_received) throw new Error(`iperf3: ${j.error ?? 'no result'}`)
      return j.end.sum_received.bits_per_second / 1e9
    } finally {
      srv.kill('SIGKILL')
    }
  } finally {
    for (const e of ends) {
      for (const dev of ['kvbase', 'kvveth', 'kvbr']) await e.h.exec(['ip', 'link', 'del', 'dev', dev], { allowFail: true })
      await run('ip', ['netns', 'del', e.ns]).catch(() => undefined)
    }
  }
}
