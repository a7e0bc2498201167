/**
 * The daemon's mesh block: builds the mesh router over the TCP transport from the config,
 * persists direct targets in the state dir, and registers its API routes, status section and
 * report key. router/weaver.ts calls `wireMesh` once; this keeps weaver.ts's block small.
 *
 * API: POST /connect (peer=ADDR repeatable, replace=true), POST /forget (peer=ADDR...),
 * GET /status/peers|connections|targets; the `router` section of GET /status; `Router` in GET /report.
 * Parameters come from the query string or a form-encoded / JSON body ({"peers":[...],"replace":true}).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import type { Clock, Logger, Rng } from './deps'
import type { WeaverConfig } from './config'
import { ApiError, type ApiRequest, type ApiRouter, type StatusModel } from './api'
import {
  createMesh, createTcpTransport, derivePasswordKey, connectionsText, peersText, reportJson, statusLines, targetsText,
  type Mesh, type MeshStatus, type PasswordKey, type PeerName, type TargetsStore,
} from './mesh'

export interface WiredMesh {
  mesh: Mesh
  /** The texts of `weave status peers` and `weave status connections` (the API routes and /ui show the same), from `st` when given. */
  peersText(st?: MeshStatus): string
  connectionsText(st?: MeshStatus): string
  start(): Promise<void>
  stop(): Promise<void>
}

/** Where `weave connect`/`forget` targets are kept across restarts. */
export function targetsFile(stateDir: string): string {
  return path.join(stateDir, 'peers.json')
}

/**
 * Stored targets plus the launch arguments: a restart (or `--resume`, or a launch naming no peers)
 * resumes what `weave connect` added, and peers named at launch are always included; with
 * `from: 'launch'` (a launch naming peers, as Weave's) the named peers replace the stored ones.
 */
export function fileTargetsStore(file: string, launchPeers: readonly string[], log: Logger, from: 'stored+launch' | 'launch' = 'stored+launch'): TargetsStore {
  return {
    load() {
      if (from === 'launch') return [...new Set(launchPeers)]
      let stored: string[] = []
      try {
        const j: unknown = JSON.parse(fs.readFileSync(file, 'utf8'))
        if (Array.isArray(j) && j.every((x) => typeof x === 'string')) stored = j
        else log.warn(`${file}: not a list of peers, ignoring it`)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn(`cannot read ${file}: ${(err as Error).message}`)
      }
      return [...new Set([...stored, ...launchPeers])]
    },
    save(direct) {
      const tmp = `${file}.tmp`
      fs.writeFileSync(tmp, JSON.stringify(direct) + '\n')
      fs.renameSync(tmp, file)
    },
  }
}

