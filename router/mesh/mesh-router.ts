/**
 * The mesh router: composes identity, topology, routes, gossip channels and the connection maker
 * over a MeshTransport (TCP in the daemon, in-memory in simulations).
 *
 *   const mesh = createMesh({ name, nickname, port: 6783, connLimit: 200, discovery: true, peers }, {
 *     clock, rng, logger, transport: (local) => createTcpTransport({ local, ... }, deps) })
 *   await mesh.start(); mesh.newGossip('ipam', gossiper); mesh.status(); await mesh.stop()
 *
 * The parts, one file each, share a MeshCore (mesh-core.ts): the topology channel
 * (topology-gossip.ts), the connection table (connection-table.ts), the connection maker's
 * driver (maker-driver.ts) and the status view (mesh-status.ts). Other channels (IPAM, DNS) get
 * Weave's semantics: full state to each new neighbour and to a neighbour subset every interval.
 */
import type { MeshTransport } from './connection-contract'
import { ConnectionMaker, normalizeAddr } from './connection-maker'
import { addConnection, closeAllConnections, setDataPath } from './connection-table'
import { GossipChannels } from './gossip-channel'
import type { Gossip, Gossiper, MeshView, PeerInfo, PeerName } from './gossip-contract'
import { createLocalIdentity } from './identity'
import { MakerDriver } from './maker-driver'
import { NamedTimers, type Live, type MeshCore, type MeshHooks } from './mesh-core'
import { meshConnections, meshStatus, RefusalLog } from './mesh-status'
import { MESH_DEFAULTS, TOPOLOGY_CHANNEL, type Mesh, type MeshConfig, type MeshDeps, type MeshStats } from './mesh-types'
import { RouteTable } from './routes'
import { Topology } from './topology'
import { TopologyGossip } from './topology-gossip'

export {
  MESH_DEFAULTS, TOPOLOGY_CHANNEL, type ConnectionStatus, type Mesh, type MeshConfig, type MeshDeps, type MeshStatus,
  type MeshStats, type PeerStatus, type TargetsStore,
} from './mesh-types'

export function createMesh(config: MeshConfig, deps: MeshDeps): Mesh {
  const { clock, rng } = deps
  const log = deps.logger
  const opt = { ...MESH_DEFAULTS, ...stripUndefined(config) } as typeof MESH_DEFAULTS & MeshConfig
  const identity = createLocalIdentity({ name: config.name, nickname: config.nickname, uid: config.uid, shortId: config.shortId, overlays: config.overlays }, rng)
  const topology = new Topology({ name: identity.name, nickname: identity.nickname, uid: identity.uid, shortId: identity.shortId() })
  const routes = new RouteTable(identity.name, () => topology.records())
  const live = new Map<PeerName, Live>()
  const stats: MeshStats = { gossipMessagesSent: 0, gossipBytesSent: 0, connectionsAdded: 0, connectionsClosed: 0 }
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

  const hooks: MeshHooks = { ownChanged: () => gossip.ownChanged(), runMaker: () => driver.run() }
  const core: MeshCore = {
    config, opt, deps, clock, rng, log, identity, topology, routes, channels, live, stats, hooks,
    maker: new ConnectionMaker({ port: config.port, connLimit: config.connLimit, discovery: config.discovery }, rng),
    timers: new NamedTimers(clock),
    state: { running: false, stopped: false },
  }
  const gossip = new TopologyGossip(core)
  let transport: MeshTransport | undefined
  const driver = new MakerDriver(core, () => transport, (conn, target) => addConnection(core, gossip, conn, target))
  const refusals = new RefusalLog(opt.recentRefusals)

  const view: MeshView = {
    self: { name: identity.name, nickname: identity.nickname, uid: identity.uid },
    peers: () => [...topology.records()].map((r): PeerInfo => ({ name: r.name, nickname: r.nickname, uid: r.uid })),
    isReachable: (name) => name === identity.name || routes.unicastAll().has(name),
    onPeersChanged: (fn) => gossip.onPeersChanged(fn),
  }

  function periodicGossip(): void {
    channels.periodic()
    core.timers.schedule('periodic', opt.gossipIntervalMs * (0.75 + rng.next() * 0.5), periodicGossip)
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
      if (core.state.running || core.state.stopped) throw new Error('mesh started twice')
      transport = deps.transport(identity)
      await transport.listen((conn) => {
        addConnection(core, gossip, conn, undefined)
      }, (addr, why) => refusals.add(addr, why))
      core.state.running = true
      const initial = deps.targets?.load() ?? config.peers
      if (initial.length) {
        const valid = initial.filter((p) => normalizeAddr(p, config.port) !== undefined)
        if (valid.length < initial.length) log.warn(`ignoring invalid peer address(es): ${initial.filter((p) => !valid.includes(p)).join(' ')}`)
        driver.carryOut(core.maker.connect(valid, false, clock.now()).effects)
      }
      driver.run()
      gossip.startAntiEntropy()
      // Jittered so peers started together do not gossip in lockstep.
      core.timers.schedule('periodic', opt.gossipIntervalMs * (0.5 + rng.next() * 0.5), periodicGossip)
      log.info(`mesh started: ${identity.name}(${identity.nickname}) on port ${config.port}, ${initial.length} target(s)`)
    },
    async stop() {
      if (core.state.stopped) return
      core.state.stopped = true
      core.state.running = false
      core.timers.clear()
      channels.clear()
      closeAllConnections(core)
      await transport?.close()
    },
    connect(peers, replace = false) {
      const r = core.maker.connect(peers, replace, clock.now())
      if (r.invalid.length) return { invalid: r.invalid }
      driver.carryOut(r.effects)
      driver.soon()
      return { invalid: [] }
    },
    forget(peers) {
      driver.carryOut(core.maker.forget(peers))
      driver.soon()
    },
    status: () => meshStatus(core, refusals),
    connectionStatus: () => meshConnections(core, refusals),
    connections: () => new Map([...live].map(([k, v]) => [k, v.conn])),
    setDataPath: (peer, ok, why) => setDataPath(core, peer, ok, why),
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}
