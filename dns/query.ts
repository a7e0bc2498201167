/** The query path: rate limit per source → answer from the records → forward upstream, counted. */
import type { Clock, Rng } from '../router/deps'
import { answerQuery, servfail } from './answer'
import type { SourceLimiter } from './rate-limit'
import type { Records } from './records'
import type { DnsCounters } from './types'
import type { Upstream } from './upstream'

export interface QueryPath {
  domain: string
  ttlSeconds: number
  records: Records
  limiter: SourceLimiter
  upstream: Upstream
  counters: DnsCounters
  clock: Clock
  /** Shuffles the addresses of a name with several (a client takes the first). */
  rng: Rng
}

export type QueryHandler = (query: Buffer, transport: 'udp' | 'tcp', source: string) => Buffer | undefined | Promise<Buffer | undefined>

/** Local answers return at once (no promise per query: this is the hot path); forwards return a promise. */
export function createQueryHandler(q: QueryPath): QueryHandler {
  const { counters, records } = q
  const shuffle = <T>(xs: readonly T[]): T[] => {
    const a = [...xs]
    for (let i = a.length - 1; i > 0; i--) {
      const j = q.rng.int(i + 1)
      ;[a[i], a[j]] = [a[j], a[i]]
    }
    return a
  }
  return (query, transport, source) => {
    counters.queries++
    if (!q.limiter.allow(source, q.clock.now())) { counters.rateLimited++; return undefined }
    const d = answerQuery(query, transport, { domain: q.domain, ttlSeconds: q.ttlSeconds, lookup: (n) => records.lookup(n), reverse: (a) => records.reverse(a), shuffle })
    if (d.kind === 'drop') { counters.malformed++; return undefined }
    if (d.kind === 'reply') {
      if (d.rcode === 'FORMERR' || d.rcode === 'NOTIMP') counters.malformed++
      else if (d.rcode === 'NXDOMAIN') counters.nxdomain++
      else counters.answeredLocally++
      if (d.truncated) counters.truncated++
      return d.bytes
    }
    counters.forwarded++
    return q.upstream.forward(query, transport).then((r) => {
      if (r) return r
      counters.servfail++
      return servfail(d.query, transport)
    })
  }
}
