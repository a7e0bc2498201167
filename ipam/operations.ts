/**
 * The operations the API asks for -- allocate, claim, prime, release -- and the queue of those
 * that must wait (for the ring, for space from a donor, for an owner's answer). An operation is
 * answered only once the state it changed is on disk (allocator.ts, the ordering rule).
 */
import { type Cidr, cidrRange, contains, formatCidr, formatIp, hostRange, intersect } from './address'
import type { AllocatorState, Op } from './allocator-state'
import { needRing } from './bootstrap'
import { askAnswered, askForSpace } from './donation'
import { IpamError } from './errors'
import { WIRE_VERSION } from './messages'

/** A claim of an address another peer owns is asked for this many times before it fails. */
const MAX_CLAIM_SENDS = 5

/** Allocate an address for `id` in `subnet`; idempotent. */
export function allocate(s: AllocatorState, id: string, subnet: Cidr): Promise<Cidr> {
  s.deaths.alive(id) // asking again for a container we thought dead: it was restarted
  if (s.config.disabled) {
    return Promise.reject(new IpamError(400, 'IP allocation is off (launched with --ipalloc-range ""): give an explicit address, e.g. weave attach 10.2.1.5/24 CONTAINER or WEAVE_CIDR=ip:10.2.1.5/24'))
  }
  return new Promise((resolve, reject) => {
    const sub = { ip: cidrRange(subnet).start, prefix: subnet.prefix }
    if (!intersect(hostRange(sub), s.universe)) {
      return reject(new IpamError(400, `subnet ${formatCidr(sub)} is out of bounds of the allocation range ${formatCidr(s.config.universe)}`))
    }
    enqueue(s, { kind: 'alloc', id, subnet: sub, resolve, reject, deadline: s.now() + s.requestTimeoutMs })
  })
}

/** Claim `cidr.ip` for `id` (its subnet prefix kept for lookups); idempotent for the same ID. */
export function claim(s: AllocatorState, id: string, cidr: Cidr): Promise<void> {
  s.deaths.alive(id)
  return new Promise((resolve, reject) => {
    enqueue(s, { kind: 'claim', id, cidr, resolve, reject, deadline: s.now() + s.requestTimeoutMs, sends: 0, lastSent: -Infinity })
  })
}

/** Resolve once the ring exists (triggering consensus if needed): `weave prime`. */
export function prime(s: AllocatorState): Promise<void> {
  return new Promise((resolve, reject) => {
    enqueue(s, { kind: 'prime', resolve, reject, deadline: s.now() + s.requestTimeoutMs })
  })
}

/** Addresses of `id`, optionally only those inside `subnet`. */
export function lookup(s: AllocatorState, id: string, subnet?: Cidr): Cidr[] {
  const list = s.leases.get(id)
  const r = subnet && cidrRange(subnet)
  return list.filter((l) => !r || contains(r, l.addr)).map((l) => ({ ip: l.addr, prefix: l.prefix }))
}

/** Every ID with its addresses. */
export function owned(s: AllocatorState): Array<{ containerid: string; addrs: string[] }> {
  return [...s.leases.entries()].map(([id, ls]) => ({ containerid: id, addrs: ls.map((l) => formatCidr({ ip: l.addr, prefix: l.prefix })) }))
}

/** Release `addr` of `id`, or all of its addresses; false when there was nothing to release. Resolves once persisted. */
export async function release(s: AllocatorState, id: string, addr?: number): Promise<boolean> {
  const drop = s.leases.remove(id, addr)
  if (s.leases.get(id).length === 0) s.deaths.alive(id)
  if (drop.length === 0) return false
  for (const l of drop) {
    if (s.outside.get(l.addr) === id) s.outside.delete(l.addr)
    else if (s.space.holder(l.addr) === id) s.space.release(l.addr)
  }
  s.freeDirty = true
  await s.persisted()
  return true
}

/** Release the leases of containers whose grace ended, unless Docker says they run after all. */
export function releaseDead(s: AllocatorState, now: number): void {
  for (const { id, token } of s.deaths.due(now)) {
    const check = s.deps.isRunning ? s.deps.isRunning(id).catch(() => undefined) : Promise.resolve(undefined)
    check.then((running) => {
      if (running) {
        s.deaths.alive(id)
        s.log.info(`${short(id)} died ${Math.round(s.deaths.graceMs / 1000)} s ago but is running: keeping its leases`)
        return
      }
      if (!s.deaths.confirm(id, token) || s.stopped) return
      s.log.info(`releasing the leases of ${short(id)}: it died and did not come back within ${Math.round(s.deaths.graceMs / 1000)} s`)
      return release(s, id).then(() => undefined)
    }).catch((err: Error) => s.log.warn(`releasing the leases of ${short(id)}: ${err.message}`))
  }
}

