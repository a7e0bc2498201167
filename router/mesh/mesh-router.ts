/**
 * The mesh router: composes identity, topology, routes, gossip channels and the connection maker
 * over a MeshTransport (TCP in the daemon, in-memory in simulations).
 *
 *   const mesh = createMesh({ name, nickname, port: 6783, connLimit: 200, discovery: true, peers }, {
 *     clock, rng, logger, transport: (local) => createTcpTransport({ local, ... }, deps) })
 *   await mesh.start(); mesh.newGossip('ipam', gossiper); mesh.status(); await mesh.stop()
 *
 * Topology gossip (the `topology` channel, ours):
 * - our own changes are batched for `topologyBatchMs` and broadcast as a delta along our
 *   broadcast tree (exactly once per peer when views agree); news learnt from a neighbour's
 *   answer (a join, a healed partition) is broadcast along our own tree the same way, instead
 *   of Weave's relays to 2·log2 N random neighbours per hop, which multiply the bytes;
 * - a new connection starts with a digest each way (name, uid, version of every record held);
 *   each side answers with exactly what the other lacks, so joining costs O(N), not O(N²);
 * - a delta that does not follow on from what we hold is a gap: we ask its sender for the rest;
 * - anti-entropy: every `antiEntropyMs` a digest goes to one random neighbour (repairs what a
 *   broadcast missed while views disagreed).
 * Other channels (IPAM, DNS) get Weave's semantics: full state to each new neighbour and to a
 * neighbour subset every interval.
 */
import { LogOnce, type Clock, type Logger, type Rng } from '../deps'
import { HandshakeError, type HandshakeFailure, type LocalIdentity, type MeshTransport, type PeerConnection } from './connection-contract'
import type { Gossip, GossipData, GossipHost, Gossiper, MeshView, PeerInfo, PeerName } from './gossip-contract'
import { ConnectionMaker, addrHost, normalizeAddr, type MakerEffect, type Target } from './connection-maker'
import { GossipChannels, type ChannelGossiper } from './gossip-channel'
import { createLocalIdentity, type MutableLocalIdentity } from './identity'
import { RouteTable } from './routes'
import {
  Topology, combineUpdates, decodeTopologyMessage, encodeDigest, encodeUpdate, presentConns, type RecordUpdate,
} from './topology'

export const TOPOLOGY_CHANNEL = 'topology'

export interface MeshConfig {
  name: PeerName
  nickname: string
  /** Default: random per start. */
  uid?: bigint
  shortId?: number
  /** Our mesh port (discovery assumes peers that dialled us listen on the same one). */
  port: number
  /** Connection limit (Weave's --conn-limit, 0: none): discovery stops dialling at it; inbound connections are refused beyond twice it. */
  connLimit: number
  discovery: boolean
  /** Initial direct targets (launch args), used when there is no targets store. */
  peers: string[]
  /** Whether connections are encrypted (a password is set): for status only. */
  encryption: boolean
  overlays?: string[]
  /** Periodic full-state gossip of other channels (Weave: 30 s). */
  gossipIntervalMs?: number
  /** Topology digest to one random neighbour. */
  antiEntropyMs?: number
  /** Batching of our own topology changes (Weave: 1 s; see DEFAULTS for why shorter). */
  topologyBatchMs?: number
  /** Delay before a GC pass after a change, and how long a peer must stay unreachable to be collected. */
  gcDelayMs?: number
  gcGraceMs?: number
  /** Coalescing of route recalculation after merged updates. */
  routeDelayMs?: number
  /**
   * A data plane judges each connection's data path (Weave: a connection is established only once
   * the overlay's heartbeat got through): connections start pending and carry data-plane routes only
   * after `setDataPath(peer, true)`. Without it (simulations, a mesh with no overlay) every
   * connection is established at once.
   */
  establishedByOverlay?: boolean
}

