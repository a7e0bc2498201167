/**
 * IPAM's public door: `createIpam(config, deps)` builds a peer's allocator on the `ipam` gossip
 * channel; `start()` loads saved state (refusing state of another range or peer name) and joins
 * the channel; `handle()` answers the HTTP API; `status*()`/`report()` feed `weave status`/`report`.
 */
import type { Clock, Logger, Rng } from '../router/deps'
import { type GossipHost, type PeerName, parsePeerName } from '../router/mesh'
import { type Cidr, cidrRange, formatCidr, formatIp, hostRange, intersect, isNetworkCidr, parseCidr } from './address'
import { Allocator, type AllocatorConfig, type InitMode } from './allocator'
import { IpamError } from './errors'
import { type IpamRequest, type IpamResponse, IPAM_ROUTES, handleIpamHttp } from './http'
import { type StateStore, applyJournal, decodeState, fileStore, memoryStore, savedRange } from './persistence'
import { formatIpamStatus, peerShares, type PeerShare } from './status'

export { Allocator, IpamError, IPAM_ROUTES, fileStore, memoryStore, handleIpamHttp, savedRange }
export type { AllocatorConfig, InitMode, IpamRequest, IpamResponse, StateStore, Cidr, PeerShare }
export { parseCidr, formatCidr } from './address'
export { soloGossipHost } from './solo-host'

export const DEFAULT_RANGE = '10.32.0.0/12'
/** The state file's name in the daemon's state directory. */
export const IPAM_STATE_FILE = 'ipam.json'

export interface IpamConfig {
  /** --ipalloc-range, e.g. 10.32.0.0/12 (must be written as its network address). */
  range: string
  /** --ipalloc-default-subnet; the whole range when absent. */
  defaultSubnet?: string
  /** --ipalloc-init: `consensus[=N]`, `seed=PEER,...` or `observer`; consensus when absent. */
  init?: string
  /** Number of peers given to `weave launch`, for `consensus` without N. */
  launchPeerCount?: number
  /** Where ring and leases are saved; in memory when absent (tests). */
  stateFile?: string
  /** Timings (tests shorten them). */
  tickMs?: number
  reproposeMs?: number
  requestTimeoutMs?: number
  /** A dead container keeps its leases this long (default 30 s, as Weave). */
  releaseGraceMs?: number
}

export interface IpamDeps {
  clock: Clock
  rng: Rng
  logger: Logger
  host: GossipHost
  /** Overrides `stateFile` (simulations keep state in memory across "restarts"). */
  store?: StateStore
  /** Docker's word on whether a container runs (see AllocatorDeps.isRunning). */
  isRunning?: (id: string) => Promise<boolean | undefined>
  /**
   * Start-up lease GC: the state of each lease holder Docker knows (others left out), or
   * undefined when Docker cannot be asked. Gone → released; stopped → the die grace starts.
   */
  containerStates?: (ids: string[]) => Promise<Map<string, 'running' | 'stopped' | 'gone'> | undefined>
}

export interface Ipam {
  readonly allocator: Allocator
  start(): Promise<void>
  stop(): Promise<void>
  /** Answer an IPAM API request (see http.ts for the routes). */
  handle(req: IpamRequest): Promise<IpamResponse>
  /** The text of `weave status ipam`. */
  statusIpam(): string
  /** One-line state: idle / awaiting consensus (quorum: Q, known: K) / ready / ... */
  statusText(): string
  /** Key/value lines for the IPAM block of `weave status`. */
  statusLines(): Array<[string, string]>
  /** The IPAM part of `weave report`. */
  report(): Record<string, unknown>
  /** Counts for metrics and the topology page: leases here, range size, pending ops, every peer's share. */
  facts(): IpamFacts
}

export interface IpamFacts {
  activeIps: number
  rangeSize: number
  pendingAllocates: number
  pendingClaims: number
  shares: PeerShare[]
}

