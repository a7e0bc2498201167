/**
 * The sleeve overlay as `weave status` shows it: one line per connection with its state, data
 * plane, frame MTU and cipher.
 */
import { maxFrameBytes } from './sleeve-frame'
import { SEAL_OVERHEAD_BYTES } from './sleeve-crypto'
import type { OverlayConnectionStatus } from './sleeve-overlay-contract'
import type { OverlayCore } from './sleeve-overlay-core'

/** Ethernet header: the frame MTU status shows is the largest IP packet a frame carries. */
const ETHERNET_HEADER_BYTES = 14

/** The status of every live connection. */
export function connectionStatuses(c: OverlayCore): OverlayConnectionStatus[] {
  const now = c.deps.clock.now()
  const nick = new Map<string, string>()
  if (c.mesh) for (const r of c.mesh.topology.records()) nick.set(r.name, r.nickname)
  return [...c.live.values()].map((l) => {
    const pmtu = l.link.remote ? c.sleeve?.pathMtu(l.shortId) : undefined
    return {
      peer: l.link.peer,
      nickname: l.conn.remote.nickname ?? nick.get(l.link.peer) ?? '',
      addr: l.addr,
      outbound: l.conn.outbound,
      overlay: l.via,
      ...(l.why === undefined ? {} : { why: l.why }),
      state: l.link.state(now),
      encrypted: l.cipherSet,
      ...(l.cipherName === undefined ? {} : { cipher: l.cipherName }),
      ...(l.trusted ? { trusted: true } : {}),
      mtu: pmtu === undefined ? undefined : frameMtu(pmtu, l.cipherSet),
    }
  })
}

/** The largest IP packet one frame carries on a path of `pathMtu` bytes. */
export function frameMtu(pathMtu: number, encrypted: boolean): number {
  return maxFrameBytes(pathMtu, encrypted ? SEAL_OVERHEAD_BYTES : 0) - ETHERNET_HEADER_BYTES
}

/**
 * `weave status overlay` / connection lines: `-> 10.0.0.2:6783 established sleeve mtu=1448 name(nick)`,
 * `… established sleeve mtu=1424 encrypted aes-256-gcm name(nick)`,
 * `… established fastdp name(nick)`, `… established sleeve mtu=1448 (not fastdp: why) name(nick)`.
 */
export function overlayConnectionLine(c: OverlayConnectionStatus): string {
  const mtu = c.mtu === undefined || c.overlay === 'fastdp' ? '' : ` mtu=${c.mtu}`
  const why = c.why === undefined ? '' : ` (not fastdp: ${c.why})`
  return `${c.outbound ? '->' : '<-'} ${c.addr} ${c.state} ${c.overlay}${mtu}${c.encrypted ? ` encrypted${c.cipher ? ` ${c.cipher}` : ''}` : ''}${why} ${c.peer}(${c.nickname})`
}