/** Defaults, one place. */
export const MESH_DEFAULTS = {
  gossipIntervalMs: 30_000, // Weave's
  // A digest is 18 bytes per peer to one neighbour: cheap enough to repair often what a broadcast
  // missed while views disagreed (5 s made a 200-peer join converge in 3 s, 2 s in 1.8 s).
  antiEntropyMs: 2_000,
  // Weave batches 1 s; 100 ms still coalesces a burst of connection changes into one delta while
  // keeping convergence across a 10-hop mesh around a second.
  topologyBatchMs: 100,
  gcDelayMs: 200,
  routeDelayMs: 100, // Weave's
  gcGraceMs: 2_000, // a just-joined peer's neighbour record is usually here long before this
  recentRefusals: 16,
}

export interface TargetsStore {
  /** Stored direct targets, or undefined when none were ever stored. */
  load(): string[] | undefined
  save(direct: string[]): void
}

export interface MeshDeps {
  clock: Clock
  rng: Rng
  logger: Logger
  /** Builds the transport for our identity (the transport needs it for the handshake). */
  transport(local: LocalIdentity): MeshTransport
  targets?: TargetsStore
}

export interface ConnectionStatus {
  direction: 'outbound' | 'inbound'
  addr: string
  state: 'established' | 'connecting' | 'retrying' | 'failed'
  encrypted?: boolean
  peer?: string
  nickname?: string
  /** Error of the last try (targets and refusals). */
  error?: string
  /** When a retrying target is tried next (ms since epoch of the clock). */
  retryAt?: number
  /** Live connections with an overlay judge: whether its data path works, and why not. */
  dataPath?: { ok: boolean; why?: string }
  /** Live connections whose peer's data goes through another peer: that next hop (name(nick)), or `unreachable`. */
  dataVia?: string
}

export interface PeerStatus {
  name: string
  nickname: string
  uid: string
  shortId: number | null
  version: number
  reachable: boolean
  connections: Array<{ peer: string; nickname: string; addr: string; outbound: boolean; established: boolean }>
}

export interface MeshStatus {
  name: string
  nickname: string
  uid: string
  shortId: number | null
  version: number
  port: number
  encryption: boolean
  discovery: boolean
  connLimit: number
  /** Direct targets (launch/connect), in order. */
  targets: string[]
  connections: ConnectionStatus[]
  peers: PeerStatus[]
  unicastRoutes: Record<string, string>
  stats: MeshStats
}

export interface MeshStats {
  gossipMessagesSent: number
  gossipBytesSent: number
  connectionsAdded: number
  connectionsClosed: number
}

export interface Mesh extends GossipHost {
  readonly identity: MutableLocalIdentity
  readonly topology: Topology
  readonly routes: RouteTable
  readonly stats: MeshStats
  start(): Promise<void>
  stop(): Promise<void>
  /** Add direct targets (`replace`: they become the list). Invalid addresses are returned, nothing changes then. */
  connect(peers: string[], replace?: boolean): { invalid: string[] }
  forget(peers: string[]): void
  status(): MeshStatus
  /** Live connections by peer name. */
  connections(): Map<PeerName, PeerConnection>
  /**
   * The data plane's verdict on the connection to `peer` (see MeshConfig.establishedByOverlay):
   * the topology marks it established, or pending, and gossips the change; data-plane routes use
   * only links both ends call established. `why` is shown in status. False when no live connection.
   */
  setDataPath(peer: PeerName, ok: boolean, why?: string): boolean
}

interface Live {
  conn: PeerConnection
  /** The target we dialled for it (outbound only). */
  target?: string
  /** The overlay's last verdict on its data path. */
  dataOk: boolean
  dataWhy?: string
}

