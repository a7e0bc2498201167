/**
 * The mesh's live connections: which handshaken connections are kept (one per peer, the
 * duplicate tie-break, name collisions, the inbound limit), what a new or closed one changes
 * (our topology record, gossip to the new neighbour, the connection maker's targets).
 */
import type { PeerConnection } from './connection-contract'
import type { PeerName } from './gossip-contract'
import type { Live, MeshCore } from './mesh-core'
import type { TopologyGossip } from './topology-gossip'

/** Add a handshaken connection; returns why it was refused, or undefined when kept. */
export function addConnection(core: MeshCore, gossip: TopologyGossip, conn: PeerConnection, target: string | undefined): string | undefined {
  const { channels, config, identity, live, log, routes, stats, topology } = core
  const name = conn.remote.name
  if (core.state.stopped) return refuse(conn, 'router stopping')
  if (name === identity.name) return refuse(conn, 'cannot connect to ourself')
  const cur = live.get(name)
  if (cur) {
    if (cur.conn.remote.uid !== conn.remote.uid) {
      return refuse(conn, `name collision: already connected to ${name} with a different UID`)
    }
    // Duplicate (both sides dialled): both ends keep the lower connection UID, equal drops both.
    if (conn.connUid >= cur.conn.connUid) {
      if (conn.connUid === cur.conn.connUid) cur.conn.close('duplicate connection')
      return refuse(conn, 'duplicate connection')
    }
    cur.conn.close('duplicate connection')
  }
  // Over the limit (with headroom: discovery stops at it, others' dials may not) an inbound
  // connection is refused, unless the remote is not part of our mesh yet: a newcomer whose
  // launch targets are all full would otherwise never join.
  if (!conn.outbound && config.connLimit > 0 && live.size >= 2 * config.connLimit && routes.unicastAll().has(name)) {
    return refuse(conn, `connection limit reached (${config.connLimit})`)
  }
  const entry: Live = { conn, target, dataOk: !config.establishedByOverlay, dataWhy: config.establishedByOverlay ? 'no overlay heartbeat yet' : undefined }
  live.set(name, entry)
  stats.connectionsAdded++
  topology.setConnection(name, { outbound: conn.outbound, established: entry.dataOk, addr: conn.remoteAddr })
  conn.onMessage((msg) => {
    if (live.get(name) === entry) channels.handle(name, msg)
  })
  conn.onClose((reason) => connectionClosed(core, name, entry, reason))
  log.info(`connection added: ${conn.outbound ? '->' : '<-'} ${conn.remoteAddr} ${name}(${conn.remote.nickname})`)
  // Each side tells the other what it holds; the answers carry exactly what is missing.
  gossip.greet(name)
  channels.gossipAllTo(name)
  core.hooks.ownChanged()
  return undefined
}

/** The data plane's verdict on a connection (Mesh.setDataPath); false when there is no such connection. */
export function setDataPath(core: MeshCore, peer: PeerName, ok: boolean, why: string | undefined): boolean {
  const l = core.live.get(peer)
  if (!l) return false
  l.dataWhy = ok ? undefined : why
  if (l.dataOk === ok) return true
  l.dataOk = ok
  core.log.info(`data path to ${peer}(${l.conn.remote.nickname}) ${ok ? 'works: established' : `down${why ? ` (${why})` : ''}: pending, data goes by other peers`}`)
  core.topology.setConnection(peer, { outbound: l.conn.outbound, established: ok, addr: l.conn.remoteAddr })
  core.hooks.ownChanged()
  return true
}

/** Close every live connection (the router stops). */
export function closeAllConnections(core: MeshCore): void {
  for (const l of [...core.live.values()]) l.conn.close('router stopping')
  core.live.clear()
}

function refuse(conn: PeerConnection, why: string): string {
  conn.close(why)
  return why
}

function connectionClosed(core: MeshCore, name: PeerName, entry: Live, reason: string): void {
  const { clock, live, log, maker, stats, topology } = core
  if (live.get(name) !== entry) return
  live.delete(name)
  stats.connectionsClosed++
  topology.removeConnection(name)
  log.info(`connection deleted: ${entry.conn.remoteAddr} ${name}(${entry.conn.remote.nickname}): ${reason}`)
  if (entry.target) maker.connectionClosed(entry.target, reason, clock.now())
  core.hooks.ownChanged()
}
