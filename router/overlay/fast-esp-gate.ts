/**
 * Encrypted fast path (with a password): kernel ESP on the vxlan tunnel (see fastdp-ipsec).
 * Before a fast-path candidate gets any tunnel, its SAs, policies and plaintext drop must be in
 * place; the peer stays on the sleeve meanwhile. The same gate serves OVS fastdp and the kernel
 * vxlan path: both tunnel over UDP 6784 between the same addresses.
 */
import type { Clock, Logger } from '../deps'
import type { Xfrm } from '../net'
import { EspDriver } from './fastdp-esp'
import { ESP_VXLAN_PORT, type EspControl } from './fastdp-ipsec'
import { chooseOverlay } from './overlay'
import type { OverlayPeerHello, SleeveOverlay } from './sleeve-overlay'

export interface FastEspGate {
  /**
   * True when the hello's peer may get its tunnel now (ESP in place, or not needed); else starts
   * the setup, keeps the peer on the sleeve and calls `again` once it is done.
   */
  first(h: OverlayPeerHello, again: () => void): boolean
  /** The peer's connection is gone: its ESP goes once `tunnelOut` (its tunnel's removal) settled. */
  gone(shortId: number, tunnelOut: Promise<unknown> | undefined): void
  onControl(shortId: number, m: EspControl): void
  /** Whether ESP protects the tunnel to `peer` now. */
  protects(peer: string): boolean
  report(): Record<string, unknown>
  stop(): Promise<void>
}

export function createFastEspGate(
  config: { rotateMs?: number },
  deps: {
    clock: Clock; logger: Logger; xfrm: () => Xfrm; sleeve: () => SleeveOverlay
    ready: () => boolean; why: () => string | undefined; kind: () => string | undefined; selfName: () => string
    /** The setup failed: the peer goes by sleeve only. */
    fallback: (h: OverlayPeerHello) => void
  },
): FastEspGate {
  const log = deps.logger
  const driver = new EspDriver(
    { rotation: config.rotateMs ? { intervalMs: config.rotateMs } : undefined },
    { clock: deps.clock, logger: log, xfrm: deps.xfrm(), send: (id, m) => { deps.sleeve().sendEsp(id, m) } },
  )
  /** The hello whose ESP setup is under way or done, per peer (a reconnect brings a new one). */
  const espFor = new Map<number, { h: OverlayPeerHello; done: boolean }>()

  return {
    first(h, again) {
      if (!h.esp) return true // chooseOverlay refuses the fast path without ESP
      if (chooseOverlay({ ready: deps.ready(), why: deps.why(), encrypt: true, kind: deps.kind() }, h).via !== 'fastdp') return true
      const cur = espFor.get(h.shortId)
      if (cur?.h === h && cur.done) return true
      if (cur?.h === h) return false
      const local = h.esp.localIp
      if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(local)) return true // not IPv4: chooseOverlay's IPv4 rule applies to the peer only
      const entry = { h, done: false }
      espFor.set(h.shortId, entry)
      deps.sleeve().setVia(h.shortId, 'sleeve', 'setting up ESP')
      driver.add(h.shortId, {
        self: { name: deps.selfName(), ip: local, nonce: h.esp.ours },
        peer: { name: h.peer, ip: h.ip, nonce: h.esp.theirs },
        secret: h.esp.secret, port: ESP_VXLAN_PORT,
      }).then(() => {
        if (espFor.get(h.shortId) !== entry) return // gone meanwhile (gone() removes it)
        entry.done = true
        log.info(`peer ${h.peer}: ESP in place for fastdp (${local} ⇄ ${h.ip})`)
        again()
      }, (err: Error) => {
        if (espFor.get(h.shortId) !== entry) return
        espFor.delete(h.shortId)
        log.warn(`peer ${h.peer}: ESP setup failed, sleeve only: ${err.message}`)
        deps.sleeve().setVia(h.shortId, 'sleeve', `ESP setup failed: ${err.message.slice(0, 120)}`)
        deps.fallback(h)
      })
      return false
    },
    gone(shortId, tunnelOut) {
      if (!espFor.has(shortId)) return
      espFor.delete(shortId)
      driver.remove(shortId, tunnelOut).catch((err: Error) => log.warn(`fastdp: removing ESP of peer ${shortId}: ${err.message}`))
    },
    onControl: (shortId, m) => driver.onControl(shortId, m),
    protects: (peer) => [...espFor.values()].some((e) => e.done && e.h.peer === peer),
    report: () => driver.report(),
    async stop() {
      espFor.clear()
      await driver.stop()
    },
  }
}