/** Try the pending operations again; those still not finished stay pending. */
export function retryPending(s: AllocatorState): void {
  if (s.pending.length === 0) return
  const ops = s.pending
  s.pending = []
  for (const op of ops) if (!tryOp(s, op)) s.pending.push(op)
}

/** Fail the pending operations whose deadline passed, saying what they waited for. */
export function expire(s: AllocatorState, now: number): void {
  const ops = s.pending
  s.pending = []
  for (const op of ops) {
    if (now < op.deadline) {
      s.pending.push(op)
      continue
    }
    const why = s.ring.isEmpty() ? `no IP allocation ring yet (${s.statusText()})` : s.statusText()
    op.reject(new IpamError(503, `timed out: ${why}`))
  }
}

function enqueue(s: AllocatorState, op: Op): void {
  if (s.stopped) return op.reject(new IpamError(503, 'IPAM is stopped'))
  if (s.removedSelf) return op.reject(new IpamError(409, "this peer was removed by rmpeer on another peer; run 'weave reset'"))
  if (!tryOp(s, op)) {
    s.pending.push(op)
    if (s.ring.isEmpty()) needRing(s)
  }
}

/** Try to complete `op` now; true when it is finished (answered or failed). */
function tryOp(s: AllocatorState, op: Op): boolean {
  if (op.kind === 'claim' && !contains(s.universe, op.cidr.ip)) return claimOutside(s, op)
  if (s.ring.isEmpty()) return false
  if (op.kind === 'prime') {
    s.whenPersisted(() => op.resolve())
    return true
  }
  if (op.kind === 'alloc') return tryAlloc(s, op)
  return tryClaim(s, op)
}

function tryAlloc(s: AllocatorState, op: Extract<Op, { kind: 'alloc' }>): boolean {
  const sub = cidrRange(op.subnet)
  const have = s.leases.get(op.id).find((l) => contains(sub, l.addr))
  if (have) {
    s.whenPersisted(() => op.resolve({ ip: have.addr, prefix: have.prefix }))
    return true
  }
  const within = intersect(hostRange(op.subnet), s.universe)!
  const addr = s.space.allocateLowest(within, op.id)
  if (addr !== undefined) {
    s.leases.add(op.id, { addr, prefix: op.subnet.prefix })
    s.freeDirty = true
    askAnswered(s, within)
    s.whenPersisted((err) => (err ? op.reject(new IpamError(500, `could not persist lease: ${err.message}`)) : op.resolve({ ip: addr, prefix: op.subnet.prefix })))
    return true
  }
  askForSpace(s, within)
  return false
}

function tryClaim(s: AllocatorState, op: Extract<Op, { kind: 'claim' }>): boolean {
  const addr = op.cidr.ip
  const owner = s.ring.owner(addr)!
  if (owner === s.self) {
    const holder = s.space.holder(addr)
    if (holder === op.id) {
      s.whenPersisted(() => op.resolve())
      return true
    }
    if (holder !== undefined) {
      op.reject(new IpamError(409, `address ${formatIp(addr)} is already owned by ${holder}`))
      return true
    }
    s.space.take(addr, op.id)
    s.leases.add(op.id, { addr, prefix: op.cidr.prefix })
    s.freeDirty = true
    s.whenPersisted((err) => (err ? op.reject(new IpamError(500, `could not persist lease: ${err.message}`)) : op.resolve()))
    return true
  }
  const now = s.now()
  if (now - op.lastSent < s.spaceRequestRetryMs) return false
  if (op.sends >= MAX_CLAIM_SENDS) {
    op.reject(new IpamError(409, `address ${formatIp(addr)} is owned by other peer ${s.describe(owner)}, which did not answer`))
    return true
  }
  op.sends++
  op.lastSent = now
  // A one-address space request: the owner donates it, or denies it when it is in use.
  s.unicast(owner, { v: WIRE_VERSION, t: 'req', start: addr, end: addr + 1 })
  return false
}

/** Addresses outside the universe belong to no ring: first come, first served, on this peer only. */
function claimOutside(s: AllocatorState, op: Extract<Op, { kind: 'claim' }>): boolean {
  const addr = op.cidr.ip
  const holder = s.outside.get(addr)
  if (holder !== undefined && holder !== op.id) {
    op.reject(new IpamError(409, `address ${formatIp(addr)} is already owned by ${holder}`))
    return true
  }
  if (holder === undefined) {
    s.outside.set(addr, op.id)
    s.leases.add(op.id, { addr, prefix: op.cidr.prefix })
  }
  s.whenPersisted(() => op.resolve())
  return true
}

function short(id: string): string {
  return /^[0-9a-f]{64}$/.test(id) ? id.slice(0, 12) : id
}
