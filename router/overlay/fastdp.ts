/**
 * The fastdp driver: the OVS bridge `datapath` (made or adopted through OVSDB) and its OpenFlow
 * table, kept equal to the wanted state (peers with their underlay IPs and MACs, local MACs,
 * routes) by incremental, atomic changes. MACs come from the caller (`setPeer`, `learnLocal`);
 * with `learn: true` the datapath additionally learns remote MACs from tunnel frames itself.
 *
 * ```ts
 * const fdp = createFastdp({ ovsdbTarget: 'unix:/run/openvswitch/db.sock', datapathType: 'netdev', self: 1 }, { clock })
 * try { await fdp.start() } catch (e) { if (e instanceof FastdpUnavailableError) status = e.message }  // "no OVS datapath on this host: …"
 * await fdp.setPeer(2, { ip: '192.168.250.2', macs: ['aa:…'] })
 * await fdp.learnLocal('ce:…')
 * await fdp.stop({ removeBridge: true })
 * ```
 */
import { execFile } from 'node:child_process'
import * as path from 'node:path'
import type { Clock, Logger } from '../deps'
import { nullLogger } from '../deps'
import {
  connectOvsdb, datapathInfo, datapathProblems, ensureDatapath, removeDatapath, waitApplied,
  type DatapathInfo, type OvsdbClient,
} from '../ovsdb'
import {
  FLOW_COOKIE, LEARNT_COOKIE, checkShortId, computeFlows, diffFlows, isEmptyChange, normalizeMac, VXLAN_OVERHEAD_BYTES,
  type Flow, type FlowPeer, type FlowPorts, type FlowState,
} from './fastdp-flows'
import { DEFAULT_OVS_RUNDIR, createOfctlProgrammer, type FlowProgrammer, type FlowStat, type OfctlOptions } from './ofctl'
import { FlowTraffic, type PathCounts } from './fastdp-traffic'

export interface FastdpConfig {
  /** OVSDB address, `unix:PATH` (or `tcp:IP:PORT`). */
  ovsdbTarget: string
  /** Default `datapath`. */
  bridge?: string
  datapathType: 'system' | 'netdev'
  /** Our short ID (12 bits). */
  self: number
  /** Our underlay address, used as the outer source of relayed frames. */
  selfIp?: string
  /** The weave bridge's MTU; only checked and reported (inner frames need VXLAN_OVERHEAD_BYTES more on the path). */
  mtu?: number
  /** vxlan UDP port; default 6784 (port `vxlan-6784`). */
  udpPort?: number
  /** The weave bridge's end on the datapath; default `vethwe-datapath`. */
  datapathPort?: string
  /**
   * An internal port made on the bridge for the router (frames for sleeve-only peers and flooded
   * copies for them leave through it; what the router injects there goes to the weave bridge).
   * None: such frames are dropped.
   */
  routerPort?: string
  /**
   * `internal` (default): OVS makes routerPort as its own internal port; `system`: routerPort is an
   * existing interface (the daemon's vethwe-ovsrtr, whose veth peer the sleeve captures on).
   */
  routerPortType?: 'internal' | 'system'
  /** Where ovs-vswitchd keeps `BRIDGE.mgmt`; default: the OVSDB socket's directory, else /var/run/openvswitch. */
  ovsRundir?: string
  /** Learn remote MACs from tunnel frames in the datapath (see FlowState.learn). Default false. */
  learn?: boolean
  /** The router port gets every flood copy (see FlowState.floodToRouter). Default false. */
  floodToRouter?: boolean
  /** How long start() waits for ovs-vswitchd to attach the ports. Default 10 s. */
  attachTimeoutMs?: number
}

export interface FastdpDeps {
  clock: Clock
  logger?: Logger
  /** Default: connectOvsdb. */
  connect?: (target: string) => Promise<OvsdbClient>
  /** Default: ovs-ofctl bundles (createOfctlProgrammer). */
  programmer?: (opts: OfctlOptions) => FlowProgrammer
  /**
   * With the userspace datapath: make the frames that reach `datapathPort` whole. OVS reads the
   * port without virtio headers, so TSO super-frames and partial checksums from containers would
   * leave through the tunnel too big or unfinished; with tx offload off on the port's veth peer
   * (the weave bridge's end) the kernel segments and checksums them first. Default: ip + ethtool.
   */
  wholeFrames?: (datapathPort: string) => Promise<string | undefined>
}

