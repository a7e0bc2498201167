/**
 * This peer's own entries: what the proxy, attach and plugins register for containers, and what
 * `weave dns-add` adds by hand (manual entries outlive a container's stop, not its removal).
 * Every change is handed to `broadcast` for the `dns` channel.
 */
import type { Clock } from '../router/deps'
import { EXTERN_ID, type Entry, type Records } from './records'
import { inDomain, isIPv4, normalizeName } from './names'
import type { RegisterResult, WeaveDns } from './types'

type Registrations = Pick<WeaveDns, 'registerContainer' | 'addContainerName' | 'unregisterContainer' | 'containerDestroyed' | 'addRecord' | 'removeRecord'>

export function createRegistrations(
  records: Records, opts: { self: string; domain: string; clock: Clock; broadcast: (changed: Entry[]) => void },
): Registrations {
  const { self, domain, clock, broadcast } = opts
  /** Keys of entries added by hand (dns-add): they outlive a container's stop, not its removal. */
  const manual = new Set<string>()
  const manualKey = (e: Pick<Entry, 'origin' | 'containerId' | 'address' | 'hostname'>) => `${e.origin}|${e.containerId}|${e.address}|${e.hostname}`
  const isManual = (e: Entry) => manual.has(manualKey(e))
  const forget = (gone: Entry[]) => { for (const e of gone) manual.delete(manualKey(e)) }

  function addEntries(containerId: string, fqdn: string, addresses: string[], byHand: boolean): RegisterResult {
    const name = normalizeName(fqdn)
    if (!name) return { ok: false, reason: `"${fqdn}" is not a valid DNS name` }
    if (!inDomain(name, domain)) return { ok: false, reason: `${name} is not in the DNS domain ${domain}` }
    const bad = addresses.find((a) => !isIPv4(a))
    if (bad !== undefined) return { ok: false, reason: `"${bad}" is not an IPv4 address` }
    const changed: Entry[] = []
    for (const address of addresses) {
      const e = records.addLocal({ hostname: name, containerId, address })
      if (byHand) manual.add(manualKey({ origin: self, containerId, address, hostname: name }))
      if (e) changed.push(e)
    }
    broadcast(changed)
    return { ok: true, fqdn: name, added: changed.length }
  }

  return {
    registerContainer(containerId, fqdn, addresses) {
      const want = normalizeName(fqdn)
      // Entries of this container that are not part of the new registration go (a new address).
      const stale = (e: Entry) => e.containerId === containerId && !isManual(e) && !(e.hostname === want && addresses.includes(e.address))
      broadcast(records.removeLocal(stale, clock.now()))
      return addEntries(containerId, fqdn, addresses, false)
    },
    addContainerName(containerId, fqdn, addresses) {
      return addEntries(containerId, fqdn, addresses, false)
    },
    unregisterContainer(containerId) {
      const gone = records.removeLocal((e) => e.containerId === containerId && !isManual(e), clock.now())
      broadcast(gone)
      return gone.length
    },
    containerDestroyed(containerId) {
      const gone = records.removeLocal((e) => e.containerId === containerId, clock.now())
      forget(gone)
      broadcast(gone)
      return gone.length
    },
    addRecord(r) {
      return addEntries(r.containerId ?? EXTERN_ID, r.fqdn, r.addresses, true)
    },
    removeRecord(r) {
      const name = r.fqdn ? normalizeName(r.fqdn) : undefined
      const cid = r.containerId ?? (r.fqdn ? undefined : EXTERN_ID)
      const gone = records.removeLocal((e) =>
        (cid === undefined || e.containerId === cid) &&
        (name === undefined || e.hostname === name) &&
        (!r.addresses?.length || r.addresses.includes(e.address)), clock.now())
      forget(gone)
      broadcast(gone)
      return gone.length
    },
  }
}
