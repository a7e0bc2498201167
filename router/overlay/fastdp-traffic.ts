/**
 * OVS fastdp's per-peer traffic, from the OpenFlow table's own counters (pure: dumps in, totals
 * out). Frames to a peer are counted by the flows that tunnel to its address (`set_field:IP->
 * tun_dst`: its MACs, the flood — one copy per peer —, relays, and the flows the datapath learnt,
 * `load:0x…->NXM_NX_TUN_IPV4_DST[]`); frames from it by the per-peer tunnel-in flow (PRIORITY.
 * peerRx, matched on `tun_src`). Heartbeats go by their own flows and packet-outs: not counted.
 *
 * Flows come and go (peers, learning's idle timeout) and a modified flow keeps its counters under
 * new actions, so totals grow by each flow's delta since the previous dump, credited to the
 * address its actions name now; a flow gone between two dumps loses what it counted since the
 * first (the driver dumps before it deletes tunnel flows, except on a path change, which must
 * not wait: then, and for learnt flows that expire unseen, counts since the last read are lost).
 * Memory: one entry per flow in the last dump, one total per peer address kept.
 */
import type { FlowStat } from './ofctl'
import { PRIORITY } from './fastdp-flows'

export interface PathCounts { txBytes: number; txPackets: number; rxBytes: number; rxPackets: number }

const TUN_DST_SET = /set_field:(\d{1,3}(?:\.\d{1,3}){3})->tun_dst/g
const TUN_DST_LOAD = /load:(0x[0-9a-f]+)->NXM_NX_TUN_IPV4_DST\[\]/gi
const TUN_SRC = /(?:^|,)tun_src=(\d{1,3}(?:\.\d{1,3}){3})(?:,|$)/

const ipOf = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.')

/** Whom a flow's counts are for: tunnelled to these addresses, or received from this one. Pure. */
export function flowPeers(f: Pick<FlowStat, 'priority' | 'match' | 'actions'>): { tx: string[] } | { rx: string } | undefined {
  if (f.priority === PRIORITY.peerRx) {
    const m = TUN_SRC.exec(f.match)
    return m ? { rx: m[1] } : undefined
  }
  const tx = [...f.actions.matchAll(TUN_DST_SET)].map((m) => m[1])
  for (const m of f.actions.matchAll(TUN_DST_LOAD)) tx.push(ipOf(Number(m[1])))
  return tx.length ? { tx } : undefined
}

const flowId = (f: FlowStat) => `${f.cookie}|${f.table}|${f.priority}|${f.match}`

export class FlowTraffic {
  private last = new Map<string, { packets: number; bytes: number }>()
  private readonly totals = new Map<string, PathCounts>()

  /** Credit each flow's growth since the previous dump to the peers its actions name now. */
  sample(stats: readonly FlowStat[]): void {
    const next = new Map<string, { packets: number; bytes: number }>()
    for (const f of stats) {
      const id = flowId(f)
      const prev = this.last.get(id)
      next.set(id, { packets: f.packets, bytes: f.bytes })
      const to = flowPeers(f)
      if (!to) continue
      // a counter that went down is a flow made again since: all it holds is new
      const back = prev !== undefined && (f.packets < prev.packets || f.bytes < prev.bytes)
      const dp = back || !prev ? f.packets : f.packets - prev.packets
      const db = back || !prev ? f.bytes : f.bytes - prev.bytes
      if (!dp && !db) continue
      if ('rx' in to) {
        const t = this.total(to.rx)
        t.rxPackets += dp; t.rxBytes += db
      } else {
        for (const ip of to.tx) {
          const t = this.total(ip)
          t.txPackets += dp; t.txBytes += db
        }
      }
    }
    this.last = next
  }

  /** Totals by peer address since each was first seen (or kept). */
  byAddress(): ReadonlyMap<string, Readonly<PathCounts>> { return this.totals }

  /** Forget the totals of addresses not in `keep` (peers that left). */
  retain(keep: ReadonlySet<string>): void {
    for (const ip of this.totals.keys()) if (!keep.has(ip)) this.totals.delete(ip)
  }

  private total(ip: string): PathCounts {
    let t = this.totals.get(ip)
    if (!t) this.totals.set(ip, (t = { txBytes: 0, txPackets: 0, rxBytes: 0, rxPackets: 0 }))
    return t
  }
}