/** Parse --ipalloc-init; `consensus` without N derives N from the launch peers and warns. */
export function parseInit(text: string | undefined, launchPeerCount: number, logger: Logger): InitMode {
  const t = (text ?? 'consensus').trim()
  if (t === 'observer') return { kind: 'observer' }
  if (t === 'consensus') {
    const n = launchPeerCount + 1
    logger.warn(
      `--ipalloc-init consensus without a cluster size: assuming ${n} peers (the ${launchPeerCount} launch peer(s) plus this one), ` +
        `quorum ${Math.floor(n / 2) + 1}; pass --ipalloc-init consensus=N with the real cluster size to avoid split rings`,
    )
    return { kind: 'consensus', clusterSize: n }
  }
  let m = /^consensus=(\d+)$/.exec(t)
  if (m) {
    const n = Number(m[1])
    if (n < 1) throw new IpamError(400, `--ipalloc-init ${t}: the cluster size must be at least 1`)
    return { kind: 'consensus', clusterSize: n }
  }
  m = /^seed=(.+)$/.exec(t)
  if (m) {
    const peers: PeerName[] = []
    for (const p of m[1].split(',')) {
      const name = parsePeerName(p)
      if (!name) throw new IpamError(400, `--ipalloc-init ${t}: ${p} is not a peer name (want the aa:bb:cc:dd:ee:ff form)`)
      peers.push(name)
    }
    return { kind: 'seed', peers }
  }
  throw new IpamError(400, `--ipalloc-init ${t}: want consensus[=N], seed=PEER,... or observer`)
}

/** Validate range and default subnet; throws an IpamError with the reason. */
export function parseRanges(range: string, defaultSubnet: string | undefined): { universe: Cidr; defaultSubnet: Cidr } {
  const universe = parseCidr(range)
  if (!universe || !isNetworkCidr(universe)) throw new IpamError(400, `--ipalloc-range ${range}: want a network in CIDR form such as 10.32.0.0/12`)
  if (universe.prefix > 30) throw new IpamError(400, `--ipalloc-range ${range} is too small: at least /30`)
  const sub = defaultSubnet ? parseCidr(defaultSubnet) : universe
  if (!sub || !isNetworkCidr(sub)) throw new IpamError(400, `--ipalloc-default-subnet ${defaultSubnet}: want a network in CIDR form`)
  if (sub.prefix > 30) throw new IpamError(400, `--ipalloc-default-subnet ${defaultSubnet} is too small: at least /30`)
  if (!intersect(hostRange(sub), cidrRange(universe))) {
    throw new IpamError(400, `--ipalloc-default-subnet ${formatCidr(sub)} does not overlap --ipalloc-range ${formatCidr(universe)}`)
  }
  return { universe, defaultSubnet: sub }
}

export function createIpam(config: IpamConfig, deps: IpamDeps): Ipam {
  const log = deps.logger
  // `--ipalloc-range ""`: IPAM off; a one-address universe nobody claims keeps the code paths single.
  const disabled = config.range === ''
  const { universe, defaultSubnet } = disabled ? { universe: { ip: 0, prefix: 32 }, defaultSubnet: { ip: 0, prefix: 32 } } : parseRanges(config.range, config.defaultSubnet)
  const rangeText = disabled ? '' : formatCidr(universe)
  const init = parseInit(config.init, config.launchPeerCount ?? 0, log)
  const store = deps.store ?? (config.stateFile ? fileStore(config.stateFile) : memoryStore())
  const allocator = new Allocator(
    {
      universe, defaultSubnet, init, tickMs: config.tickMs, reproposeMs: config.reproposeMs,
      requestTimeoutMs: config.requestTimeoutMs, releaseGraceMs: config.releaseGraceMs, disabled,
    },
    { clock: deps.clock, rng: deps.rng, logger: log, host: deps.host, store, isRunning: deps.isRunning },
  )
  const view = deps.host.view
  // Nicknames of peers seen so far, so a stopped peer's line still names it.
  const nicknames = new Map<PeerName, string>()
  const unsubscribe = view.onPeersChanged(() => {
    const peers = view.peers()
    for (const p of peers) nicknames.set(p.name, p.nickname)
    // peers come and go under names they choose: keep only those still in the mesh or the ring
    if (nicknames.size > 2 * peers.length + 64) {
      const keep = new Set<string>([...peers.map((p) => p.name), ...allocator.ring.shares().keys()])
      for (const name of nicknames.keys()) if (!keep.has(name)) nicknames.delete(name)
    }
  })
  /** Leases of containers removed while we were down are freed; stopped ones get the die grace. */
  async function collectGone(): Promise<void> {
    const ids = allocator.owned().map((o) => o.containerid)
    if (!deps.containerStates || ids.length === 0) return
    const states = await deps.containerStates(ids).catch(() => undefined)
    if (!states) {
      log.info(`${ids.length} lease holder(s) restored; Docker cannot be asked which still exist, so all are kept`)
      return
    }
    const gone: string[] = []
    for (const [id, st] of states) {
      if (st === 'gone') {
        await allocator.release(id)
        gone.push(id.slice(0, 12))
      } else if (st === 'stopped') allocator.containerDied(id)
    }
    if (gone.length) log.info(`released the leases of ${gone.length} container(s) removed while the router was down: ${gone.join(' ')}`)
  }

  return {
    allocator,
    async start() {
      const stored = await store.load()
      let loaded = decodeState(stored.snapshot, { peerName: view.self.name, range: rangeText, where: store.where })
      if (loaded.ok && loaded.state && stored.journal.length) loaded = applyJournal(loaded.state, stored.journal, store.where)
      if (!loaded.ok) throw new IpamError(500, loaded.reason, 'state-refused')
      allocator.restore(loaded.state)
      allocator.start()
      if (disabled) log.info('IP allocation is off (--ipalloc-range ""): containers get explicit addresses only')
      else log.info(`IPAM on ${formatCidr(universe)}, default subnet ${formatCidr(defaultSubnet)}, init ${describeInit(init)}`)
      // Not awaited: a slow or hung engine must not hold up the start.
      void collectGone().catch((err: Error) => log.warn(`start-up lease check: ${err.message}`))
    },
    stop: () => {
      unsubscribe()
      return allocator.stop()
    },
    handle: (req) => handleIpamHttp(allocator, req),
    statusIpam: () => formatIpamStatus(allocator.ring, view, allocator.activeCount(), allocator.statusText(), nicknames),
    statusText: () => allocator.statusText(),
    statusLines() {
      return [
        ['Service', 'ipam'],
        ['Status', allocator.statusText()],
        ['Range', disabled ? 'none' : formatCidr(universe)],
        ['DefaultSubnet', disabled ? 'none' : formatCidr(defaultSubnet)],
      ]
    },
    facts() {
      const p = allocator.pendingByKind()
      return {
        activeIps: allocator.activeCount(),
        rangeSize: allocator.ring.end - allocator.ring.start,
        pendingAllocates: p.allocates,
        pendingClaims: p.claims,
        shares: allocator.ring.isEmpty() ? [] : peerShares(allocator.ring, view, nicknames),
      }
    },
    report: () => ipamReport(allocator, view, nicknames, { rangeText, disabled, defaultSubnet, init }),
  }
}

