/**
 * The kernel vxlan path's per-peer traffic: the kernel carries the frames, so the host counts them
 * (nftables counters by peer address, net/vxlan-counters.ts) and the router only keeps the set of
 * counted addresses equal to its peers' and reads the counters when asked (a scrape). Counting
 * is best-effort: without nft the path still runs, its traffic just goes uncounted (said once).
 */
import type { Logger } from '../deps'
import type { PathTraffic } from '../net'
import { HEARTBEAT_ETHERTYPE } from './fastdp-flows'

/** The host side (NetHost.kernelVxlan.counters). */
export interface VxlanCounterHost {
  ensure(heartbeatEthertype: number): Promise<void>
  update(add: readonly string[], del: readonly string[]): Promise<void>
  read(): Promise<Map<string, PathTraffic>>
  remove(): Promise<boolean>
}

/** Which counters to add and remove to count exactly `want`. Pure. */
export function planCounters(have: ReadonlySet<string>, want: ReadonlySet<string>): { add: string[]; del: string[] } {
  return { add: [...want].filter((ip) => !have.has(ip)), del: [...have].filter((ip) => !want.has(ip)) }
}

export class VxlanTraffic {
  private installed = new Set<string>()
  private chain: Promise<unknown> = Promise.resolve()
  /** Why nothing is counted (no nft, no table), once said. */
  private off: string | undefined = 'not started'

  constructor(private readonly host: VxlanCounterHost | undefined, private readonly log: Logger) {}

  /** Make the table (after the device); a failure leaves the path uncounted, not down. */
  async start(): Promise<void> {
    if (!this.host) { this.off = 'no counter host'; return }
    try {
      await this.host.ensure(HEARTBEAT_ETHERTYPE)
      this.installed = new Set()
      this.off = undefined
    } catch (err) {
      this.off = (err as Error).message.trim().split('\n').pop()
      this.log.warn(`kernel vxlan: per-peer traffic not counted (nftables): ${this.off}`)
    }
  }

  /** Count exactly the addresses in `want` (one transaction per change; bursts merged by the chain). */
  track(want: ReadonlySet<string>): Promise<unknown> {
    this.chain = this.chain.then(async () => {
      if (this.off !== undefined || !this.host) return
      const { add, del } = planCounters(this.installed, want)
      if (!add.length && !del.length) return
      try {
        await this.host.update(add, del)
        this.installed = new Set(want)
      } catch (err) {
        this.log.warn(`kernel vxlan: traffic counters: ${(err as Error).message}`)
      }
    })
    return this.chain
  }

  /** Counters by peer address; empty while nothing is counted. */
  async read(): Promise<Map<string, PathTraffic>> {
    if (this.off !== undefined || !this.host) return new Map()
    return this.host.read()
  }

  /** Remove the table (the device goes too; nothing would keep it in step). */
  async stop(): Promise<void> {
    await this.chain
    const was = this.off
    this.off = 'stopped'
    this.installed = new Set()
    if (was === undefined && this.host) await this.host.remove().catch((err: Error) => this.log.warn(`kernel vxlan: removing the counter table: ${err.message}`))
  }
}