/** Finds the veth peer of `port` (`ip -o link`: `N: port@peer: …`) and turns its tx offload off; returns the peer. */
function ethtoolWholeFrames(port: string): Promise<string | undefined> {
  const run = (argv: string[]) => new Promise<string>((resolve, reject) => {
    execFile(argv[0], argv.slice(1), { timeout: 10_000 }, (err, out, stderr) => err ? reject(new Error(String(stderr).trim() || err.message)) : resolve(String(out)))
  })
  return run(['ip', '-o', 'link', 'show', 'dev', port]).then(async (out) => {
    const peer = new RegExp(`^\\d+: ${port.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}@([^:]+):`).exec(out)?.[1]
    if (!peer || peer.startsWith('if')) return undefined // not a veth in this namespace
    await run(['ethtool', '-K', peer, 'tx', 'off'])
    return peer
  })
}

export interface FastdpPeerInfo {
  /** Underlay IPv4 address. */
  ip?: string
  /** MACs behind this peer (replaces the previous list). */
  macs?: readonly string[]
  /** `sleeve`: reached through the router port only. Default `fastdp`. */
  via?: 'fastdp' | 'sleeve'
  /** Count its heartbeats through the tunnel (see fastdp-health). Default: unchanged, initially off. */
  heartbeat?: boolean
  /** Our address as this peer sees us (outer source of frames relayed to it); default: unchanged, else FastdpConfig.selfIp. */
  localIp?: string
}

export interface FastdpInfo {
  bridge: string
  datapathType: string
  ports: FlowPorts
  /** The bridge's ports by name → OpenFlow port number (for `weave report`). */
  portNames: Record<string, number>
  /** Flows we installed. */
  flows: number
  /** Flows the datapath learnt (MAC learning), as of the last verify(); undefined before one. */
  learntFlows?: number
  peers: number
  localMacs: number
  mtu?: number
}

export interface Fastdp {
  /** Make/adopt the bridge, wait for its ports, install the base flows. Rejects with FastdpUnavailableError. */
  start(): Promise<FastdpInfo>
  setPeer(shortId: number, info: FastdpPeerInfo): Promise<void>
  removePeer(shortId: number): Promise<void>
  learnLocal(mac: string): Promise<void>
  forgetLocal(mac: string): Promise<void>
  /** Next hop per destination short ID (undefined = unreachable); none = every peer direct. */
  setRoutes(nextHop: ((dst: number) => number | undefined) | undefined): Promise<void>
  /** Recompute and push (e.g. after the routes function's answers changed). */
  refresh(): Promise<void>
  /**
   * Check the switch still holds our table (ovs-vswitchd keeps no flows across a restart, and
   * anyone may delete flows): when the number of our flows differs, install the whole table again.
   * Resolves true when it had to. Cheap enough to run every ~30 s.
   */
  verify(): Promise<boolean>
  /** The table as we installed it. */
  installed(): Flow[]
  /** The switch's flows with counters. */
  stats(): Promise<FlowStat[]>
  /**
   * Frames and bytes tunnelled to and received from each peer address since start, from the
   * flows' counters (fastdp-traffic); totals of addresses not in `keep` are forgotten. The first
   * call turns counting on: from then on a change that deletes or modifies flows dumps the
   * counters first, so what those flows counted is kept — except a path change (a peer moving
   * between fastdp and sleeve, a route): that one must not wait, and what the peer's flows
   * counted since the last read is lost.
   */
  traffic(keep?: ReadonlySet<string>): Promise<Map<string, PathCounts>>
  info(): FastdpInfo | undefined
  /** Remove our flows; with removeBridge the OVS bridge (and its ports) too. */
  stop(opts?: { removeBridge?: boolean }): Promise<void>
}

/** Why fastdp cannot run on this host; the message is what `weave status` shows. */
export class FastdpUnavailableError extends Error {
  readonly code = 'FASTDP_UNAVAILABLE'
  constructor(readonly reason: string) {
    super(`no OVS datapath on this host: ${reason}`)
  }
}

/** OVS keeps its runtime files next to the database socket (`unix:/run/openvswitch/db.sock`). */
export function rundirFor(ovsdbTarget: string): string {
  return ovsdbTarget.startsWith('unix:') ? path.dirname(ovsdbTarget.slice('unix:'.length)) : DEFAULT_OVS_RUNDIR
}

