/**
 * rmpeer: take over every range of a dead peer and tombstone it, so it can never win those ranges
 * back (reference (b) 1), with a majority of the peers owning space agreeing (removal.ts).
 */
import type { PeerName } from '../router/mesh'
import type { AllocatorState } from './allocator-state'
import { IpamError } from './errors'
import { WIRE_VERSION } from './messages'

/**
 * Remove `peerOrNick` (a dead peer). Refused for ourselves and for a peer reachable now. A
 * majority of the peers owning space (the dead one and `also` -- other dead peers being removed
 * in the same command -- left out) must agree, and each grants only one taker per dead peer, so
 * two peers cannot both take the same ranges over.
 */
export async function removePeer(s: AllocatorState, peerOrNick: string, also: string[] = []): Promise<{ peer: PeerName; addresses: number }> {
  const peer = resolvePeer(s, peerOrNick)
  const others = also.map((p) => resolvePeer(s, p))
  for (const p of [peer, ...others]) {
    if (p === s.self) throw new IpamError(400, 'cannot rmpeer ourselves; use weave reset')
    if (s.view.isReachable(p)) throw new IpamError(409, `peer ${s.describe(p)} is reachable; stop it (or weave reset it) before rmpeer`)
  }
  if (!s.ring.isEmpty() && s.ring.shares().has(peer)) await agreeOnRemoval(s, peer, others)
  const addresses = s.ring.isEmpty() ? 0 : s.ring.transfer(peer, s.self)
  s.ownedChanged()
  s.log.info(`rmpeer: ${addresses} IPs taken over from ${peer}`)
  await s.persisted()
  s.broadcast()
  s.retryPending()
  return { peer, addresses }
}

/** Collect a majority of votes for us taking over `peer`; throws when there is none. */
async function agreeOnRemoval(s: AllocatorState, peer: PeerName, alsoDead: PeerName[]): Promise<void> {
  const electorate = new Set([...s.ring.shares().keys()].filter((p) => p !== peer && !alsoDead.includes(p) && !s.ring.removed.has(p)))
  electorate.add(s.self)
  const need = Math.floor(electorate.size / 2) + 1
  if (!s.removals.tryGrant(peer, s.self)) {
    throw new IpamError(409, `rmpeer ${peer}: ${s.removals.holder(peer)} is already removing it`)
  }
  const askable = [...electorate].filter((p) => p !== s.self && s.view.isReachable(p))
  let yes = 1
  const refusals: string[] = []
  if (yes < need && askable.length > 0) {
    await new Promise<void>((resolve) => {
      let answered = 0
      const finish = () => {
        cancel()
        s.voteWaiters.delete(peer)
        resolve()
      }
      const cancel = s.deps.clock.setTimer(s.voteTimeoutMs, finish)
      s.voteWaiters.set(peer, (from, ok, reason) => {
        if (!askable.includes(from)) return
        answered++
        if (ok) yes++
        else refusals.push(`${s.describe(from)}: ${reason ?? 'refused'}`)
        if (yes >= need || answered === askable.length) finish()
      })
      for (const p of askable) s.unicast(p, { v: WIRE_VERSION, t: 'rmpeer-ask', peer })
    })
  }
  if (yes < need) {
    s.removals.release(peer, s.self)
    throw new IpamError(409, `rmpeer ${peer}: ${yes} of ${electorate.size} peers owning space agreed, ${need} needed` +
      (refusals.length ? ` (${refusals.join('; ')})` : ' (the others did not answer); name every dead peer in one rmpeer command'))
  }
}

/** `src` asks for our vote on it removing `peer`. */
export function handleRemovalAsk(s: AllocatorState, src: PeerName, peer: PeerName): void {
  let reason: string | undefined
  if (peer === s.self) reason = 'that is me, and I am running'
  else if (s.view.isReachable(peer)) reason = `${peer} is reachable from here`
  else if (s.ring.removed.has(peer)) reason = `${peer} was already removed`
  else if (!s.removals.tryGrant(peer, src)) reason = `${s.removals.holder(peer)} is already removing ${peer}`
  s.unicast(src, { v: WIRE_VERSION, t: 'rmpeer-vote', peer, ok: reason === undefined, ...(reason ? { reason } : {}) })
}

/** `src` voted on our removal of `peer`. */
export function handleRemovalVote(s: AllocatorState, src: PeerName, peer: PeerName, ok: boolean, reason?: string): void {
  s.voteWaiters.get(peer)?.(src, ok, reason)
}

/** A peer by name or unique nickname. */
function resolvePeer(s: AllocatorState, text: string): PeerName {
  const known = new Set<string>([...s.ring.shares().keys(), ...s.view.peers().map((p) => p.name)])
  if (known.has(text.toLowerCase())) return text.toLowerCase() as PeerName
  const byNick = s.view.peers().filter((p) => p.nickname === text)
  if (byNick.length === 1) return byNick[0].name
  if (byNick.length > 1) throw new IpamError(400, `nickname ${text} is ambiguous; use the peer name`)
  throw new IpamError(404, `unknown peer ${text}`)
}
