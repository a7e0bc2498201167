/**
 * How a peer comes to have a ring: restored from disk, seeded (`--ipalloc-init seed=...`), agreed
 * by consensus among the first peers (consensus.ts), or -- as an observer -- asked for. Until
 * then operations wait (operations.ts).
 */
import { type Cidr, contains, formatIp, parseCidr } from './address'
import type { AllocatorState } from './allocator-state'
import { Paxos, type PaxosWire } from './consensus'
import { IpamGossipData, WIRE_VERSION, encodeMsg } from './messages'
import type { IpamState } from './persistence'
import { Ring } from './ring'

/** Restore saved state, refusing (by throwing) one that does not hold together. */
export function restore(s: AllocatorState, state: IpamState | undefined): void {
  if (state?.ring) {
    const r = Ring.fromWire(state.ring)
    if (!r.ok) throw new Error(`IPAM state in ${s.deps.store.where}: ${r.reason}`)
    s.ring = r.ring
  }
  if (state?.paxos && s.config.init.kind === 'consensus' && s.ring.isEmpty()) {
    s.paxos = new Paxos(s.self, s.quorum, state.paxos, s.clusterSize)
  }
  s.removedSelf = !!state?.removed
  for (const [id, cidrs] of Object.entries(state?.leases ?? {})) {
    for (const text of cidrs) {
      const c = parseCidr(text)
      if (!c) throw new Error(`IPAM state in ${s.deps.store.where}: bad address ${text} for ${id}`)
      restoreLease(s, id, c)
    }
  }
  if (s.ring.isEmpty() && s.config.init.kind === 'seed') {
    s.ring.claimForPeers(s.config.init.peers)
    s.log.info(`ring seeded by ${s.ring.seeds.join(', ')}`)
  }
  s.ownedChanged()
  if (s.ring.isEmpty() && s.space.leaseCount() > 0) s.log.warn(`${s.space.leaseCount()} leases restored before any ring exists`)
  s.published = s.snapshotGossip()
}

function restoreLease(s: AllocatorState, id: string, c: Cidr): void {
  if (!contains(s.universe, c.ip)) s.outside.set(c.ip, id)
  else {
    const prev = s.space.holder(c.ip)
    if (prev !== undefined && prev !== id) throw new Error(`IPAM state in ${s.deps.store.where}: ${formatIp(c.ip)} leased to both ${prev} and ${id}`)
    s.space.restoreLease(c.ip, id)
  }
  s.leases.add(id, { addr: c.ip, prefix: c.prefix }, false)
}

function activateConsensus(s: AllocatorState): Paxos {
  s.paxos = new Paxos(s.self, s.quorum, undefined, s.clusterSize)
  s.log.info(`joining consensus on the initial ring (quorum ${s.quorum})`)
  return s.paxos
}

/** We need a ring (an operation is waiting): start consensus, or ask for it as an observer. */
export function needRing(s: AllocatorState): void {
  if (!s.ring.isEmpty()) return
  if (s.config.init.kind === 'observer') {
    s.gossipHandle?.gossipBroadcast(new IpamGossipData([encodeMsg({ v: WIRE_VERSION, want: true })]))
    return
  }
  if (s.config.init.kind !== 'consensus') return
  const paxos = s.paxos ?? activateConsensus(s)
  // Propose when nobody has yet, or when nothing moved for a while; only needy peers propose.
  const now = s.now()
  const quietSince = Math.max(s.proposedAt, s.consensusProgressAt)
  if (paxos.own.promise && now - quietSince < s.reproposeMs) return
  // Jitter, so that peers that time out together do not keep duelling.
  s.proposedAt = now + s.deps.rng.int(Math.max(1, Math.floor(s.reproposeMs / 2)))
  paxos.propose()
  advanceConsensus(s, true)
}

/** Merge gossiped consensus records (while we have no ring); returns whether anything was new. */
export function mergeConsensus(s: AllocatorState, wire: PaxosWire): boolean {
  if (!s.ring.isEmpty() || s.config.init.kind !== 'consensus') return false
  const paxos = s.paxos ?? activateConsensus(s)
  if (!paxos.merge(wire)) return false
  s.consensusProgressAt = s.now()
  advanceConsensus(s)
  return true
}

/** Apply the consensus rules; publish our record when it changed (or `publish` is set). */
export function advanceConsensus(s: AllocatorState, publish = false): void {
  const p = s.paxos
  if (!p) return
  const changed = p.think() || publish
  const value = p.result()
  if (value) {
    s.ring.claimForPeers(value)
    s.paxos = undefined
    s.ownedChanged()
    s.log.info(`consensus reached: ring split among ${value.length} peers`)
    s.persisted().then(() => s.broadcast(), () => {})
    s.retryPending()
    return
  }
  if (changed) s.persisted().then(() => s.broadcast(), () => {})
}

/**
 * A quorum promised but not every launch peer: after a grace period go ahead with the quorum (the
 * others get space by donation later). Runs every tick.
 */
export function allowPartialQuorum(s: AllocatorState, now: number): void {
  const p = s.paxos
  if (!p || p.allowPartial) return
  if (p.promisesForMine() < s.quorum) s.quorumSeenAt = undefined
  else if (s.quorumSeenAt === undefined) s.quorumSeenAt = now
  else if (now - s.quorumSeenAt >= s.partialGraceMs) {
    p.allowPartial = true
    advanceConsensus(s)
  }
}