/** The driver's state, shared by its pieces below. */
interface Driver {
  readonly cfg: FastdpConfig
  readonly deps: FastdpDeps
  readonly log: Logger
  readonly prog: FlowProgrammer
  readonly bridge: string
  readonly udpPort: number
  readonly vxlanName: string
  readonly dpPort: string
  readonly peers: Map<number, FlowPeer>
  readonly localMacs: Set<string>
  nextHop: ((dst: number) => number | undefined) | undefined
  ports: FlowPorts | undefined
  dpInfo: DatapathInfo | undefined
  db: OvsdbClient | undefined
  installed: Flow[] | undefined
  chain: Promise<unknown>
  stopped: boolean
  starting: Promise<FastdpInfo> | undefined
  /** Our flows the datapath learnt, as of the last verify(); undefined before one. */
  learntFlows: number | undefined
  readonly flowTraffic: FlowTraffic
  /** Whether anyone reads traffic(): until then no change costs a dump. */
  counting: boolean
}

export function createFastdp(cfg: FastdpConfig, deps: FastdpDeps): Fastdp {
  checkShortId(cfg.self)
  const bridge = cfg.bridge ?? 'datapath'
  const udpPort = cfg.udpPort ?? 6784
  const ofOpts: OfctlOptions = { bridge, rundir: cfg.ovsRundir ?? rundirFor(cfg.ovsdbTarget) }
  const prog = (deps.programmer ?? createOfctlProgrammer)(ofOpts)
  if (cfg.mtu !== undefined && (!Number.isInteger(cfg.mtu) || cfg.mtu < 576 || cfg.mtu > 65535 - VXLAN_OVERHEAD_BYTES)) throw new RangeError(`bad MTU ${cfg.mtu}`)
  const d: Driver = {
    cfg, deps, log: (deps.logger ?? nullLogger).child('fastdp'), prog, bridge, udpPort, vxlanName: `vxlan-${udpPort}`,
    dpPort: cfg.datapathPort ?? 'vethwe-datapath', peers: new Map(), localMacs: new Set(), nextHop: undefined, ports: undefined,
    dpInfo: undefined, db: undefined, installed: undefined, chain: Promise.resolve(), stopped: false, starting: undefined,
    learntFlows: undefined, flowTraffic: new FlowTraffic(), counting: false,
  }
  const sync = flowSyncer(d)

  return {
    start() {
      if (d.ports) return Promise.resolve(driverInfo(d)!)
      // concurrent callers share one start; a failed start may be tried again
      d.starting ??= startDriver(d, sync).finally(() => { d.starting = undefined })
      return d.starting
    },
    setPeer(shortId, p) {
      checkShortId(shortId)
      if (shortId === cfg.self) return Promise.reject(new RangeError(`peer ${shortId} is ourselves`))
      const prev = d.peers.get(shortId)
      d.peers.set(shortId, {
        shortId,
        ip: p.ip ?? prev?.ip,
        macs: p.macs ? p.macs.map(normalizeMac) : prev?.macs ?? [],
        via: p.via ?? prev?.via ?? 'fastdp',
        heartbeat: p.heartbeat ?? prev?.heartbeat ?? false,
        localIp: p.localIp ?? prev?.localIp,
      })
      // Learnt flows go when a peer's path changes either way: leaving fastdp they would keep
      // sending into a dead tunnel; entering it, they may still point through a relay (learnt
      // while the direct path was down) that both ends would otherwise keep re-learning.
      const changedPath = prev !== undefined && (prev.via ?? 'fastdp') !== d.peers.get(shortId)!.via
      return sync(changedPath)
    },
    removePeer(shortId) {
      const had = d.peers.get(shortId)
      d.peers.delete(shortId)
      return sync(had !== undefined && (had.via ?? 'fastdp') === 'fastdp')
    },
    learnLocal(mac) {
      d.localMacs.add(normalizeMac(mac))
      return sync()
    },
    forgetLocal(mac) {
      d.localMacs.delete(normalizeMac(mac))
      return sync()
    },
    setRoutes(fn) {
      // A learnt flow sends a MAC's frames to the address they last came from: after a route
      // changed that may be a hop no longer on the path (or the direct path just restored), so
      // learnt flows go (sync's `forget`) and the next frames flood until replies are learnt again.
      const hops = (f: typeof fn) => [...d.peers.keys()].map((id) => `${id}>${f ? f(id) : id}`).join(',')
      const changed = hops(d.nextHop) !== hops(fn)
      d.nextHop = fn
      return sync(changed)
    },
    refresh: () => sync(),
    verify: () => onChain(d, () => verifyTable(d)),
    installed: () => [...(d.installed ?? [])],
    stats: () => prog.dump(),
    traffic(keep) {
      d.counting = true
      return onChain(d, () => readTraffic(d, keep))
    },
    info: () => driverInfo(d),
    stop: (opts = {}) => stopDriver(d, opts),
  }
}

