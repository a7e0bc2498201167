/**
 * weaveDNS (public door): containers find each other by name across hosts, with no central store.
 *
 * Each peer owns the entries of its containers; entries travel on the mesh's `dns` gossip channel
 * as a CRDT (records.ts); the server answers A/PTR for the domain on UDP+TCP and forwards the rest
 * to the host's resolv.conf servers.
 *
 * From the daemon (router/weaver.ts builds it in router/dns-wiring.ts; `wireDns(...)` returns
 * `{ dns, ... }`, and weaver passes `dns` to the proxy wiring and the attach API):
 *
 *   const dns = createWeaveDns({ domain: 'weave.local.', listen: { host, port: 53 } },
 *                              { clock, rng, logger, host: mesh })   // mesh is the GossipHost
 *   await dns.start()
 *   dns.registerContainer(id, 'web.weave.local.', ['10.32.0.5'])     // proxy / attach / plugins
 *   dns.unregisterContainer(id)                                       // the container died
 *   dns.containerDestroyed(id)                                        // it was removed
 *   dns.addRecord({ fqdn, addresses, containerId? }); dns.removeRecord({ fqdn?, addresses?, containerId? })
 *   dns.entries(); dns.counters(); await dns.stop()
 *
 * A registrar inside the daemon that is built without DNS (`weave launch --no-dns`) gets
 * `undefined` instead and skips registration.
 */
export { createWeaveDns, DNS_DEFAULTS, type DnsDeps } from './service'
export type { DnsConfig, DnsCounters, RegisterResult, WeaveDns } from './types'
export { EXTERN_ID, Records, entryKey, type Entry, type RecordsOptions } from './records'
export {
  DEFAULT_DOMAIN, MAX_HOSTNAME_LENGTH, deriveHostname, inDomain, isIPv4, normalizeDomain, normalizeName, qualify,
  reverseName, type HostnameChoice, type HostnameRules,
} from './names'
export { answerQuery, type AnswerContext, type Decision } from './answer'
export { encodeDnsMsgs, decodeDnsMsg, DnsGossipData } from './wire'
export { parseResolvConf, withoutSelf, type Server } from './upstream'
export { looksLikeHttp } from './server'
export { SourceLimiter } from './rate-limit'
export { formatStatusDns, dnsStatusLines, dnsReport } from './status'
