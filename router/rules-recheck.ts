/**
 * Weave re-checks its iptables rules: a firewall reload (firewalld, `iptables -F`) wipes them
 * under a running network. Every RULES_RECHECK_MS the missing ones are put back. The same tick
 * looks at hairpin mode on the router's bridge port, which reflects the router's own frames back
 * to it (Weave detects and logs it; container ports have it on purpose): logged once each time it
 * turns on.
 */
import * as fs from 'node:fs'
import type { Clock, Logger } from './deps'
import type { NetHost } from './net'

/** How often weave's iptables rules are checked and put back when something removed them. */
export const RULES_RECHECK_MS = 10_000

export function createRulesRecheck(deps: { clock: Clock; logger: Logger; net: Pick<NetHost, 'ensureRules'> }): { start(): Promise<void>; stop(): Promise<void> } {
  const log = deps.logger
  let stopRecheck: (() => void) | undefined
  let rechecking = true
  let hairpinSeen = false
  const checkHairpin = () => {
    let on = false
    try { on = fs.readFileSync('/sys/class/net/vethwe-bridge/brport/hairpin_mode', 'utf8').trim() === '1' } catch { /* no such port */ }
    if (on && !hairpinSeen) log.warn('hairpin mode is on on the bridge port vethwe-bridge: frames the router sends come back to it; turn it off (bridge link set dev vethwe-bridge hairpin off)')
    hairpinSeen = on
  }
  const recheckRules = () => {
    stopRecheck = deps.clock.setTimer(RULES_RECHECK_MS, () => {
      checkHairpin()
      deps.net.ensureRules()
        .then((n) => { if (n > 0) log.warn(`iptables: ${n} of weave's chains/rules had gone (a firewall reload?); put them back`) })
        .catch((err: Error) => log.warn(`iptables re-check: ${err.message}`))
        .finally(() => { if (rechecking) recheckRules() })
    })
  }
  return {
    async start() { checkHairpin(); recheckRules() },
    async stop() { rechecking = false; stopRecheck?.() },
  }
}
