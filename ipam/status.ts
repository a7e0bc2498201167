/**
 * Text of `weave status ipam`, as Weave's: one line per peer owning space, `name(nick)` padded to
 * 37 characters, then `N IPs (xx.x% of total)`; our own line first with `(K active)`, peers we
 * cannot reach marked `- unreachable!`.
 */
import type { MeshView, PeerName } from '../router/mesh'
import type { RingView } from './ring'

export interface PeerShare {
  peer: PeerName
  nickname?: string
  addresses: number
  percent: number
  self: boolean
  reachable: boolean
}

/** Shares of the ring per peer; `known` remembers nicknames of peers no longer in the topology. */
export function peerShares(ring: RingView, view: MeshView, known: Map<PeerName, string> = new Map()): PeerShare[] {
  const total = ring.end - ring.start
  for (const p of view.peers()) known.set(p.name, p.nickname)
  const nick = known
  const self = view.self.name
  const out: PeerShare[] = []
  for (const [peer, addresses] of ring.shares()) {
    out.push({
      peer,
      nickname: peer === self ? view.self.nickname : nick.get(peer),
      addresses,
      percent: (100 * addresses) / total,
      self: peer === self,
      reachable: peer === self || view.isReachable(peer),
    })
  }
  out.sort((a, b) => (a.self !== b.self ? (a.self ? -1 : 1) : a.peer < b.peer ? -1 : 1))
  return out
}

export function formatIpamStatus(ring: RingView, view: MeshView, activeCount: number, statusText: string, known?: Map<PeerName, string>): string {
  if (ring.isEmpty()) return `${statusText}\n`
  const shares = peerShares(ring, view, known)
  if (!shares.some((s) => s.self)) {
    shares.unshift({ peer: view.self.name, nickname: view.self.nickname, addresses: 0, percent: 0, self: true, reachable: true })
  }
  const lines = shares.map((s) => {
    const who = `${s.peer}(${s.nickname ?? ''})`.padEnd(37)
    let line = `${who}${s.addresses} IPs (${s.percent.toFixed(1)}% of total)`
    if (s.self) line += ` (${activeCount} active)`
    else if (!s.reachable) line += ' - unreachable!'
    return line
  })
  return lines.join('\n') + '\n'
}
