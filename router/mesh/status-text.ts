/**
 * Weave-like text for the mesh's status views, rendered from the JSON-able MeshStatus model:
 * the router block of `weave status`, and `weave status peers|connections|targets`.
 */
import { MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION } from './handshake'
import type { ConnectionStatus, MeshStatus } from './mesh-router'

/** Key/value lines of the `Service: router` block of `weave status`. */
export function statusLines(s: MeshStatus): Array<[string, string]> {
  // Weave's printConnectionCounts / printPeerConnectionCounts: counts in a fixed order, zeros left out
  const counts = countIn(s.connections.map(connectionState), ['established', 'pending', 'retrying', 'failed', 'connecting'])
  const links = countIn(s.peers.flatMap((p) => p.connections.map((c) => (c.established ? 'established' : 'pending'))), ['established', 'pending'])
  return [
    ['Service', 'router'],
    // Weave's template: one number when min and max agree
    ['Protocol', `weave ${protocolVersions(MIN_PROTOCOL_VERSION, MAX_PROTOCOL_VERSION)}`],
    ['Name', `${s.name}(${s.nickname})`],
    ['Encryption', s.encryption ? 'enabled' : 'disabled'],
    ['PeerDiscovery', s.discovery ? 'enabled' : 'disabled'],
    ['Targets', String(s.targets.length)],
    ['Connections', `${s.connections.length}${counts.length ? ` (${counts.join(', ')})` : ''}`],
    ['Peers', `${s.peers.length}${links.length ? ` (with ${links.join(', ')} connections)` : ''}`],
    // Weave's printCIDRs
    ['TrustedSubnets', s.trustedSubnets?.length ? s.trustedSubnets.join(', ') : 'none'],
  ]
}

function protocolVersions(min: number, max: number): string {
  return min === max ? String(max) : `${min}..${max}`
}

function countIn(states: string[], order: string[]): string[] {
  const by = new Map<string, number>()
  for (const st of states) by.set(st, (by.get(st) ?? 0) + 1)
  return order.filter((k) => by.has(k)).map((k) => `${by.get(k)} ${k}`)
}

const arrow = (outbound: boolean) => (outbound ? '->' : '<-')

/** `weave status connections`: one line per connection, target being tried, or recent refusal. */
/**
 * `weave status connections`. `overlayInfo(peer)` adds what carries that peer's data, as Weave
 * shows it (`fastdp`, or `sleeve mtu=1448 (not fastdp: why)`).
 */
export function connectionsText(s: MeshStatus, overlayInfo?: (peer: string) => string | undefined, trusted?: (peer: string) => boolean): string {
  const rows = s.connections.map((c) => [arrow(c.direction === 'outbound'), c.addr, connectionState(c), connectionInfo(c, overlayInfo, trusted)])
  return table(rows)
}

/** Weave's `pending`: connected, but the overlay has not (or no longer) got its heartbeats through. */
function connectionState(c: ConnectionStatus): string {
  return c.state === 'established' && c.dataPath?.ok === false ? 'pending' : c.state
}

function connectionInfo(c: ConnectionStatus, overlayInfo?: (peer: string) => string | undefined, trusted?: (peer: string) => boolean): string {
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

/** What the overlay adds to the router's report, per peer and as a whole (Weave's names). */
export interface RouterReportExtras {
  /** `fastdp`, `sleeve mtu=1438 encrypted aes-256-gcm`... (also shown by `status connections`). */
  overlayInfo?: (peer: string) => string | undefined
  /** The data to `peer` goes in clear by mutual trust (`--trusted-subnets`). */
  trusted?: (peer: string) => boolean
  /** Weave's connection `Attrs`: `name` (the overlay), `mtu`, `encrypted`. */
  attrs?: (peer: string) => Record<string, unknown> | undefined
  /** `Interface`, `CaptureStats`, `MACs`, `OverlayDiagnostics` of Weave's NetworkRouterStatus. */
  router?: () => Record<string, unknown>
}

/**
 * The router's part of `weave report`: every field of Weave's mesh.Status and NetworkRouterStatus
 * under its name (Peers, Connections, UnicastRoutes, BroadcastRoutes, TerminationCount,
 * TrustedSubnets...), then ours (UID, ShortID, Version, ConnLimit, Stats; per connection Peer,
 * NickName, Error, RetryAt, DataPath, DataVia).
 */
export function reportJson(s: MeshStatus, x: RouterReportExtras = {}): Record<string, unknown> {
  return {
    Protocol: 'weave',
    ProtocolMinVersion: MIN_PROTOCOL_VERSION,
    ProtocolMaxVersion: MAX_PROTOCOL_VERSION,
    Encryption: s.encryption,
    PeerDiscovery: s.discovery,
    Name: s.name,
    NickName: s.nickname,
    Port: s.port,
    Peers: s.peers.map((p) => ({
      Name: p.name, NickName: p.nickname, UID: p.uid, ShortID: p.shortId, Version: p.version, Reachable: p.reachable,
      Connections: p.connections.map((c) => ({ Name: c.peer, NickName: c.nickname, Address: c.addr, Outbound: c.outbound, Established: c.established })),
    })),
    UnicastRoutes: Object.entries(s.unicastRoutes).map(([Dest, Via]) => ({ Dest, Via })),
    BroadcastRoutes: Object.entries(s.broadcastRoutes ?? {}).map(([Source, Via]) => ({ Source, Via })),
    Connections: s.connections.map((c) => ({
      Address: c.addr,
      Outbound: c.direction === 'outbound',
      State: connectionState(c),
      Info: connectionInfo(c, x.overlayInfo, x.trusted),
      Attrs: (c.state === 'established' && c.peer && x.attrs?.(c.peer)) || null,
      ...(c.peer ? { Peer: c.peer, NickName: c.nickname ?? '' } : {}),
      ...(c.error ? { Error: c.error } : {}),
      ...(c.retryAt !== undefined ? { RetryAt: new Date(c.retryAt).toISOString() } : {}),
      ...(c.dataPath ? { DataPath: c.dataPath } : {}),
      ...(c.dataVia ? { DataVia: c.dataVia } : {}),
    })),
    TerminationCount: s.stats.connectionsClosed,
    Targets: s.targets,
    TrustedSubnets: s.trustedSubnets ?? [],
    ...x.router?.(),
    UID: s.uid,
    ShortID: s.shortId,
    Version: s.version,
    ConnLimit: s.connLimit,
    Stats: s.stats,
  }
}

function table(rows: string[][]): string {
  if (!rows.length) return ''
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)))
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join(' ').trimEnd()).join('\n') + '\n'
}
