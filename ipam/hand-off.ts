/**
 * weave reset's hand-off: drop our leases, hand every range we own to a live peer (the heir), and
 * wait for it to confirm -- Weave's hand-off was fire-and-forget (reference (b) 5).
 */
import type { PeerName } from '../router/mesh'
import type { AllocatorState } from './allocator-state'
import { IpamError } from './errors'
import { WIRE_VERSION } from './messages'
import { release } from './operations'

/** Resolves with the heir, or undefined when we owned nothing. */
export async function reset(s: AllocatorState): Promise<PeerName | undefined> {
  s.failPending(new IpamError(503, 'cancelled by reset'))
  const mine = s.ring.ownedBy(s.self)
  for (const id of s.leases.ids()) await release(s, id)
  if (mine.length === 0) return undefined
  const heir = pickHeir(s)
  if (!heir) throw new IpamError(503, 'no reachable peer to hand our address ranges to')
  for (const r of mine) s.ring.grant(s.self, r, heir, () => 0)
  s.space.setOwned([])
  await s.persisted()
  const confirmed = await new Promise<boolean>((resolve) => {
    const deadline = s.now() + s.handoffTimeoutMs
    let cancel: () => void = () => {}
    const send = () => {
      s.unicast(heir, { v: WIRE_VERSION, t: 'handoff', ring: s.ring.toWire() })
      if (s.now() >= deadline) return resolve(false)
      cancel = s.deps.clock.setTimer(Math.min(1000, s.handoffTimeoutMs), send)
    }
    s.handoffWaiter = { peer: heir, done: () => { cancel(); resolve(true) } }
    send()
  })
  s.handoffWaiter = undefined
  s.broadcast()
  if (!confirmed) throw new IpamError(504, `hand-off of our address ranges to ${heir} was not confirmed`)
  return heir
}

/** The heir confirmed it has our ranges on disk. */
export function handleHandoffAck(s: AllocatorState, src: PeerName): void {
  if (s.handoffWaiter?.peer === src) s.handoffWaiter.done()
}

/** A reachable peer, preferring one that owns space already (fewer peers in the ring). */
function pickHeir(s: AllocatorState): PeerName | undefined {
  const reachable = s.view.peers().map((p) => p.name).filter((p) => p !== s.self && s.view.isReachable(p) && !s.ring.removed.has(p))
  const withEntries = reachable.filter((p) => s.ring.shares().has(p)).sort()
  return withEntries[0] ?? reachable.sort()[0]
}
