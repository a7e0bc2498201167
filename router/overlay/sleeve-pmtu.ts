/**
 * Sleeve path-MTU discovery by probing, for paths that lose big datagrams without a word: a
 * tunnel or firewall that drops them sends no ICMP "fragmentation needed", so the kernel's
 * figure (IP_MTU, lowered only by such ICMP) stays at the route's MTU and every full-size
 * datagram is lost, on every try. Weave probes (reference: "Sleeve PMTU"); so do we.
 *
 * A search per connection, pure (time passed in, no I/O): DF probe datagrams of a candidate size
 * go to the peer, which acknowledges each over the mesh connection (TCP, so the ack itself
 * cannot be lost to the same fault). The first candidate is the kernel's figure (the common case
 * ends with one probe); after that, a binary search between the largest size known to pass
 * (at least 552, RFC 791's minimum and Weave's floor) and the smallest known to fail. A candidate
 * fails when `tries` probes of it go unanswered for `timeoutMs` each.
 *
 * While the kernel's figure is known to fail, `usable()` is the largest size known to pass, so
 * traffic gets through (in smaller datagrams) even before the search ends. The search is run
 * again every `recheckMs` (paths change) and whenever the kernel's figure changes.
 */

/** The smallest MTU every IPv4 path must carry (RFC 791) and Weave's PMTU floor. */
export const PMTU_FLOOR = 552
/** How long to wait for a probe's ack. Acks go over TCP; a slow one only makes the result smaller until the next check. */
export const PMTU_PROBE_TIMEOUT_MS = 250
/** Probes of one candidate before it counts as too big. */
export const PMTU_PROBE_TRIES = 2
/** Weave re-checks the path MTU every 5 minutes. */
export const PMTU_RECHECK_MS = 5 * 60_000

export interface PmtuOptions {
  timeoutMs?: number
  tries?: number
  recheckMs?: number
}

export class PmtuSearch {
  /** The ceiling the current search started from (the kernel's figure then). */
  private ceiling: number | undefined
  /** Largest size known to pass / smallest known to fail, in this search. */
  private lo = PMTU_FLOOR
  private hi = 0
  /** The candidate being probed, its probes sent so far and when the last one left. */
  private trying: number | undefined
  private sent = 0
  private sentAt = 0
  /** The outcome of the last finished search (undefined: none yet). */
  private result: number | undefined
  private nextCheckAt = 0
  private readonly timeoutMs: number
  private readonly tries: number
  private readonly recheckMs: number

  constructor(o: PmtuOptions = {}) {
    this.timeoutMs = o.timeoutMs ?? PMTU_PROBE_TIMEOUT_MS
    this.tries = o.tries ?? PMTU_PROBE_TRIES
    this.recheckMs = o.recheckMs ?? PMTU_RECHECK_MS
  }

  /** Whether a search is running. */
  get searching(): boolean {
    return this.trying !== undefined
  }

  /**
   * What to send now, given the kernel's current figure: a probe of that many bytes of IP packet,
   * or undefined. Call often while `searching` (every probe timeout or faster), else now and then.
   */
  tick(kernelMtu: number, now: number): number | undefined {
    const ceiling = Math.max(PMTU_FLOOR, kernelMtu)
    if (this.trying === undefined) {
      if (ceiling !== this.ceiling || now >= this.nextCheckAt) this.begin(ceiling)
      else return undefined
    } else if (ceiling !== this.ceiling) this.begin(ceiling)
    if (this.trying === undefined) return undefined
    if (this.sent > 0 && now - this.sentAt < this.timeoutMs) return undefined
    if (this.sent >= this.tries) {
      this.hi = this.trying!
      if (!this.next(now)) return undefined
    }
    this.sent++
    this.sentAt = now
    return this.trying
  }

  /** The peer acknowledged a probe of `size` bytes: sizes up to it pass. */
  onAck(size: number, now: number): void {
    if (this.trying === undefined || size <= this.lo || (this.hi && size >= this.hi)) return
    this.lo = size
    if (size >= this.trying) this.next(now)
  }

  /**
   * The path MTU to use, when probing says something the kernel does not (undefined: trust the
   * kernel's figure): the last search's result when below the ceiling; during a search, once the
   * ceiling is known to fail, that result if not known to fail too, else the largest size known to pass.
   */
  usable(): number | undefined {
    const ceiling = this.ceiling ?? Infinity
    const last = this.result !== undefined && this.result < ceiling ? this.result : undefined
    if (this.trying === undefined || this.hi > ceiling) return last
    return last !== undefined && last < this.hi ? Math.max(last, this.lo) : this.lo
  }

  private begin(ceiling: number): void {
    this.ceiling = ceiling
    this.lo = PMTU_FLOOR
    this.hi = ceiling + 1
    this.trying = ceiling
    this.sent = 0
    if (ceiling <= PMTU_FLOOR) {
      this.lo = ceiling
      this.finish(0)
    }
  }

  /** Next candidate, or the end of the search; false when it ended. */
  private next(now: number): boolean {
    this.sent = 0
    if (this.hi - this.lo <= 1) {
      this.finish(now)
      return false
    }
    this.trying = Math.floor((this.lo + this.hi) / 2)
    return true
  }

  private finish(now: number): void {
    // an acked ceiling made lo the ceiling; otherwise lo is the largest size that passed
    this.result = this.lo
    this.trying = undefined
    this.nextCheckAt = now + this.recheckMs
  }
}