/** `weave report`'s IPAM object: Weave's ipam.Status fields by name, then ours. */
function ipamReport(
  allocator: Allocator, view: GossipHost['view'], nicknames: Map<PeerName, string>,
  m: { rangeText: string; disabled: boolean; defaultSubnet: Cidr; init: InitMode },
): Record<string, unknown> {
  const { rangeText, disabled, defaultSubnet, init } = m
  const ring = allocator.ring
  const known = new Set(view.peers().map((p) => p.name))
  const pending = allocator.pendingOps()
  // Weave's ipam.Status field by field (Paxos, Range, RangeNumIPs, ActiveIPs, DefaultSubnet,
  // Entries per ring token, PendingClaims, PendingAllocates), then ours
  return {
    Paxos: allocator.paxosStatus() ?? null,
    Range: rangeText,
    RangeNumIPs: disabled ? 0 : ring.end - ring.start,
    ActiveIPs: allocator.activeCount(),
    DefaultSubnet: disabled ? '' : formatCidr(defaultSubnet),
    Entries: ring.entries.map((e, i) => ({
      Token: formatIp(e.token),
      Size: (i + 1 < ring.entries.length ? ring.entries[i + 1].token : ring.end) - e.token,
      Peer: e.peer,
      Nickname: nicknames.get(e.peer) ?? '',
      IsKnownPeer: known.has(e.peer),
      Version: e.version,
    })),
    PendingClaims: pending.claims.map((c) => ({ Ident: c.id, Address: formatCidr(c.cidr) })),
    PendingAllocates: pending.allocates,
    Status: allocator.statusText(),
    Init: describeInit(init),
    /** Per peer (ours): its share of the range, as `weave status ipam` shows it. */
    Shares: peerShares(allocator.ring, view, nicknames).map((s) => ({
      Peer: s.peer,
      Nickname: s.nickname ?? '',
      Size: s.addresses,
      Percent: Number(s.percent.toFixed(3)),
      IsKnownPeer: s.self || view.peers().some((p) => p.name === s.peer),
      Reachable: s.reachable,
    })),
    Seeds: allocator.ring.seeds,
    Removed: [...allocator.ring.removed],
    /** Peers IPAM sees on its gossip host (1: alone, e.g. before the mesh is wired in). */
    KnownPeers: view.peers().length,
    Pending: allocator.pendingCount(),
  }
}

function describeInit(i: InitMode): string {
  if (i.kind === 'consensus') return `consensus=${i.clusterSize}`
  if (i.kind === 'seed') return `seed=${i.peers.join(',')}`
  return 'observer'
}
