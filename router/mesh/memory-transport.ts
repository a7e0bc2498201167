/**
 * An in-memory network of MeshTransports, for handshake tests and router simulations.
 *
 *   const net = createMemoryNetwork({ clock, rng, logger }, { mode: 'direct' })
 *   const ta = net.transport('10.0.0.1:6783', identityA)
 *   await ta.listen(onConn); const conn = await tb.dial('10.0.0.1:6783')
 *   net.cut('10.0.0.1', '10.0.0.2'); net.heal(...); net.flush()
 *
 * Modes:
 * - `bytes` (default): both ends run the real handshake, framing, envelope and (with passwords)
 *   crypto over an in-memory pipe, exactly as over TCP.
 * - `direct`: no bytes at all; dial applies the same checks (versions, encryption/password
 *   mismatch, self-connection) and the two connections pass message objects. For simulations of
 *   hundreds of peers in one process.
 *
 * Delivery is asynchronous and deterministic: every write or message is a task on one FIFO queue
 * for the whole network. By default the queue drains itself in a microtask; with
 * `autoFlush: false` nothing moves until the simulation calls `flush()`, which delivers until the
 * queue is empty (tasks posted while flushing included) and returns how many it delivered.
 *
 * Links: `cut(a, b)` drops everything between two hosts (addresses or bare IPs) from then on,
 * including what is in flight, silently: heartbeats notice it (in `heartbeatTimeoutMs` of the
 * injected clock) unless `{ close: true }` closes the connections between them at once. A dial
 * over a cut link, or to an address nobody listens on, rejects at once with an `io-error`.
 * Heartbeats and handshake timeouts use the injected Clock, so a FakeClock drives them. The
 * network takes no virtual time: before any of its timers fires it delivers everything queued,
 * so a simulation that advances a FakeClock by many seconds at once does not see heartbeat
 * timeouts on healthy links (only cut ones).
 *
 * The transports, each at an address, are in memory-endpoint.ts; what links two of them in
 * memory-links.ts; the network's clock in coalesced-clock.ts.
 */
import type { Clock, Logger, Rng } from '../deps'
import type { LocalIdentity, MeshTransport } from './connection-contract'
import { coalescedClock } from './coalesced-clock'
import { MemoryTransport, type MemoryNet, type MemoryTransportOptions } from './memory-endpoint'
import { hostOf } from './memory-links'

export type { MemoryTransportOptions } from './memory-endpoint'

export interface MemoryNetworkDeps { clock: Clock; rng: Rng; logger: Logger }

export interface MemoryNetworkOptions {
  mode?: 'bytes' | 'direct'
  /** Drain the delivery queue by itself in a microtask (default true). */
  autoFlush?: boolean
}

export interface MemoryNetwork {
  /** A transport at `addr` ("ip:port"); dial it by that address once it listens. */
  transport(addr: string, local: LocalIdentity, opts?: MemoryTransportOptions): MeshTransport
  /** Drop all traffic between two hosts (addresses or IPs); `close` also closes their connections. */
  cut(a: string, b: string, opts?: { close?: boolean }): void
  heal(a: string, b: string): void
  /** Deliver until nothing is queued; returns the number of deliveries. */
  flush(limit?: number): number
  /** Deliveries queued. */
  pending(): number
}

interface Task { from: string; to: string; fn: () => void }

export function createMemoryNetwork(deps: MemoryNetworkDeps, netOpts: MemoryNetworkOptions = {}): MemoryNetwork {
  const autoFlush = netOpts.autoFlush ?? true
  const cuts = new Set<string>()
  let queue: Task[] = []
  let head = 0
  let scheduled = false
  let port = 40000
  const pairKey = (a: string, b: string) => { const x = hostOf(a), y = hostOf(b); return x < y ? `${x}|${y}` : `${y}|${x}` }
  const isCut = (a: string, b: string) => cuts.size > 0 && cuts.has(pairKey(a, b))

  function post(from: string, to: string, fn: () => void): void {
    queue.push({ from, to, fn })
    if (autoFlush && !scheduled) {
      scheduled = true
      queueMicrotask(() => { scheduled = false; flush() })
    }
  }

  function flush(limit = Infinity): number {
    let n = 0
    while (head < queue.length && n < limit) {
      const t = queue[head++]
      if (head > 1024 && head * 2 > queue.length) { queue = queue.slice(head); head = 0 }
      if (isCut(t.from, t.to)) continue
      n++
      t.fn()
    }
    if (head >= queue.length) { queue = []; head = 0 }
    return n
  }

  const net: MemoryNet = {
    deps,
    mode: netOpts.mode ?? 'bytes',
    // The clock the network's connections and handshakes use: deliveries first, then the timer.
    clock: coalescedClock(deps.clock, () => flush()),
    listeners: new Map<string, MemoryTransport>(),
    transports: new Set<MemoryTransport>(),
    post,
    isCut,
    nextPort: () => port++,
  }

  return {
    transport(addr, local, opts = {}) {
      const t = new MemoryTransport(net, addr, local, opts)
      net.transports.add(t)
      return t
    },
    cut(a, b, opts = {}) {
      cuts.add(pairKey(a, b))
      if (!opts.close) return
      const ha = hostOf(a), hb = hostOf(b)
      for (const t of [...net.transports]) {
        for (const c of [...t.conns]) {
          const hr = hostOf(c.remoteAddr)
          if ((t.host === ha && hr === hb) || (t.host === hb && hr === ha)) c.shutdown('link cut', false)
        }
      }
    },
    heal(a, b) { cuts.delete(pairKey(a, b)) },
    flush,
    pending: () => queue.length - head,
  }
}
