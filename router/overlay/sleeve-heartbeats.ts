/**
 * The sleeve path's heartbeats and the verdict on a connection's data path. Per connection, once
 * the peer's hello told us where its UDP socket is, we send it a UDP heartbeat every tick; each
 * heartbeat that arrives is acknowledged over the mesh connection (`ack`), so each end learns
 * whether its own datagrams get through (SleeveLink). The connection's data path works when its
 * sleeve path is established or another data plane (fastdp) carries the peer healthily; each
 * change of that verdict goes to the mesh (`setDataPath`), which marks the connection
 * established or pending in the topology it gossips. Data-plane routes use only links both ends
 * call established, so when UDP between two hosts is lost while their TCP connection lives,
 * their frames go through a peer that reaches both.
 */
import { encodeOverlayControl } from './overlay-control'
import { encodeHeartbeat, type SleeveDatagram } from './sleeve-frame'
import type { Live, OverlayCore } from './sleeve-overlay-core'

/** Sends one UDP heartbeat to the peer of `l` (counted when the socket took it). */
export function heartbeat(c: OverlayCore, l: Live): void {
  if (!c.sleeve) return
  const self = c.mesh!.identity.shortId()
  if (c.sleeve.sendControl(l.shortId, encodeHeartbeat({ src: self, dst: l.shortId }, l.conn.connUid))) c.stats.heartbeatsSent++
}

/**
 * A control datagram from sleeve neighbour `from`: a heartbeat is acknowledged over the mesh
 * connection, a path-MTU probe is answered with its size (the probing end is told it got through).
 */
export function onSleeveControl(c: OverlayCore, from: number, dg: SleeveDatagram): void {
  const l = c.byShort.get(from)
  if (!l) return
  if (dg.kind === 'probe') {
    l.conn.send({ type: 'overlay', payload: encodeOverlayControl({ t: 'pmtu', size: dg.size }) })
    return
  }
  if (dg.kind !== 'heartbeat') return
  if (dg.connUid !== BigInt.asUintN(64, l.conn.connUid)) return // from an older connection
  c.stats.heartbeatsReceived++
  l.link.onHeartbeat(c.deps.clock.now())
  l.conn.send({ type: 'overlay', payload: encodeOverlayControl({ t: 'ack', uid: l.conn.connUid }) })
  reportDataPath(c, l)
}

/** The peer acknowledged a heartbeat of connection `uid`: our → their path works. */
export function onHeartbeatAck(c: OverlayCore, l: Live, uid: bigint): void {
  if (uid !== l.conn.connUid) return
  c.stats.acksReceived++
  l.link.onAck(c.deps.clock.now())
  reportDataPath(c, l)
}

/**
 * Tell the mesh when a connection's data path starts or stops working: the sleeve path is
 * established, or another data plane carries the peer (the switch moves it off sleeve only
 * while that plane's own heartbeats get through). A new reason alone is passed on too (status
 * shows it; the mesh gossips only a change of the verdict).
 */
export function reportDataPath(c: OverlayCore, l: Live): void {
  const mesh = c.mesh
  if (!mesh?.setDataPath || c.live.get(l.link.peer) !== l) return
  const now = c.deps.clock.now()
  const sleeveWhy = l.link.why(now)
  const ok = sleeveWhy === undefined || l.via !== 'sleeve'
  const why = ok ? undefined : sleeveWhy
  if (ok === l.toldOk && why === l.toldWhy) return
  l.toldOk = ok
  l.toldWhy = why
  mesh.setDataPath(l.link.peer, ok, why)
}
