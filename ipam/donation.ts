/**
 * Donation: a peer out of free addresses asks a peer with advertised free space for some; the
 * donor grants part of its ranges in the ring and answers with the ring once that is on disk, or
 * denies. A one-address request is a claim of an address the donor owns (operations.ts).
 */
import type { PeerName } from '../router/mesh'
import { type Range, formatIp, formatRange, intersect } from './address'
import type { AllocatorState } from './allocator-state'
import { IpamError } from './errors'
import { WIRE_VERSION } from './messages'

/** Ask a peer with advertised free space in `within` for some; one outstanding ask per range. */
export function askForSpace(s: AllocatorState, within: Range): void {
  const key = rangeKey(within)
  const now = s.now()
  const ask = s.spaceAsks.get(key)
  if (ask && now - ask.at < s.spaceRequestRetryMs) return
  const denied = ask?.denied ?? new Set<PeerName>()
  const donor = pickDonor(s, within, denied)
  if (!donor) {
    s.spaceAsks.set(key, { donor: s.self, at: now, denied: new Set() })
    return
  }
  s.spaceAsks.set(key, { donor, at: now, denied })
  s.unicast(donor, { v: WIRE_VERSION, t: 'req', start: within.start, end: within.end })
}

/** We got an address in `within`: our ask for it is over. */
export function askAnswered(s: AllocatorState, within: Range): void {
  s.spaceAsks.delete(rangeKey(within))
}

/** A reachable peer chosen at random, weighted by its advertised free space in `within`. */
function pickDonor(s: AllocatorState, within: Range, exclude: Set<PeerName>): PeerName | undefined {
  const cands: Array<[PeerName, number]> = []
  let total = 0
  for (const [peer, free] of s.ring.freeIn(within)) {
    if (peer === s.self || free <= 0 || exclude.has(peer) || s.ring.removed.has(peer) || !s.view.isReachable(peer)) continue
    cands.push([peer, free])
    total += free
  }
  if (total === 0) return undefined
  let x = s.deps.rng.next() * total
  for (const [peer, free] of cands) {
    x -= free
    if (x < 0) return peer
  }
  return cands[cands.length - 1][0]
}

/** `src` asks for space in `want`: grant a block of our free space, or deny. */
export function handleSpaceRequest(s: AllocatorState, src: PeerName, want: Range): void {
  const deny = () => s.unicast(src, { v: WIRE_VERSION, t: 'denied', start: want.start, end: want.end })
  if (s.ring.isEmpty() || s.removedSelf || s.ring.removed.has(src) || want.end <= want.start) return deny()
  const within = intersect(want, s.universe)
  const block = within && s.space.donation(within)
  if (!block) return deny()
  s.ring.grant(s.self, block, src, s.freeOf)
  s.ownedChanged()
  s.log.debug(`donating ${formatRange(block)} to ${src}`)
  // The donation leaves only once it is on disk: a restart must not make us think we still own it.
  s.persisted().then(() => {
    s.unicast(src, { v: WIRE_VERSION, t: 'ring', ring: s.published.ring! })
    s.broadcast()
  }, () => {})
}

/** `src` denied our request for `r`: fail the claim of that address, or ask another donor. */
export function handleDenied(s: AllocatorState, src: PeerName, r: Range): void {
  if (r.end - r.start === 1) {
    // A claim of one address: the owner has it in use.
    const ops = s.pending
    s.pending = []
    for (const op of ops) {
      if (op.kind === 'claim' && op.cidr.ip === r.start && s.ring.owner(r.start) === src) {
        op.reject(new IpamError(409, `address ${formatIp(r.start)} is owned by other peer ${s.describe(src)}`))
      } else s.pending.push(op)
    }
    return
  }
  const ask = s.spaceAsks.get(rangeKey(r))
  if (ask) {
    ask.denied.add(src)
    ask.at = -Infinity
  }
  s.retryPending()
}

function rangeKey(r: Range): string {
  return `${r.start}-${r.end}`
}