/** Run `fn` after every change queued so far; later changes wait for it. */
function onChain<T>(d: Driver, fn: () => Promise<T>): Promise<T> {
  const p = d.chain.then(fn)
  d.chain = p.catch(() => undefined)
  return p
}

const flowState = (d: Driver): FlowState => ({
  self: d.cfg.self, selfIp: d.cfg.selfIp, ports: d.ports!, peers: [...d.peers.values()], localMacs: [...d.localMacs],
  nextHop: d.nextHop, learn: d.cfg.learn, floodToRouter: d.cfg.floodToRouter,
})

/**
 * Bring the switch to the current state; one at a time, each a single atomic bundle. With
 * `forget`, the same bundle deletes the flows the datapath learnt: a learnt "MAC → tunnel to
 * P" outlives P's move to sleeve (it would keep sending into a dead tunnel) or a route change;
 * in one bundle, the frames switch paths at one instant.
 */
function flowSyncer(d: Driver): (forget?: boolean) => Promise<void> {
  /** A sync queued behind the one running: later changes join it instead of queueing their own. */
  let queued: { p: Promise<void>; forget: boolean } | undefined
  return (forget = false) => {
    // A burst of changes (a topology update naming many peers) becomes one bundle: the queued
    // sync reads the state when it runs, so it carries every change made until then.
    if (queued) {
      queued.forget ||= forget
      return queued.p
    }
    const q: { p: Promise<void>; forget: boolean } = { p: Promise.resolve(), forget }
    q.p = d.chain.then(async () => {
      if (queued === q) queued = undefined
      if (!d.ports || d.stopped) return
      const want = computeFlows(flowState(d))
      if (!d.installed) {
        await d.prog.replaceAll(want)
        d.installed = want
        return
      }
      const change = diffFlows(d.installed, want)
      if (q.forget && d.cfg.learn) change.forgetLearnt = true
      if (isEmptyChange(change)) return
      if (d.counting && !q.forget && (change.delete.length || change.modify.length)) {
        // what the flows about to go (or to tunnel elsewhere) counted since the last read; not
        // before a path change (a fallback): it must not wait for a dump, and loses that instead
        await d.prog.dump().then((x) => d.flowTraffic.sample(x), (err: Error) => d.log.debug(`flow counters: ${err.message}`))
      }
      await d.prog.apply(change) // a bundle: on failure nothing changed and `installed` still holds
      d.installed = want
      d.log.debug(`flows: +${change.add.length} ~${change.modify.length} -${change.delete.length}`)
    })
    queued = q
    d.chain = q.p.catch(() => undefined)
    return q.p
  }
}

async function findPorts(d: Driver, client: OvsdbClient): Promise<FlowPorts> {
  const { cfg, deps } = d
  const deadline = deps.clock.now() + (cfg.attachTimeoutMs ?? 10_000)
  for (;;) {
    const info = d.dpInfo = await datapathInfo(client, d.bridge)
    if (!info) throw new FastdpUnavailableError(`bridge ${d.bridge} vanished while starting`)
    const of = (name: string) => info.ports.find((p) => p.name === name)?.ofport
    const problems = datapathProblems(info)
    const b = of(d.dpPort), v = of(d.vxlanName), r = cfg.routerPort === undefined ? undefined : of(cfg.routerPort)
    const ok = (n: number | undefined) => n !== undefined && n > 0
    if (ok(b) && ok(v) && (cfg.routerPort === undefined || ok(r))) return { bridge: b!, vxlan: v!, ...(r === undefined ? {} : { router: r }) }
    if (deps.clock.now() >= deadline) {
      throw new FastdpUnavailableError(problems.length ? problems.join('; ') : `ports of ${d.bridge} not attached within ${cfg.attachTimeoutMs ?? 10_000} ms`)
    }
    await new Promise<void>((res) => { deps.clock.setTimer(100, res) })
  }
}

function driverInfo(d: Driver): FastdpInfo | undefined {
  const { cfg, ports } = d
  return ports && {
    bridge: d.bridge, datapathType: d.dpInfo?.datapathType ?? cfg.datapathType, ports,
    portNames: { [d.dpPort]: ports.bridge, [d.vxlanName]: ports.vxlan, ...(cfg.routerPort && ports.router ? { [cfg.routerPort]: ports.router } : {}) },
    flows: d.installed?.length ?? 0, ...(d.learntFlows === undefined ? {} : { learntFlows: d.learntFlows }),
    peers: d.peers.size, localMacs: d.localMacs.size, ...(cfg.mtu === undefined ? {} : { mtu: cfg.mtu }),
  }
}

