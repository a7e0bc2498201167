/**
 * Weave-like text for the mesh's status views, rendered from the JSON-able MeshStatus model:
 * the router block of `weave status`, and `weave status peers|connections|targets`.
 */
import { MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION } from './handshake'
import type { ConnectionStatus, MeshStatus } from './mesh-router'

/** Key/value lines of the `Service: router` block of `weave status`. */
export function statusLines(s: MeshStatus): Array<[string, string]> {
  const byState = new Map<string, number>()
  for (const c of s.connections) byState.set(c.state, (byState.get(c.state) ?? 0) + 1)
  const order = ['established', 'connecting', 'retrying', 'failed']
  const counts = order.filter((k) => byState.has(k)).map((k) => `${byState.get(k)} ${k}`)
  const me = s.peers.find((p) => p.name === s.name)
  const links = s.peers.reduce((n, p) => n + p.connections.filter((c) => c.established).length, 0)
  return [
    ['Service', 'router'],
    ['Protocol', `weave ${MIN_PROTOCOL_VERSION}..${MAX_PROTOCOL_VERSION}`],
    ['Name', `${s.name}(${s.nickname})`],
    ['Encryption', s.encryption ? 'enabled' : 'disabled'],
    ['PeerDiscovery', s.discovery ? 'enabled' : 'disabled'],
    ['Targets', String(s.targets.length)],
    ['Connections', `${s.connections.length}${counts.length ? ` (${counts.join(', ')})` : ''}`],
    ['Peers', `${s.peers.length}${me ? ` (with ${links} established connections)` : ''}`],
    // Weave's printCIDRs
    ['TrustedSubnets', s.trustedSubnets?.length ? s.trustedSubnets.join(', ') : 'none'],
  ]
}

const arrow = (outbound: boolean) => (outbound ? '->' : '<-')

/** `weave status connections`: one line per connection, target being tried, or recent refusal. */
/**
 * `weave status connections`. `overlayInfo(peer)` adds what carries that peer's data, as Weave
 * shows it (`fastdp`, or `sleeve mtu=1448 (not fastdp: why)`).
 */
export function connectionsText(s: MeshStatus, overlayInfo?: (peer: string) => string | undefined, trusted?: (peer: string) => boolean): string {
  // Weave's `pending`: connected, but the overlay has not (or no longer) got its heartbeats through
  const state = (c: ConnectionStatus) => (c.state === 'established' && c.dataPath?.ok === false ? 'pending' : c.state)
  const rows = s.connections.map((c) => [arrow(c.direction === 'outbound'), c.addr, state(c), connectionInfo(c, s, overlayInfo, trusted)])
  return table(rows)
}

function connectionInfo(c: ConnectionStatus, s: MeshStatus, overlayInfo?: (peer: string) => string | undefined, trusted?: (peer: string) => boolean): string {
  if (c.state === 'established') {
    // As Weave: a mutually trusted peer's data is unencrypted although the mesh has a password.
    const enc = c.encrypted && !(c.peer && trusted?.(c.peer)) ? 'encrypted' : 'unencrypted'
    const via = c.peer && overlayInfo ? overlayInfo(c.peer) : undefined
    const down = c.dataPath?.ok === false ? ` [data path down${c.dataPath.why ? `: ${c.dataPath.why}` : ''}; data ${c.dataVia === 'unreachable' || c.dataVia === undefined ? 'cannot reach it' : `via ${c.dataVia}`}]` : ''
    return `${enc} ${via ? `${via} ` : ''}${c.peer}(${c.nickname})${down}`
  }
  if (c.state === 'retrying' && c.retryAt !== undefined) return `${c.error ?? ''}, retry: ${new Date(c.retryAt).toISOString()}`.replace(/^, /, '')
  return c.error ?? ''
}

/** `weave status peers`: each known peer, then its connections. */
export function peersText(s: MeshStatus): string {
  const out: string[] = []
  for (const p of s.peers) {
    out.push(`${p.name}(${p.nickname})${p.reachable || p.name === s.name ? '' : ' [unreachable]'}`)
    const rows = p.connections.map((c) => ['  ' + arrow(c.outbound), c.addr, `${c.peer}(${c.nickname})`, c.established ? 'established' : 'pending'])
    if (rows.length) out.push(table(rows).replace(/\n$/, ''))
  }
  return out.join('\n') + '\n'
}

/** `weave status targets`: the direct targets, one a line. */
export function targetsText(s: MeshStatus): string {
  return s.targets.map((t) => `${t}\n`).join('')
}

/** The router's part of `weave report`. */
export function reportJson(s: MeshStatus): Record<string, unknown> {
  return {
    Protocol: 'weave',
    ProtocolMinVersion: MIN_PROTOCOL_VERSION,
    ProtocolMaxVersion: MAX_PROTOCOL_VERSION,
    Encryption: s.encryption,
    PeerDiscovery: s.discovery,
    Name: s.name,
    NickName: s.nickname,
    UID: s.uid,
    ShortID: s.shortId,
    Version: s.version,
    Port: s.port,
    ConnLimit: s.connLimit,
    Targets: s.targets,
    TrustedSubnets: s.trustedSubnets ?? [],
    Connections: s.connections,
    Peers: s.peers,
    UnicastRoutes: s.unicastRoutes,
    Stats: s.stats,
  }
}

function table(rows: string[][]): string {
  if (!rows.length) return ''
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)))
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join(' ').trimEnd()).join('\n') + '\n'
}
