/**
 * What `weave status` shows of the mesh: ourselves, every connection (live, targets being
 * tried, recent refusals of inbound connections), every peer we know with its connections, and
 * the unicast routes.
 */
import type { HandshakeFailure } from './connection-contract'
import { addrHost, type Target } from './connection-maker'
import { connectedSets } from './maker-driver'
import type { MeshCore } from './mesh-core'
import type { ConnectionStatus, MeshStatus, PeerStatus } from './mesh-types'
import { presentConns } from './topology'

/** Recent refused inbound connections: one line per remote host, most recent first, a few. */
export class RefusalLog {
  readonly entries: ConnectionStatus[] = []
  constructor(private readonly max: number) {}

  add(remoteAddr: string, why: HandshakeFailure): void {
    const refusals = this.entries
    refusals.unshift({ direction: 'inbound', addr: remoteAddr, state: 'failed', error: `${why.code}: ${why.message}` })
    const seen = new Set<string>()
    for (let i = 0; i < refusals.length; i++) {
      const h = addrHost(refusals[i].addr)
      if (seen.has(h) || i >= this.max) refusals.splice(i--, 1)
      else seen.add(h)
    }
  }
}

/** Our connections, targets being tried and recent refusals: `status().connections` alone (cheap). */
export function meshConnections(core: MeshCore, refusals: RefusalLog): ConnectionStatus[] {
  const { config, live, maker, routes, topology } = core
  const connections: ConnectionStatus[] = []
  const data = routes.unicast()
  for (const [name, l] of live) {
    const hop = data.get(name)
    connections.push({
      direction: l.conn.outbound ? 'outbound' : 'inbound',
      addr: l.conn.remoteAddr,
      state: 'established',
      encrypted: l.conn.encrypted,
      peer: l.conn.remote.name,
      nickname: l.conn.remote.nickname,
      ...(config.establishedByOverlay ? { dataPath: { ok: l.dataOk, ...(l.dataWhy === undefined ? {} : { why: l.dataWhy }) } } : {}),
      ...(hop === name ? {} : { dataVia: hop === undefined ? 'unreachable' : `${hop}(${topology.get(hop)?.nickname ?? ''})` }),
    })
  }
  // only which targets are already connected: not makerWorld's walk over the whole mesh
  const w = connectedSets(core)
  for (const t of maker.allTargets()) {
    if (t.state === 'connected' || (t.state === 'waiting' && (w.connectedAddrs.has(t.addr) || w.connectedIps.has(addrHost(t.addr))))) continue
    if (t.kind === 'discovered' && t.state === 'waiting') continue
    connections.push(targetStatus(t))
  }
  connections.push(...refusals.entries)
  return connections
}

export function meshStatus(core: MeshCore, refusals: RefusalLog): MeshStatus {
  const { config, maker, routes, stats, topology } = core
  const me = topology.self()
  const connections = meshConnections(core, refusals)
  const reach = routes.unicastAll()
  const peers: PeerStatus[] = [...topology.records()].map((r) => ({
    name: r.name,
    nickname: r.nickname,
    uid: r.uid.toString(),
    shortId: r.shortId ?? null,
    version: r.version,
    reachable: reach.has(r.name),
    connections: presentConns(r).map(([to, e]) => ({
      peer: to,
      nickname: topology.get(to)?.nickname ?? '',
      addr: e.addr,
      outbound: e.outbound,
      established: e.established,
    })),
  }))
  peers.sort((a, b) => (a.name === me.name ? -1 : b.name === me.name ? 1 : a.name < b.name ? -1 : 1))
  const unicastRoutes: Record<string, string> = {}
  for (const [d, h] of [...reach].sort()) if (d !== me.name) unicastRoutes[d] = h
  // Weave's BroadcastRoutes: for each source we can hear, the neighbours we pass its broadcasts to
  const broadcastRoutes: Record<string, string[]> = {}
  for (const p of peers) if (p.reachable || p.name === me.name) broadcastRoutes[p.name] = [...routes.broadcast(p.name as never)]
  return {
    name: me.name,
    nickname: me.nickname,
    uid: me.uid.toString(),
    shortId: me.shortId ?? null,
    version: me.version,
    port: config.port,
    encryption: config.encryption,
    trustedSubnets: config.trustedSubnets ?? [],
    discovery: config.discovery,
    connLimit: config.connLimit,
    targets: maker.directPeers(),
    connections,
    peers,
    unicastRoutes,
    broadcastRoutes,
    stats: { ...stats },
  }
}

function targetStatus(t: Target): ConnectionStatus {
  const s: ConnectionStatus = { direction: 'outbound', addr: t.addr, state: t.state === 'waiting' ? 'connecting' : (t.state as ConnectionStatus['state']) }
  if (t.lastError) s.error = t.lastError
  if (t.state === 'retrying') s.retryAt = t.tryAfter
  return s
}
