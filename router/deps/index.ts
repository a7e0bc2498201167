/**
 * Runtime pieces injected into every protocol core: time, randomness, logging.
 * Below the CLI nothing calls Date.now, setTimeout or Math.random directly; it takes
 * a Clock and an Rng from here, so tests can run on virtual time with a seeded source.
 */
import { randomBytes } from 'node:crypto'

/** Milliseconds since an arbitrary origin, and one-shot timers. */
export interface Clock {
  now(): number
  /** Run `fn` once after `ms`; the returned function cancels it. */
  setTimer(ms: number, fn: () => void): () => void
}

/** Uniform randomness; `next()` is in [0, 1). */
export interface Rng {
  next(): number
  /** Uniform integer in [0, n). */
  int(n: number): number
  /** `n` random bytes. */
  bytes(n: number): Uint8Array
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
export interface Logger {
  debug(msg: string): void
  info(msg: string): void
  warn(msg: string): void
  error(msg: string): void
  /** A logger whose lines are prefixed with `[scope]`. */
  child(scope: string): Logger
}

/** The real clock. Timers are unref'd so a pending timer never keeps a process alive by itself. */
export function systemClock(): Clock {
  return {
    now: () => Date.now(),
    setTimer(ms, fn) {
      const t = setTimeout(fn, ms)
      t.unref?.()
      return () => clearTimeout(t)
    },
  }
}

/** Cryptographically strong randomness for production use. */
export function cryptoRng(): Rng {
  return {
    next: () => randomBytes(6).readUIntBE(0, 6) / 2 ** 48,
    int(n) { return Math.floor(this.next() * n) },
    bytes: (n) => new Uint8Array(randomBytes(n)),
  }
}

/** Deterministic randomness (mulberry32) for simulations: a failing test prints its seed. */
export function seededRng(seed: number): Rng {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return {
    next,
    int: (n) => Math.floor(next() * n),
    bytes(n) {
      const out = new Uint8Array(n)
      for (let i = 0; i < n; i++) out[i] = Math.floor(next() * 256)
      return out
    },
  }
}

/**
 * Virtual time for simulations and unit tests: timers fire only inside `advance`/`runUntilIdle`,
 * in deadline order (ties in creation order), so a run is deterministic.
 */
export class FakeClock implements Clock {
  private t: number
  private seq = 0
  private timers = new Map<number, { at: number; fn: () => void }>()
  constructor(start = 0) { this.t = start }
  now(): number { return this.t }
  setTimer(ms: number, fn: () => void): () => void {
    const id = this.seq++
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn })
    return () => { this.timers.delete(id) }
  }
  /** Number of timers not yet fired or cancelled. */
  pending(): number { return this.timers.size }
  /** Move time forward by `ms`, firing every timer that falls due on the way. */
  advance(ms: number): void {
    const end = this.t + ms
    for (;;) {
      const next = this.earliest()
      if (!next || next.at > end) break
      this.timers.delete(next.id)
      this.t = Math.max(this.t, next.at)
      next.fn()
    }
    this.t = end
  }
  /** Fire timers until none is due within `limitMs` of now; returns the time advanced. */
  runUntilIdle(limitMs = 60_000): number {
    const start = this.t
    for (;;) {
      const next = this.earliest()
      if (!next || next.at > start + limitMs) break
      this.timers.delete(next.id)
      this.t = Math.max(this.t, next.at)
      next.fn()
    }
    return this.t - start
  }
  private earliest(): { id: number; at: number; fn: () => void } | undefined {
    let best: { id: number; at: number; fn: () => void } | undefined
    for (const [id, tm] of this.timers) if (!best || tm.at < best.at) best = { id, ...tm }
    return best
  }
}

export interface LogSink { write(line: string): void }

/** A line logger: `2026-01-01T00:00:00.000Z WARN [mesh] message`. */
export function createLogger(sink: LogSink, opts: { level?: LogLevel; clock?: { now(): number }; scope?: string } = {}): Logger {
  const order: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 }
  const min = order[opts.level ?? 'info']
  const clock = opts.clock ?? { now: () => Date.now() }
  const make = (scope: string | undefined): Logger => {
    const emit = (level: LogLevel, msg: string) => {
      if (order[level] < min) return
      const prefix = scope ? `[${scope}] ` : ''
      sink.write(`${new Date(clock.now()).toISOString()} ${level.toUpperCase()} ${prefix}${msg}\n`)
    }
    return {
      debug: (m) => emit('debug', m),
      info: (m) => emit('info', m),
      warn: (m) => emit('warn', m),
      error: (m) => emit('error', m),
      child: (s) => make(scope ? `${scope}/${s}` : s),
    }
  }
  return make(opts.scope)
}

/** A logger that keeps lines in memory: for tests that assert what was logged. */
export function memoryLogger(level: LogLevel = 'debug'): Logger & { lines: string[] } {
  const lines: string[] = []
  const log = createLogger({ write: (l) => lines.push(l.trimEnd()) }, { level, clock: { now: () => 0 } })
  return Object.assign(log, { lines })
}

/** A logger that drops everything. */
export const nullLogger: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => nullLogger }

export { BoundedMap, LogOnce, evictOldest } from './bounded'
