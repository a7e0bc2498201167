/**
 * The `ipam` gossip channel's receiving side: decode what peers send (bad input is logged once and
 * dropped), merge rings and consensus records, and dispatch unicasts to donation, rmpeer and
 * hand-off. Also announces our state when peers change. The Allocator implements Gossiper by
 * calling these.
 */
import type { GossipData, PeerName } from '../router/mesh'
import type { AllocatorState } from './allocator-state'
import { mergeConsensus, needRing } from './bootstrap'
import { handleDenied, handleSpaceRequest } from './donation'
import { IpamError } from './errors'
import { handleHandoffAck } from './hand-off'
import { type GossipMsg, IpamGossipData, WIRE_VERSION, decodeGossip, decodeUnicast, encodeMsg } from './messages'
import { Ring } from './ring'
import { handleRemovalAsk, handleRemovalVote } from './rmpeer'

export function onGossipUnicast(s: AllocatorState, src: PeerName, bytes: Uint8Array): void {
  const d = decodeUnicast(bytes)
  if (!d.ok) return s.logOnce(`bad-unicast:${src}:${d.reason}`, `dropping bad ipam message from ${src}: ${d.reason}`)
  const m = d.msg
  switch (m.t) {
    case 'req':
      return handleSpaceRequest(s, src, { start: m.start, end: m.end })
    case 'denied':
      return handleDenied(s, src, { start: m.start, end: m.end })
    case 'ring':
      applyRingWire(s, m.ring, src)
      return
    case 'handoff':
      // Confirmed only once the ranges are on our disk: the resetting peer forgets them then.
      if (applyRingWire(s, m.ring, src)) s.whenPersisted(() => s.unicast(src, { v: WIRE_VERSION, t: 'handoff-ack' }))
      return
    case 'handoff-ack':
      return handleHandoffAck(s, src)
    case 'rmpeer-ask':
      return handleRemovalAsk(s, src, m.peer as PeerName)
    case 'rmpeer-vote':
      return handleRemovalVote(s, src, m.peer as PeerName, m.ok, m.reason)
  }
}

export function onGossipBroadcast(s: AllocatorState, src: PeerName, update: Uint8Array): GossipData | undefined {
  const d = decodeGossip(update)
  if (!d.ok) {
    s.logOnce(`bad-gossip:${src}:${d.reason}`, `dropping bad ipam gossip from ${src}: ${d.reason}`)
    return undefined
  }
  // One broadcast answers every hello of a tick (answering each would be N² broadcasts).
  if (d.msg.hello && s.paxos && s.mayAnswer('hello')) s.broadcast()
  if ((d.msg.want || d.msg.hello || d.msg.paxos) && s.published.ring && s.mayAnswer(`ring:${src}`)) {
    // An observer priming, a peer that just met us, or a late elector still running consensus.
    s.unicast(src, { v: WIRE_VERSION, t: 'ring', ring: s.published.ring })
  }
  if (d.msg.want && s.ring.isEmpty() && s.config.init.kind === 'consensus') needRing(s)
  return handleGossip(s, d.msg, src) ? new IpamGossipData([update]) : undefined
}

export function onGossip(s: AllocatorState, update: Uint8Array): GossipData | undefined {
  const d = decodeGossip(update)
  if (!d.ok) {
    s.logOnce(`bad-gossip:${d.reason}`, `dropping bad ipam gossip: ${d.reason}`)
    return undefined
  }
  return handleGossip(s, d.msg, 'gossip') ? new IpamGossipData([update]) : undefined
}

/**
 * New peers may have registered their ipam channel after the mesh greeted them (so they missed
 * our state), or may be electors consensus is waiting for: announce our state to everyone,
 * at most once per tick.
 */
export function announce(s: AllocatorState): void {
  if (s.announceTimer || s.stopped) return
  const since = s.now() - s.announcedAt
  s.announceTimer = s.deps.clock.setTimer(Math.max(0, s.tickMs - since), () => {
    s.announceTimer = undefined
    s.announcedAt = s.now()
    s.broadcast()
    // Without a ring, ask who has one (or consensus state) to tell us.
    if (s.ring.isEmpty()) s.gossipHandle?.gossipBroadcast(new IpamGossipData([encodeMsg({ v: WIRE_VERSION, hello: true })]))
  })
}

/** Merge a gossiped ring and/or consensus records; returns whether anything was new. */
function handleGossip(s: AllocatorState, m: GossipMsg, src: string): boolean {
  let changed = false
  if (m.ring) changed = applyRingWire(s, m.ring, src) || changed
  if (m.paxos) changed = mergeConsensus(s, m.paxos) || changed
  return changed
}

/** Merge a ring from `src` into ours; returns whether ours changed. */
function applyRingWire(s: AllocatorState, wire: unknown, src: string): boolean {
  const d = Ring.fromWire(wire)
  if (!d.ok) {
    s.logOnce(`bad-ring:${src}`, `dropping invalid ring from ${src}: ${d.reason}`)
    return false
  }
  const wasEmpty = s.ring.isEmpty()
  const res = s.ring.merge(d.ring, s.self, (r) => s.space.hasLeasesIn(r))
  if (!res.ok) {
    s.logOnce(`merge:${src}:${res.code}`, `refusing ring from ${src}: ${res.reason}`)
    return false
  }
  if (!res.changed) return false
  if (wasEmpty && !s.ring.isEmpty()) {
    s.paxos = undefined
    s.log.info(`ring received from ${src}; consensus over`)
  }
  if (res.selfRemoved) {
    s.removedSelf = true
    s.log.error("this peer was removed from the ring by rmpeer on another peer; its ranges are gone and it will not allocate again - run 'weave reset'")
    s.failPending(new IpamError(409, 'this peer was removed by rmpeer'))
  }
  s.ownedChanged()
  s.persisted().then(() => { if (res.reasserted) s.broadcast() }, () => {})
  s.retryPending()
  return true
}
