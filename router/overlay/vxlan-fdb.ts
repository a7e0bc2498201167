/**
 * The kernel vxlan path's fdb as the router wants it, and the changes that get it there. Pure.
 * A peer on the kernel path has one all-zeros entry (broadcast and unknown unicast reach it once:
 * the kernel sends one copy per all-zeros entry) and one entry per MAC it announced; a peer the
 * switch put on the sleeve has none (its frames flood to the sleeve's port instead).
 */
import type { FdbOp } from '../net'

export interface FdbState {
  /** Underlay addresses that get a copy of every flooded frame. */
  flood: ReadonlySet<string>
  /** MAC → the underlay address of the peer that announced it. */
  macs: ReadonlyMap<string, string>
}

export const emptyFdb = (): FdbState => ({ flood: new Set(), macs: new Map() })

/** The wanted state from the peers on the kernel path (later peers win a MAC two announce). */
export function wantedFdb(peers: Iterable<{ ip: string; forwarding: boolean; macs: Iterable<string> }>): FdbState {
  const flood = new Set<string>(), macs = new Map<string, string>()
  for (const p of peers) {
    if (!p.forwarding) continue
    flood.add(p.ip)
    for (const m of p.macs) macs.set(m, p.ip)
  }
  return { flood, macs }
}

/** Removals first (a peer leaving stops getting frames before anything else changes), then additions. */
export function planFdb(have: FdbState, want: FdbState): FdbOp[] {
  const ops: FdbOp[] = []
  for (const [mac] of have.macs) if (!want.macs.has(mac)) ops.push({ op: 'del-mac', mac })
  for (const ip of have.flood) if (!want.flood.has(ip)) ops.push({ op: 'del-flood', ip })
  for (const ip of want.flood) if (!have.flood.has(ip)) ops.push({ op: 'add-flood', ip })
  for (const [mac, ip] of want.macs) if (have.macs.get(mac) !== ip) ops.push({ op: 'set-mac', mac, ip })
  return ops
}
