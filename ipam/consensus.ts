/**
 * Agreement on the initial ring: single-decree Paxos whose messages are gossiped state.
 *
 * Every participating peer (an "elector") publishes one record: the highest proposal it promised,
 * the proposal it last accepted and that proposal's value. Only its owner changes a record, and
 * each change bumps the record's version, so the map of records merges as a CRDT over gossip.
 * A peer acts on what it sees:
 *  - acceptor: promise the highest proposal seen anywhere (promising is always safe); accept a
 *    proposal seen accepted anywhere if it is not below our promise (a proposal id names exactly
 *    one value, issued by its proposer, so seeing it accepted is seeing the accept request);
 *  - proposer (only a peer that needs the ring proposes, which avoids the duelling proposers that
 *    made Weave's 180-node consensus storms): when a quorum promised our proposal, accept it with
 *    the value of the highest accepted proposal among those promisers, or else our own value;
 *  - learner: a proposal accepted by a quorum is chosen.
 * The value is the sorted list of electors the proposer knows. Records are keyed by peer name and
 * persisted before they are gossiped, so a restarted peer is the same acceptor, never a second one.
 * The quorum comes from an explicit cluster size N: floor(N/2)+1.
 */
import type { PeerName } from '../router/mesh'

export interface ProposalId {
  round: number
  proposer: PeerName
}

export interface PaxosRecord {
  version: number
  promise?: ProposalId
  accepted?: ProposalId
  value?: PeerName[]
}

export type PaxosWire = Record<string, PaxosRecord>

export function compareProposal(a: ProposalId | undefined, b: ProposalId | undefined): number {
  if (!a || !b) return a ? 1 : b ? -1 : 0
  if (a.round !== b.round) return a.round - b.round
  return a.proposer < b.proposer ? -1 : a.proposer > b.proposer ? 1 : 0
}

function sameProposal(a: ProposalId | undefined, b: ProposalId | undefined): boolean {
  return !!a && !!b && compareProposal(a, b) === 0
}

export class Paxos {
  readonly records = new Map<PeerName, PaxosRecord>()

  /**
   * Whether a proposer may go ahead with a bare quorum of promises. Until it is set, a proposer
   * waits for promises from all `clusterSize` peers, so that (normally) every launch peer gets a
   * share of the initial ring; the allocator sets it after a short grace period.
   */
  allowPartial = false

  constructor(readonly self: PeerName, readonly quorum: number, own?: PaxosRecord, readonly clusterSize = quorum) {
    if (!(quorum >= 1)) throw new Error(`bad quorum ${quorum}`)
    this.records.set(self, own ? cloneRecord(own) : { version: 0 })
  }

  get own(): PaxosRecord {
    return this.records.get(this.self)!
  }

  /** Number of electors we have heard of, ourselves included. */
  known(): number {
    return this.records.size
  }

  /** Merge others' records (our own is ours alone); returns whether anything changed. */
  merge(wire: PaxosWire): boolean {
    let changed = false
    for (const [name, rec] of Object.entries(wire)) {
      if (name === this.self || !validRecord(rec)) continue
      const cur = this.records.get(name as PeerName)
      if (!cur || rec.version > cur.version) {
        this.records.set(name as PeerName, cloneRecord(rec))
        changed = true
      }
    }
    return changed
  }

  /** Start (or restart, above anything seen) a proposal of our own. */
  propose(): void {
    let round = 0
    for (const r of this.records.values()) round = Math.max(round, r.promise?.round ?? 0, r.accepted?.round ?? 0)
    this.update({ promise: { round: round + 1, proposer: this.self } })
  }

  /** Whether our own proposal is the highest promise around (so waiting on it makes sense). */
  leading(): boolean {
    const p = this.own.promise
    return !!p && p.proposer === this.self && sameProposal(p, this.highestPromise())
  }

  /** How many electors (us included) promised our own current proposal; 0 when we are not proposing. */
  promisesForMine(): number {
    const mine = this.own.promise
    if (!mine || mine.proposer !== this.self) return 0
    let n = 0
    for (const r of this.records.values()) if (sameProposal(r.promise, mine)) n++
    return n
  }

  /** Apply the acceptor and proposer rules to what we know; returns whether our record changed. */
  think(): boolean {
    const before = this.own.version
    const highest = this.highestPromise()
    if (compareProposal(highest, this.own.promise) > 0) this.update({ promise: highest })

    const acc = this.highestAccepted()
    if (acc && compareProposal(acc.id, this.own.promise) >= 0 && !sameProposal(acc.id, this.own.accepted)) {
      this.update({ promise: acc.id, accepted: acc.id, value: [...acc.value] })
    }

    const mine = this.own.promise
    if (mine && mine.proposer === this.self && !sameProposal(mine, this.own.accepted)) {
      const promisers = [...this.records.values()].filter((r) => sameProposal(r.promise, mine))
      if (promisers.length >= this.quorum && (promisers.length >= this.clusterSize || this.allowPartial)) {
        let best: PaxosRecord | undefined
        for (const r of promisers) if (r.accepted && r.value && compareProposal(r.accepted, best?.accepted) > 0) best = r
        const value = best?.value ? [...best.value] : [...this.records.keys()].sort()
        this.update({ accepted: mine, value })
      }
    }
    return this.own.version !== before
  }

  /** The chosen value, once a quorum accepted one proposal. */
  result(): PeerName[] | undefined {
    const counts = new Map<string, { n: number; value: PeerName[] }>()
    for (const r of this.records.values()) {
      if (!r.accepted || !r.value) continue
      const key = `${r.accepted.round}/${r.accepted.proposer}`
      const c = counts.get(key) ?? { n: 0, value: r.value }
      c.n++
      counts.set(key, c)
      if (c.n >= this.quorum) return [...c.value]
    }
    return undefined
  }

  toWire(): PaxosWire {
    const out: PaxosWire = {}
    for (const [k, v] of this.records) out[k] = cloneRecord(v)
    return out
  }

  private update(change: Partial<PaxosRecord>): void {
    const own = this.own
    this.records.set(this.self, { ...own, ...change, version: own.version + 1 })
  }

  private highestPromise(): ProposalId | undefined {
    let best: ProposalId | undefined
    for (const r of this.records.values()) if (compareProposal(r.promise, best) > 0) best = r.promise
    return best
  }

  private highestAccepted(): { id: ProposalId; value: PeerName[] } | undefined {
    let best: { id: ProposalId; value: PeerName[] } | undefined
    for (const r of this.records.values()) {
      if (r.accepted && r.value && compareProposal(r.accepted, best?.id) > 0) best = { id: r.accepted, value: r.value }
    }
    return best
  }
}

function cloneRecord(r: PaxosRecord): PaxosRecord {
  return {
    version: r.version,
    ...(r.promise ? { promise: { ...r.promise } } : {}),
    ...(r.accepted ? { accepted: { ...r.accepted } } : {}),
    ...(r.value ? { value: [...r.value] } : {}),
  }
}

function validProposal(p: unknown): boolean {
  if (p === undefined) return true
  const o = p as ProposalId
  return !!o && typeof o === 'object' && Number.isInteger(o.round) && o.round >= 0 && typeof o.proposer === 'string'
}

function validRecord(r: unknown): r is PaxosRecord {
  const o = r as PaxosRecord
  return (
    !!o && typeof o === 'object' && Number.isInteger(o.version) && validProposal(o.promise) && validProposal(o.accepted) &&
    (o.value === undefined || (Array.isArray(o.value) && o.value.every((v) => typeof v === 'string')))
  )
}