export function createMesh(config: MeshConfig, deps: MeshDeps): Mesh {
  const { clock, rng } = deps
  const log = deps.logger
  const opt = { ...MESH_DEFAULTS, ...stripUndefined(config) }
  const identity = createLocalIdentity({ name: config.name, nickname: config.nickname, uid: config.uid, shortId: config.shortId, overlays: config.overlays }, rng)
  const topology = new Topology({ name: identity.name, nickname: identity.nickname, uid: identity.uid, shortId: identity.shortId() })
  const routes = new RouteTable(identity.name, () => topology.records())
  const maker = new ConnectionMaker({ port: config.port, connLimit: config.connLimit, discovery: config.discovery }, rng)
  const live = new Map<PeerName, Live>()
  const stats: MeshStats = { gossipMessagesSent: 0, gossipBytesSent: 0, connectionsAdded: 0, connectionsClosed: 0 }
  const refusals: ConnectionStatus[] = []
  const peersChangedFns = new Set<() => void>()
  let transport: MeshTransport | undefined
  let running = false
  let stopped = false
  const timers: Record<string, (() => void) | undefined> = {}

  /** One pending timer per name: scheduling again while one is pending keeps the earlier one. */
  const schedule = (name: string, ms: number, fn: () => void) => {
    if (timers[name] || stopped) return
    timers[name] = clock.setTimer(ms, () => {
      timers[name] = undefined
      if (!stopped) fn()
    })
  }
  const reschedule = (name: string, ms: number, fn: () => void) => {
    timers[name]?.()
    timers[name] = undefined
    schedule(name, ms, fn)
  }

  const channels = new GossipChannels({
    self: identity.name,
    clock,
    rng,
    logger: log.child('gossip'),
    nextHop: (dst) => {
      const h = routes.unicastAll().get(dst)
      return h === identity.name ? undefined : h
    },
    broadcastChildren: (src) => routes.broadcast(src).filter((p) => live.has(p)),
    neighbours: () => [...live.keys()],
    peerCount: () => topology.size(),
    send: (peer, msg) => {
      const l = live.get(peer)
      if (!l) return false
      if (msg.type !== 'overlay') {
        stats.gossipMessagesSent++
        stats.gossipBytesSent += msg.payload.length + msg.channel.length + 16 // payload + envelope estimate
      }
      l.conn.send(msg)
      return true
    },
  }, opt.gossipIntervalMs)

  // ---- topology channel ----

  /** Immutable: the same object may be pending for several neighbours, so it encodes once. */
  class TopologyData implements GossipData {
    private encoded: Uint8Array[] | undefined
    constructor(readonly updates: RecordUpdate[]) {}
    encode(): Uint8Array[] {
      return (this.encoded ??= this.updates.length ? [encodeUpdate(this.updates)] : [])
    }
    merge(other: GossipData): GossipData {
      return other instanceof TopologyData ? new TopologyData(combineUpdates(this.updates, other.updates)) : this
    }
  }

  // keyed by the sender a message names (a peer's choice): bounded
  const warnedBadFrom = new LogOnce((m) => log.warn(m), 1024)
  const topologyGossiper: ChannelGossiper = {
    onGossip(update, from) {
      return applyUpdateBytes(update, from)
    },
    onGossipBroadcast(src, update) {
      return applyUpdateBytes(update, src)
    },
    onGossipUnicast(src, msg) {
      const m = decodeTopologyMessage(msg)
      if (!m.ok) return badMessage(src, m.reason)
      if (m.kind === 'digest') {
        const lack = topology.deltaForDigest(m.digest, m.listedOnly)
        if (lack.length) channels.sendUnicast(TOPOLOGY_CHANNEL, identity.name, src, encodeUpdate(lack))
        return
      }
      // News a neighbour brought (joining, a healed partition) goes along our own tree: every
      // peer that knows our part of the topology can compute it, so each gets it once.
      // The neighbour's own record is left out: it broadcasts its own changes itself, and a
      // joiner answering N new neighbours would otherwise be re-broadcast N times.
      const news = applyUpdates(m.updates, src)
      const relay = news?.updates.filter((u) => u.rec.name !== src)
      if (relay?.length) channels.broadcast(TOPOLOGY_CHANNEL, new TopologyData(relay), src)
    },
    gossip: () => undefined, // anti-entropy is digest-based, see antiEntropy()
  }
  channels.newGossip(TOPOLOGY_CHANNEL, topologyGossiper)

  function badMessage(from: PeerName, reason: string): undefined {
    warnedBadFrom.once(from, `bad topology message from ${from}: ${reason} (further ones from it not logged)`)
    return undefined
  }

  function applyUpdateBytes(bytes: Uint8Array, from: PeerName): GossipData | undefined {
    const m = decodeTopologyMessage(bytes)
    if (!m.ok) return badMessage(from, m.reason)
    if (m.kind !== 'update') return badMessage(from, 'digest outside unicast')
    return applyUpdates(m.updates, from)
  }

  /** Merge, react, and return what was new (to relay). */
  function applyUpdates(updates: RecordUpdate[], from: PeerName): TopologyData | undefined {
    const res = topology.merge(updates)
    if (res.gaps.length) channels.sendUnicast(TOPOLOGY_CHANNEL, identity.name, from, encodeDigest(res.gaps, true))
    if (res.selfBumped) {
      lastSentVersion = 0 // others hold an old incarnation of us: send our whole record
      schedule('own', 0, sendOwnUpdate)
    }
    if (!res.delta.length) return undefined
    topologyChanged()
    return new TopologyData(res.delta)
  }

  let lastSentVersion = 0
  function sendOwnUpdate(): void {
    const d = topology.ownDeltaSince(lastSentVersion)
    lastSentVersion = topology.self().version
    // Along our broadcast tree: each peer gets it once when views agree (a star in a full mesh).
    channels.broadcast(TOPOLOGY_CHANNEL, new TopologyData([d]))
  }

  function ownChanged(): void {
    topologyChanged(true)
    schedule('own', opt.topologyBatchMs, sendOwnUpdate)
  }

  /**
   * Our own changes take effect in the routes at once; merged ones are coalesced for
   * `routeDelayMs` (Weave: 100 ms), since a burst of updates would otherwise rebuild the graph
   * per message.
   */
  function topologyChanged(own = false): void {
    if (own) routes.invalidate()
    else schedule('routes', opt.routeDelayMs, () => {
      routes.invalidate()
      const id = topology.resolveShortIdCollision(rng)
      if (id !== undefined) {
        identity.setShortId(id)
        log.info(`short ID collision: now using ${id}`)
        ownChanged()
      }
    })
    schedule('gc', opt.gcDelayMs, runGc)
    schedule('maker', own ? 0 : opt.routeDelayMs, runMaker)
    schedule('peers-changed', opt.routeDelayMs, () => {
      for (const fn of [...peersChangedFns]) {
        try {
          fn()
        } catch (err) {
          log.warn(`peers-changed listener failed: ${(err as Error).message}`)
        }
      }
    })
  }

  function runGc(): void {
    const removed = topology.gc(clock.now(), opt.gcGraceMs)
    if (removed.length) {
      log.debug(`collected ${removed.length} unreachable peer(s)`)
      topologyChanged()
    }
    if (topology.hasUnreachablePending()) schedule('gc', opt.gcGraceMs, runGc)
  }

  // Both jittered so peers started together do not gossip in lockstep.
  function antiEntropy(): void {
    const ns = [...live.keys()]
    if (ns.length) {
      const peer = ns[rng.int(ns.length)]
      channels.sendUnicast(TOPOLOGY_CHANNEL, identity.name, peer, encodeDigest(topology.digest()))
    }
    schedule('anti-entropy', opt.antiEntropyMs * (0.75 + rng.next() * 0.5), antiEntropy)
  }

  function periodicGossip(): void {
    channels.periodic()
    schedule('periodic', opt.gossipIntervalMs * (0.75 + rng.next() * 0.5), periodicGossip)
  }

  // ---- connections ----

  function addConnection(conn: PeerConnection, target: string | undefined): string | undefined {
    const name = conn.remote.name
    if (stopped) return refuse(conn, 'router stopping')
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
    conn.onClose((reason) => connectionClosed(name, entry, reason))
    log.info(`connection added: ${conn.outbound ? '->' : '<-'} ${conn.remoteAddr} ${name}(${conn.remote.nickname})`)
    // Each side tells the other what it holds; the answers carry exactly what is missing.
    channels.sendUnicast(TOPOLOGY_CHANNEL, identity.name, name, encodeDigest(topology.digest()))
    channels.gossipAllTo(name)
    ownChanged()
    return undefined
  }

  function refuse(conn: PeerConnection, why: string): string {
    conn.close(why)
    return why
  }

  function connectionClosed(name: PeerName, entry: Live, reason: string): void {
    if (live.get(name) !== entry) return
    live.delete(name)
    stats.connectionsClosed++
    topology.removeConnection(name)
    log.info(`connection deleted: ${entry.conn.remoteAddr} ${name}(${entry.conn.remote.nickname}): ${reason}`)
    if (entry.target) maker.connectionClosed(entry.target, reason, clock.now())
    ownChanged()
  }

  // ---- connection maker ----

  function world() {
    const connectedAddrs = new Set<string>()
    const connectedIps = new Set<string>()
    for (const l of live.values()) {
      if (l.conn.outbound) connectedAddrs.add(l.conn.remoteAddr)
      else connectedIps.add(addrHost(l.conn.remoteAddr))
      if (l.target) connectedAddrs.add(l.target)
    }
    const discovered = new Set<string>()
    // At the limit discovery dials nothing: skip the walk over every connection in the mesh.
    if (config.discovery && (config.connLimit <= 0 || live.size < config.connLimit)) {
      for (const r of topology.records()) {
        for (const [to, e] of presentConns(r)) {
          // Without a limit (a full mesh), of two peers that learn of each other only the lower
          // name dials: no duplicate connections. With a limit both may, or a newcomer with a
          // high name would wait for peers that are already full.
          if (to === identity.name || live.has(to) || (config.connLimit <= 0 && to < identity.name)) continue
          // Outbound: the address it dialled is where `to` listens; inbound: its IP, our port.
          discovered.add(e.outbound ? e.addr : hostPort(addrHost(e.addr), config.port))
        }
      }
    }
    return { connectedAddrs, connectedIps, connectionCount: live.size, discovered: [...discovered] }
  }

  function runMaker(): void {
    if (!running) return
    carryOut(maker.tick(clock.now(), world()))
    const wake = maker.nextWake(clock.now())
    if (wake !== undefined) reschedule('maker-wake', Math.max(0, wake - clock.now()), runMaker)
  }

  function carryOut(effects: MakerEffect[]): void {
    for (const e of effects) {
      if (e.kind === 'persist') {
        try {
          deps.targets?.save(e.direct)
        } catch (err) {
          log.warn(`cannot save peer targets: ${(err as Error).message}`)
        }
      } else dial(e.addr)
    }
  }

  function dial(addr: string): void {
    if (!transport) return
    log.debug(`connecting to ${addr}`)
    transport.dial(addr).then(
      (conn) => {
        if (stopped) return conn.close('router stopped')
        const refused = addConnection(conn, addr)
        if (refused) maker.dialFailed(addr, undefined, refused, clock.now())
        else maker.dialSucceeded(addr)
        schedule('maker', 0, runMaker)
      },
      (err: Error) => {
        if (stopped) return
        const failure: HandshakeFailure | undefined = err instanceof HandshakeError ? err.failure : undefined
        log.info(`connection to ${addr} failed: ${err.message}`)
        maker.dialFailed(addr, failure, err.message, clock.now())
        schedule('maker', 0, runMaker)
      },
    )
  }

  // ---- the view for subsystems ----

  const view: MeshView = {
    self: { name: identity.name, nickname: identity.nickname, uid: identity.uid },
    peers: () => [...topology.records()].map((r): PeerInfo => ({ name: r.name, nickname: r.nickname, uid: r.uid })),
    isReachable: (name) => name === identity.name || routes.unicastAll().has(name),
    onPeersChanged(fn) {
      peersChangedFns.add(fn)
      return () => peersChangedFns.delete(fn)
    },
  }

  // ---- status ----

  function status(): MeshStatus {
    const me = topology.self()
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
    const w = world()
    for (const t of maker.allTargets()) {
      if (t.state === 'connected' || (t.state === 'waiting' && (w.connectedAddrs.has(t.addr) || w.connectedIps.has(addrHost(t.addr))))) continue
      if (t.kind === 'discovered' && t.state === 'waiting') continue
      connections.push(targetStatus(t))
    }
    connections.push(...refusals)
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
    return {
      name: me.name,
      nickname: me.nickname,
      uid: me.uid.toString(),
      shortId: me.shortId ?? null,
      version: me.version,
      port: config.port,
      encryption: config.encryption,
      discovery: config.discovery,
      connLimit: config.connLimit,
      targets: maker.directPeers(),
      connections,
      peers,
      unicastRoutes,
      stats: { ...stats },
    }
  }

  function targetStatus(t: Target): ConnectionStatus {
    const s: ConnectionStatus = { direction: 'outbound', addr: t.addr, state: t.state === 'waiting' ? 'connecting' : (t.state as ConnectionStatus['state']) }
    if (t.lastError) s.error = t.lastError
    if (t.state === 'retrying') s.retryAt = t.tryAfter
    return s
  }

  function onRefused(remoteAddr: string, why: HandshakeFailure): void {
    refusals.unshift({ direction: 'inbound', addr: remoteAddr, state: 'failed', error: `${why.code}: ${why.message}` })
    // Keep one line per remote host, most recent first, and only a few.
    const seen = new Set<string>()
    for (let i = 0; i < refusals.length; i++) {
      const h = addrHost(refusals[i].addr)
      if (seen.has(h) || i >= opt.recentRefusals) refusals.splice(i--, 1)
      else seen.add(h)
    }
  }

  return {
    identity,
    topology,
    routes,
    stats,
    view,
    newGossip(channel: string, gossiper: Gossiper): Gossip {
      if (channel === TOPOLOGY_CHANNEL) throw new Error(`gossip channel ${channel} is the mesh's own`)
      return channels.newGossip(channel, gossiper)
    },
    async start() {
      if (running || stopped) throw new Error('mesh started twice')
      transport = deps.transport(identity)
      await transport.listen((conn) => {
        addConnection(conn, undefined)
      }, onRefused)
      running = true
      const initial = deps.targets?.load() ?? config.peers
      if (initial.length) {
        const valid = initial.filter((p) => normalizeAddr(p, config.port) !== undefined)
        if (valid.length < initial.length) log.warn(`ignoring invalid peer address(es): ${initial.filter((p) => !valid.includes(p)).join(' ')}`)
        carryOut(maker.connect(valid, false, clock.now()).effects)
      }
      runMaker()
      schedule('anti-entropy', opt.antiEntropyMs * (0.5 + rng.next() * 0.5), antiEntropy)
      schedule('periodic', opt.gossipIntervalMs * (0.5 + rng.next() * 0.5), periodicGossip)
      log.info(`mesh started: ${identity.name}(${identity.nickname}) on port ${config.port}, ${initial.length} target(s)`)
    },
    async stop() {
      if (stopped) return
      stopped = true
      running = false
      for (const k of Object.keys(timers)) {
        timers[k]?.()
        timers[k] = undefined
      }
      channels.clear()
      for (const l of [...live.values()]) l.conn.close('router stopping')
      live.clear()
      await transport?.close()
    },
    connect(peers, replace = false) {
      const r = maker.connect(peers, replace, clock.now())
      if (r.invalid.length) return { invalid: r.invalid }
      carryOut(r.effects)
      schedule('maker', 0, runMaker)
      return { invalid: [] }
    },
    forget(peers) {
      carryOut(maker.forget(peers))
      schedule('maker', 0, runMaker)
    },
    status,
    connections: () => new Map([...live].map(([k, v]) => [k, v.conn])),
    setDataPath(peer, ok, why) {
      const l = live.get(peer)
      if (!l) return false
      l.dataWhy = ok ? undefined : why
      if (l.dataOk === ok) return true
      l.dataOk = ok
      log.info(`data path to ${peer}(${l.conn.remote.nickname}) ${ok ? 'works: established' : `down${why ? ` (${why})` : ''}: pending, data goes by other peers`}`)
      topology.setConnection(peer, { outbound: l.conn.outbound, established: ok, addr: l.conn.remoteAddr })
      ownChanged()
      return true
    },
  }
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}
