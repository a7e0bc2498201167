/**
 * The driver of encrypted fastdp: one EspPeer (fastdp-ipsec) per peer that fastdp may carry,
 * its xfrm operations applied one job at a time (so a reconnect's teardown and setup of the same
 * address pair never interleave), a tick for rotations, and the control messages to the peers.
 *
 * ```ts
 * const esp = new EspDriver({ rotation: { intervalMs: 60_000 } }, { clock, logger, xfrm: createXfrm(), send })
 * await esp.add(shortId, pair)        // rejects: this peer stays on sleeve
 * esp.onControl(shortId, msg)         // from the overlay's {t:'esp'} messages
 * await esp.remove(shortId)           // after the datapath stopped tunnelling to it
 * await esp.stop()
 * ```
 */
import type { Clock, Logger } from '../deps'
import type { Xfrm } from '../net'
import { DEFAULT_ESP_ROTATION, EspPeer, type EspControl, type EspPair, type EspRotation, type EspStatus, type EspStep } from './fastdp-ipsec'

export interface EspDriverConfig {
  rotation?: Partial<EspRotation>
  /** How often rotations and due deletions are checked. Default 1 s. */
  tickMs?: number
  /** How often the outbound SA's byte counter is read (when maxBytes is finite). Default 10 s. */
  bytesEveryMs?: number
}

export interface EspDriverDeps {
  clock: Clock
  logger: Logger
  xfrm: Xfrm
  /** Send our ESP state to a peer over its mesh connection. */
  send(shortId: number, m: EspControl): void
}

interface Entry { esp: EspPeer; bytesAt: number; failed: boolean }

export class EspDriver {
  private readonly peers = new Map<number, Entry>()
  private queue: Promise<void> = Promise.resolve()
  private cancelTick: (() => void) | undefined
  private readonly rotation: EspRotation
  private readonly log: Logger

  constructor(private readonly config: EspDriverConfig, private readonly deps: EspDriverDeps) {
    this.rotation = { ...DEFAULT_ESP_ROTATION, ...config.rotation }
    this.log = deps.logger.child('esp')
  }

  /** Runs `job` after every earlier one; the returned promise settles with it. */
  private enqueue<T>(job: () => Promise<T>): Promise<T> {
    const p = this.queue.then(job)
    this.queue = p.then(() => undefined, () => undefined)
    return p
  }

  private carryOut(shortId: number, step: EspStep, what: string): void {
    if (!step.ops.length && !step.send) return
    this.enqueue(async () => {
      if (step.ops.length) await this.deps.xfrm.apply(step.ops)
      // announce only what is installed: "accepting e+1" after the inbound SA exists
      if (step.send && this.peers.has(shortId)) this.deps.send(shortId, step.send)
    }).catch((err: Error) => {
      const e = this.peers.get(shortId)
      if (e && !e.failed) this.log.warn(`peer ${shortId}: ${what}: ${err.message}`)
      if (e) e.failed = true
    })
  }

  /** Install the pair's SAs and policies; resolves once they are in place. */
  add(shortId: number, pair: EspPair): Promise<void> {
    if (this.peers.has(shortId)) return Promise.reject(new Error(`ESP for peer ${shortId} already set up`))
    const esp = new EspPeer(pair, this.rotation)
    const entry: Entry = { esp, bytesAt: this.deps.clock.now(), failed: false }
    this.peers.set(shortId, entry)
    const step = esp.start(this.deps.clock.now())
    this.ensureTick()
    return this.enqueue(async () => {
      try {
        await this.deps.xfrm.apply(step.ops)
      } catch (err) {
        // leave nothing half-made behind; the peer stays on sleeve
        if (this.peers.get(shortId) === entry) this.peers.delete(shortId)
        await this.deps.xfrm.apply(esp.stop().ops, { bestEffort: true })
        throw err
      }
      if (step.send && this.peers.get(shortId) === entry) this.deps.send(shortId, step.send)
    })
  }

  has(shortId: number): boolean { return this.peers.has(shortId) }

  onControl(shortId: number, m: EspControl): void {
    const e = this.peers.get(shortId)
    if (!e) return // before add() or after remove(): the periodic announce repeats it
    this.carryOut(shortId, e.esp.onControl(m, this.deps.clock.now()), 'peer state')
  }

  /**
   * Remove the pair's SAs, policies and drop rule, once `after` settled (the datapath stopped
   * tunnelling to it). Queued at once, so a reconnect's add() of the same pair runs after it.
   */
  remove(shortId: number, after?: Promise<unknown>): Promise<void> {
    const e = this.peers.get(shortId)
    if (!e) return Promise.resolve()
    this.peers.delete(shortId)
    const step = e.esp.stop()
    return this.enqueue(async () => {
      await after?.catch(() => undefined)
      await this.deps.xfrm.apply(step.ops, { bestEffort: true })
    })
  }

  status(shortId: number): EspStatus | undefined { return this.peers.get(shortId)?.esp.status() }

  report(): Record<string, EspStatus & { failed: boolean }> {
    const out: Record<string, EspStatus & { failed: boolean }> = {}
    for (const [id, e] of this.peers) out[String(id)] = { ...e.esp.status(), failed: e.failed }
    return out
  }

  async stop(): Promise<void> {
    this.cancelTick?.()
    this.cancelTick = undefined
    await Promise.all([...this.peers.keys()].map((id) => this.remove(id)))
    await this.queue // removals queued earlier (peers gone just before) finish too
  }

  private ensureTick(): void {
    if (this.cancelTick) return
    this.cancelTick = this.deps.clock.setTimer(this.config.tickMs ?? 1_000, () => {
      this.cancelTick = undefined
      void this.tick().finally(() => { if (this.peers.size) this.ensureTick() })
    })
  }

  private async tick(): Promise<void> {
    const now = this.deps.clock.now()
    const every = this.config.bytesEveryMs ?? 10_000
    for (const [id, e] of [...this.peers]) {
      let bytes: number | undefined
      if (Number.isFinite(this.rotation.maxBytes) && now - e.bytesAt >= every) {
        e.bytesAt = now
        bytes = await this.deps.xfrm.outBytes(e.esp.outSa())
      }
      if (this.peers.get(id) !== e) continue
      const before = e.esp.status().sending
      const step = e.esp.tick(now, bytes)
      if (e.esp.status().sending !== before) this.log.info(`peer ${id}: ESP epoch ${e.esp.status().sending}`)
      this.carryOut(id, step, 'rotation')
    }
  }
}
