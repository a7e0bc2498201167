/**
 * The overlay's connection table: one Live per established mesh connection, kept in line with
 * the mesh's connections (reconcile on every topology change and tick), each listening for the
 * overlay control messages of its connection and dispatching them to the part that handles them.
 * Two peers claiming one short ID: the later is ignored until that resolves.
 */
import type { PeerConnection, PeerName } from '../mesh'
import { ESP_NONCE_BYTES } from './fastdp-ipsec'
import { decodeOverlayControl } from './overlay-control'
import { sleeveSodium } from './sleeve-crypto'
import { kxKeyPair } from './sleeve-kx'
import { SleeveLink } from './sleeve-link'
import type { Live, OverlayCore } from './sleeve-overlay-core'
import { PmtuSearch } from './sleeve-pmtu'
import { onHeartbeatAck } from './sleeve-heartbeats'
import { onHello, sendHello } from './sleeve-hello'
import { onProbeAck } from './sleeve-probing'

/** Brings the live connections in line with the mesh's. */
export function reconcile(c: OverlayCore): void {
  const mesh = c.mesh
  if (!mesh) return
  const conns = mesh.connections()
  for (const [name, l] of c.live) {
    if (conns.get(name) !== l.conn) dropConnection(c, name, l)
  }
  for (const [name, conn] of conns) {
    if (!c.live.has(name)) addConnection(c, name, conn)
  }
  c.routes.invalidate()
}

/** Forgets the connection of `l` (gone, or detaching): the sleeve forgets its peer, the switch hears. */
export function dropConnection(c: OverlayCore, name: PeerName, l: Live): void {
  c.live.delete(name)
  if (c.byShort.get(l.shortId) === l) c.byShort.delete(l.shortId)
  c.sleeve?.removePeer(l.shortId)
  c.deps.onPeerGone?.({ peer: name, shortId: l.shortId })
}

function addConnection(c: OverlayCore, name: PeerName, conn: PeerConnection): void {
  const { config } = c
  const l: Live = {
    conn,
    link: new SleeveLink(name, conn.connUid, c.timeoutMs),
    shortId: shortIdOf(c, conn),
    keys: config.encrypt ? kxKeyPair() : undefined,
    espNonce: config.encrypt ? sleeveSodium().randombytes_buf(ESP_NONCE_BYTES) : undefined,
    cipherSet: false,
    cipherName: undefined,
    trusted: false,
    addr: conn.remoteAddr,
    via: 'sleeve',
    why: undefined,
    toldOk: undefined,
    toldWhy: undefined,
    pmtu: new PmtuSearch(),
    pmtuTold: undefined,
  }
  const other = c.byShort.get(l.shortId)
  if (other) {
    c.log.warn(`peers ${other.link.peer} and ${name} share short ID ${l.shortId}; ignoring ${name} until that resolves`)
    return
  }
  c.live.set(name, l)
  c.byShort.set(l.shortId, l)
  conn.onMessage((msg) => {
    if (msg.type === 'overlay' && c.live.get(name) === l) handleControl(c, l, msg.payload)
  })
  conn.onClose(() => {
    if (c.live.get(name) === l) { dropConnection(c, name, l); c.routes.invalidate() }
  })
  sendHello(c, l)
}

/** The peer's short ID as the topology knows it (it may have changed since the handshake). */
function shortIdOf(c: OverlayCore, conn: PeerConnection): number {
  for (const r of c.mesh!.topology.records()) if (r.name === conn.remote.name && r.shortId !== undefined) return r.shortId
  return conn.remote.shortId
}

/** An overlay control message on the connection of `l`. */
function handleControl(c: OverlayCore, l: Live, payload: Uint8Array): void {
  const m = decodeOverlayControl(payload)
  if (!m) { c.stats.badControl++; return }
  if (m.t === 'ack') onHeartbeatAck(c, l, m.uid)
  else if (m.t === 'fdp') c.deps.onFastdpStatus?.({ peer: l.link.peer, shortId: l.shortId, ok: m.ok })
  else if (m.t === 'pmtu') onProbeAck(c, l, m.size)
  else if (m.t === 'esp') c.deps.onEsp?.({ peer: l.link.peer, shortId: l.shortId, m })
  else onHello(c, l, m)
}