async function startDriver(d: Driver, sync: () => Promise<void>): Promise<FastdpInfo> {
  const { cfg, deps, log } = d
  d.stopped = false
  let client: OvsdbClient
  try {
    client = await (deps.connect ?? ((t: string) => connectOvsdb(t)))(cfg.ovsdbTarget)
    d.db = client
  } catch (err) {
    throw new FastdpUnavailableError(`cannot reach OVSDB at ${cfg.ovsdbTarget}: ${(err as Error).message}`)
  }
  let created = false
  try {
    const res = await ensureDatapath(client, {
      bridge: d.bridge, datapathType: cfg.datapathType, udpPort: d.udpPort, vxlanPort: d.vxlanName,
      ports: cfg.routerPort !== undefined && cfg.routerPortType === 'system' ? [d.dpPort, cfg.routerPort] : [d.dpPort],
      internalPorts: cfg.routerPort === undefined || cfg.routerPortType === 'system' ? [] : [cfg.routerPort], failMode: 'secure',
    })
    created = res.created
    if (res.changes.length) log.info(`bridge ${d.bridge}: ${res.changes.join('; ')}`)
    await waitApplied(client, deps.clock, cfg.attachTimeoutMs ?? 10_000)
    const ports = d.ports = await findPorts(d, client)
    if ((d.dpInfo?.datapathType ?? cfg.datapathType) === 'netdev') {
      await (deps.wholeFrames ?? ethtoolWholeFrames)(d.dpPort).then(
        (peer) => { if (peer) log.debug(`tx offload off on ${peer} (userspace datapath)`) },
        (err: Error) => log.warn(`could not turn off tx offload towards ${d.dpPort} (TCP through fastdp may stall): ${err.message}`))
    }
    await sync()
    log.info(`fastdp on ${d.bridge} (${d.dpInfo?.datapathType}): ${d.dpPort}=${ports.bridge} ${d.vxlanName}=${ports.vxlan}${ports.router ? ` router=${ports.router}` : ''}`)
    return driverInfo(d)!
  } catch (err) {
    d.ports = undefined
    if (created) await removeDatapath(client, d.bridge).catch(() => false) // leave nothing half-made
    client.close()
    d.db = undefined
    if (err instanceof FastdpUnavailableError) throw err
    throw new FastdpUnavailableError(`cannot set up bridge ${d.bridge}: ${(err as Error).message}`)
  }
}

/** verify(): put the whole table back when the switch holds a different number of our flows. */
async function verifyTable(d: Driver): Promise<boolean> {
  if (!d.ports || d.stopped || !d.installed) return false
  const dump = await d.prog.dump()
  if (d.counting) d.flowTraffic.sample(dump) // learnt flows' counts, before their idle timeout takes them
  d.learntFlows = dump.filter((f) => f.cookie === LEARNT_COOKIE).length
  const ours = dump.filter((f) => f.cookie === FLOW_COOKIE).length
  if (ours === d.installed.length) return false
  d.log.warn(`datapath ${d.bridge} holds ${ours} of our ${d.installed.length} flows: reinstalling them`)
  const want = computeFlows(flowState(d))
  await d.prog.replaceAll(want)
  d.installed = want
  return true
}

async function readTraffic(d: Driver, keep: ReadonlySet<string> | undefined): Promise<Map<string, PathCounts>> {
  if (!d.ports || d.stopped) return new Map<string, PathCounts>()
  d.flowTraffic.sample(await d.prog.dump())
  if (keep) d.flowTraffic.retain(keep)
  return new Map([...d.flowTraffic.byAddress()].map(([ip, t]) => [ip, { ...t }]))
}

async function stopDriver(d: Driver, opts: { removeBridge?: boolean }): Promise<void> {
  await d.chain
  d.stopped = true
  try {
    if (d.ports) await d.prog.removeAll().catch((err) => d.log.warn(`removing flows: ${(err as Error).message}`))
    if (opts.removeBridge && d.db) await removeDatapath(d.db, d.bridge)
  } finally {
    d.ports = undefined
    d.installed = undefined
    d.db?.close()
    d.db = undefined
  }
}

/** start() as a result: the driver, or the reason fastdp is unavailable (for `weave status`). */
export async function startFastdp(cfg: FastdpConfig, deps: FastdpDeps): Promise<{ ok: true; fastdp: Fastdp; info: FastdpInfo } | { ok: false; reason: string }> {
  const fastdp = createFastdp(cfg, deps)
  try {
    return { ok: true, fastdp, info: await fastdp.start() }
  } catch (err) {
    if (err instanceof FastdpUnavailableError) return { ok: false, reason: err.message }
    throw err
  }
}
