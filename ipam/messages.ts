/**
 * Wire format of the `ipam` gossip channel: versioned JSON (small, debuggable; IPAM traffic is a
 * few messages per ring change). Decoding untrusted bytes returns a value, never throws.
 *
 * Gossip/broadcast: `{v:1, ring?, paxos?, want?, hello?}`; `want` asks peers with a ring to unicast
 * it (an observer priming) and electors without one to start consensus; `hello` (a peer without a
 * ring that just met peers) asks for the ring or the consensus state, starting nothing. Unicast: `{v:1, t, ...}` with t one of
 *   'req'      please donate space in [start,end) (a subnet, or one claimed address)
 *   'denied'   nothing free for that request
 *   'ring'     our ring, after a donation or in answer to `want`
 *   'handoff'  reset: our ranges are now yours (ring attached), please confirm
 *   'handoff-ack'
 *   'rmpeer-ask'   may I take over dead peer `peer`? (each peer grants one asker per dead peer)
 *   'rmpeer-vote'  the answer, `ok` with a `reason` when not
 */
import type { GossipData } from '../router/mesh'
import type { RingWire } from './ring'
import type { PaxosWire } from './consensus'

export const WIRE_VERSION = 1

export interface GossipMsg {
  v: number
  ring?: RingWire
  paxos?: PaxosWire
  want?: boolean
  hello?: boolean
}

export type UnicastMsg =
  | { v: number; t: 'req'; start: number; end: number }
  | { v: number; t: 'denied'; start: number; end: number }
  | { v: number; t: 'ring'; ring: RingWire }
  | { v: number; t: 'handoff'; ring: RingWire }
  | { v: number; t: 'handoff-ack' }
  | { v: number; t: 'rmpeer-ask'; peer: string }
  | { v: number; t: 'rmpeer-vote'; peer: string; ok: boolean; reason?: string }

const enc = new TextEncoder()
const dec = new TextDecoder()

export function encodeMsg(m: GossipMsg | UnicastMsg): Uint8Array {
  return enc.encode(JSON.stringify(m))
}

/** Cap on one IPAM message: a ring of tens of thousands of entries fits well below it. */
const MAX_MSG_BYTES = 8 << 20

export type Decoded<T> = { ok: true; msg: T } | { ok: false; reason: string }

function parse(bytes: Uint8Array): Decoded<Record<string, unknown>> {
  if (bytes.length > MAX_MSG_BYTES) return { ok: false, reason: 'too-large' }
  let o: unknown
  try {
    o = JSON.parse(dec.decode(bytes))
  } catch {
    return { ok: false, reason: 'not-json' }
  }
  if (!o || typeof o !== 'object') return { ok: false, reason: 'not-object' }
  const r = o as Record<string, unknown>
  if (r.v !== WIRE_VERSION) return { ok: false, reason: `bad-version ${String(r.v)}` }
  return { ok: true, msg: r }
}

export function decodeGossip(bytes: Uint8Array): Decoded<GossipMsg> {
  const p = parse(bytes)
  if (!p.ok) return p
  const m = p.msg
  if (m.paxos !== undefined && (typeof m.paxos !== 'object' || m.paxos === null)) return { ok: false, reason: 'bad-paxos' }
  return { ok: true, msg: m as unknown as GossipMsg }
}

export function decodeUnicast(bytes: Uint8Array): Decoded<UnicastMsg> {
  const p = parse(bytes)
  if (!p.ok) return p
  const m = p.msg
  switch (m.t) {
    case 'req':
    case 'denied':
      if (!Number.isInteger(m.start) || !Number.isInteger(m.end)) return { ok: false, reason: 'bad-range' }
      return { ok: true, msg: m as unknown as UnicastMsg }
    case 'ring':
    case 'handoff':
      if (!m.ring) return { ok: false, reason: 'no-ring' }
      return { ok: true, msg: m as unknown as UnicastMsg }
    case 'handoff-ack':
      return { ok: true, msg: m as unknown as UnicastMsg }
    case 'rmpeer-ask':
      if (typeof m.peer !== 'string') return { ok: false, reason: 'bad-peer' }
      return { ok: true, msg: m as unknown as UnicastMsg }
    case 'rmpeer-vote':
      if (typeof m.peer !== 'string' || typeof m.ok !== 'boolean') return { ok: false, reason: 'bad-vote' }
      return { ok: true, msg: m as unknown as UnicastMsg }
    default:
      return { ok: false, reason: `unknown-type ${String(m.t)}` }
  }
}

/** Gossip payload handed to the mesh: one or more encoded messages, merged by concatenation. */
export class IpamGossipData implements GossipData {
  constructor(private readonly msgs: Uint8Array[]) {}
  encode(): Uint8Array[] {
    return this.msgs
  }
  merge(other: GossipData): GossipData {
    // Full-state snapshots: a later one supersedes an identical-origin earlier one, but relayed
    // data may come from several origins, so keep both (bounded; the oldest go first).
    const all = [...this.msgs, ...other.encode()]
    return new IpamGossipData(all.slice(-8))
  }
}
