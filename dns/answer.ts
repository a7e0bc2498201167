/**
 * What weaveDNS does with one query (pure: bytes in, a decision out; no sockets, no clock).
 *
 * - A for a name in the domain: every live address, shuffled per query; a single label gets the
 *   domain appended; names are case-insensitive (the question is echoed as asked).
 * - Other types for a known name: NOERROR with no answer. Unknown names in the domain: NXDOMAIN.
 * - PTR for an address we hold: its names; every other question is forwarded upstream.
 * - UDP answers fit 512 bytes, or the client's EDNS size; what does not fit is cut and TC set, so
 *   the client asks again over TCP, which gets everything (up to 65535 bytes).
 * - Garbage is dropped (no header) or answered FORMERR (a header we can answer to); both counted.
 */
import * as packet from 'dns-packet'
import type { Answer, DecodedPacket, Packet } from 'dns-packet'
import { addressOfReverseName, inDomain, qualify } from './names'

export interface AnswerContext {
  /** Normalized (`weave.local.`). */
  domain: string
  ttlSeconds: number
  lookup(fqdn: string): string[]
  reverse(address: string): string[]
  /** Returns a shuffled copy. */
  shuffle<T>(xs: readonly T[]): T[]
}

export type Decision =
  | { kind: 'reply'; bytes: Buffer; rcode: Rcode; truncated: boolean; local: boolean }
  | { kind: 'forward'; query: DecodedPacket; id: number }
  | { kind: 'drop'; reason: 'malformed' | 'not-a-query' }

export type Rcode = 'NOERROR' | 'FORMERR' | 'SERVFAIL' | 'NXDOMAIN' | 'NOTIMP' | 'REFUSED'
const RCODE: Record<Rcode, number> = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 }

export const UDP_MIN_SIZE = 512
/** We never promise more than this over UDP (fragmentation beyond it loses answers). */
export const UDP_MAX_SIZE = 4096
const TCP_MAX_SIZE = 65535

export function answerQuery(bytes: Buffer, transport: 'udp' | 'tcp', ctx: AnswerContext): Decision {
  if (bytes.length < 12) return { kind: 'drop', reason: 'malformed' }
  if (bytes[2] & 0x80) return { kind: 'drop', reason: 'not-a-query' } // QR set: a response, never answer one (loops)
  let q: DecodedPacket
  try {
    q = packet.decode(bytes)
  } catch {
    return reply(headerOnly(bytes), 'FORMERR', transport, false)
  }
  if ((q as { opcode?: string }).opcode !== 'QUERY') return reply(q, 'NOTIMP', transport, false)
  const questions = q.questions ?? []
  if (questions.length !== 1) return reply(q, 'FORMERR', transport, false)
  const question = questions[0]
  if (question.class !== 'IN') return { kind: 'forward', query: q, id: q.id ?? 0 }

  if (question.type === 'PTR') {
    const ip = addressOfReverseName(question.name)
    const names = ip ? ctx.reverse(ip) : []
    if (!names.length) return { kind: 'forward', query: q, id: q.id ?? 0 }
    const answers: Answer[] = names.map((n) => ({ type: 'PTR', class: 'IN', name: question.name, ttl: ctx.ttlSeconds, data: n.replace(/\.$/, '') }))
    return reply(q, 'NOERROR', transport, true, answers)
  }

  const fqdn = qualify(question.name, ctx.domain)
  if (!inDomain(fqdn, ctx.domain)) return { kind: 'forward', query: q, id: q.id ?? 0 }
  const addrs = ctx.lookup(fqdn)
  if (!addrs.length) return reply(q, 'NXDOMAIN', transport, true)
  if (question.type !== 'A' && (question.type as string) !== 'ANY') return reply(q, 'NOERROR', transport, true)
  const answers: Answer[] = ctx.shuffle(addrs).map((a) => ({ type: 'A', class: 'IN', name: question.name, ttl: ctx.ttlSeconds, data: a }))
  return reply(q, 'NOERROR', transport, true, answers)
}

/** SERVFAIL for a query no upstream answered. */
export function servfail(q: DecodedPacket, transport: 'udp' | 'tcp'): Buffer {
  return (reply(q, 'SERVFAIL', transport, false) as { bytes: Buffer }).bytes
}

/** The largest UDP answer this query allows. */
export function udpLimit(q: Packet): number {
  const opt = (q.additionals ?? []).find((a) => a.type === 'OPT') as { udpPayloadSize?: number } | undefined
  if (!opt || !opt.udpPayloadSize) return UDP_MIN_SIZE
  return Math.min(UDP_MAX_SIZE, Math.max(UDP_MIN_SIZE, opt.udpPayloadSize))
}

function headerOnly(bytes: Buffer): DecodedPacket {
  const flags = bytes.readUInt16BE(2)
  return { id: bytes.readUInt16BE(0), type: 'query', flags, questions: [], answers: [], authorities: [], additionals: [] } as unknown as DecodedPacket
}

function reply(q: DecodedPacket, rcode: Rcode, transport: 'udp' | 'tcp', local: boolean, answers: Answer[] = []): Decision {
  const hasOpt = (q.additionals ?? []).some((a) => a.type === 'OPT')
  const rd = (q.flags ?? 0) & packet.RECURSION_DESIRED
  let flags = rd | packet.RECURSION_AVAILABLE | RCODE[rcode] | (local ? packet.AUTHORITATIVE_ANSWER : 0)
  const base: Packet = {
    type: 'response',
    id: q.id ?? 0,
    flags,
    questions: q.questions ?? [],
    answers,
    additionals: hasOpt ? [{ type: 'OPT', name: '.', udpPayloadSize: UDP_MAX_SIZE, flags: 0 } as unknown as Answer] : [],
  }
  const limit = transport === 'tcp' ? TCP_MAX_SIZE : udpLimit(q)
  // The common case fits: encode once (dns-packet sizes the buffer itself).
  const whole = packet.encode(base)
  if (whole.length <= limit) return { kind: 'reply', bytes: whole, rcode, truncated: false, local }
  let len = whole.length
  let truncated = false
  if (len > limit) {
    // Keep as many answers as fit (each costs the same here), then say TC.
    truncated = true
    const per = answers.length ? (len - packet.encodingLength({ ...base, answers: [] })) / answers.length : 0
    let keep = per ? Math.max(0, Math.floor((limit - (len - per * answers.length)) / per)) : 0
    while (keep > 0 && packet.encodingLength({ ...base, answers: answers.slice(0, keep) }) > limit) keep--
    flags |= packet.TRUNCATED_RESPONSE
    base.flags = flags
    base.answers = answers.slice(0, keep)
    len = packet.encodingLength(base)
  }
  return { kind: 'reply', bytes: packet.encode(base), rcode, truncated, local }
}