export function wireMesh(
  config: WeaverConfig,
  peerName: string,
  deps: {
    clock: Clock
    rng: Rng
    logger: Logger
    router: ApiRouter
    status: StatusModel
    /** What carries a peer's data (fastdp/sleeve, MTU), for `weave status connections`. */
    overlayInfo?: (peer: string) => string | undefined
    /** Whether the overlay sends `peer`'s data in clear by mutual trust (`--trusted-subnets`). */
    overlayTrusted?: (peer: string) => boolean
    /** Weave's connection Attrs (overlay name, mtu, encrypted) for the report. */
    overlayAttrs?: (peer: string) => Record<string, unknown> | undefined
    /** Weave's NetworkRouterStatus extras (Interface, CaptureStats, MACs, OverlayDiagnostics). */
    routerReport?: () => Record<string, unknown>
  },
): WiredMesh {
  const log = deps.logger
  let passwordKey: PasswordKey | undefined
  const mesh = createMesh(
    {
      name: peerName as PeerName,
      nickname: config.nickname,
      port: config.meshPort,
      connLimit: config.connLimit,
      discovery: !config.noDiscovery,
      peers: [...config.peers],
      encryption: !!config.password,
      trustedSubnets: [...(config.trustedSubnets ?? [])],
      overlays: ['sleeve'],
      // the daemon's overlay judges every connection's data path (heartbeats) before data uses it
      establishedByOverlay: true,
    },
    {
      clock: deps.clock,
      rng: deps.rng,
      logger: log,
      targets: fileTargetsStore(targetsFile(config.stateDir), config.peers, log, config.targetsFrom),
      transport: (local) =>
        createTcpTransport(
          { local, password: passwordKey, listenAddr: config.meshHost, listenPort: config.meshPort },
          { clock: deps.clock, rng: deps.rng, logger: log.child('conn') },
        ),
    },
  )

  const { router, status } = deps
  router.route('POST', '/connect', (req) => {
    const { peers, replace } = peerParams(req)
    if (!peers.length && !replace) throw new ApiError(400, 'no peer given (peer=ADDR)')
    const r = mesh.connect(peers, replace)
    if (r.invalid.length) throw new ApiError(400, `invalid peer address(es): ${r.invalid.join(' ')}`)
    return { text: '' }
  })
  router.route('POST', '/forget', (req) => {
    const { peers } = peerParams(req)
    if (!peers.length) throw new ApiError(400, 'no peer given (peer=ADDR)')
    mesh.forget(peers)
    return { text: '' }
  })
  const statusPeers = (st = mesh.status()) => peersText(st)
  const statusConnections = (st = mesh.status()) => connectionsText(st, deps.overlayInfo, deps.overlayTrusted) + relayedText(st, deps.overlayInfo)
  router.route('GET', '/status/peers', () => ({ text: statusPeers() }))
  router.route('GET', '/status/connections', () => ({ text: statusConnections() }))
  router.route('GET', '/status/targets', () => ({ text: targetsText(mesh.status()) }))
  status.addSection('router', { order: 10, lines: () => statusLines(mesh.status()) })
  status.addReport('Router', () => reportJson(mesh.status(), {
    overlayInfo: deps.overlayInfo, trusted: deps.overlayTrusted, attrs: deps.overlayAttrs, router: deps.routerReport,
  }))

  return {
    mesh,
    peersText: (st) => statusPeers(st),
    connectionsText: (st) => statusConnections(st),
    async start() {
      // Argon2id once, before any connection (seconds of CPU by design).
      if (config.password) passwordKey = await derivePasswordKey(config.password)
      await mesh.start()
    },
    stop: () => mesh.stop(),
  }
}

/**
 * Reachable peers we hold no connection to, whose data the overlay relays through another peer:
 * `.. relayed  via NAME(nick) fastdp  NAME(nick)` (what `overlayInfo` says), one a line.
 */
function relayedText(st: ReturnType<Mesh['status']>, overlayInfo?: (peer: string) => string | undefined): string {
  if (!overlayInfo) return ''
  const connected = new Set(st.connections.filter((c) => c.state === 'established').map((c) => c.peer))
  const rows: string[] = []
  for (const p of st.peers) {
    if (p.name === st.name || !p.reachable || connected.has(p.name)) continue
    const info = overlayInfo(p.name)
    if (info) rows.push(`.. relayed ${info} ${p.name}(${p.nickname})`)
  }
  return rows.map((r) => `${r}\n`).join('')
}

/** `peer` values and `replace` from the query string, a form body or a JSON body. */
function peerParams(req: ApiRequest): { peers: string[]; replace: boolean } {
  const peers = req.query.getAll('peer')
  let replace = req.query.get('replace') === 'true'
  const text = req.body.toString('utf8').trim()
  if (text.startsWith('{')) {
    let j: { peers?: unknown; replace?: unknown }
    try {
      j = JSON.parse(text) as { peers?: unknown; replace?: unknown } // fields checked below
    } catch {
      throw new ApiError(400, 'body is not valid JSON')
    }
    if (Array.isArray(j.peers)) peers.push(...j.peers.map(String))
    if (j.replace === true) replace = true
  } else if (text) {
    const form = new URLSearchParams(text)
    peers.push(...form.getAll('peer'))
    if (form.get('replace') === 'true') replace = true
  }
  return { peers: peers.map((p) => p.trim()).filter(Boolean), replace }
}
