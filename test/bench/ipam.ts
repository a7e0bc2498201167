/**
 * `npm run bench -- ipam`: IPAM speed.
 *  - allocs_per_s: allocations through the HTTP API (unix socket, the daemon's own ApiRouter and
 *    server) on one peer with warm local space and a real state file (write + fsync + rename per
 *    group commit), 64 requests in flight. Baseline in the same run: the same server answering a
 *    trivial route, so `vs_baseline` is the share of the HTTP round trip rate IPAM keeps.
 *  - first_alloc_s: three peers on the real mesh (TCP on 127.0.0.1, in one process), each with
 *    IPAM consensus=3; an allocation is requested on the first peer before the others exist; the
 *    time from the moment the third peer is connected to the allocation's answer. Also reported:
 *    from the start of the first peer.
 * Last line: one JSON object.
 */
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as os from 'node:os'
import * as path from 'node:path'
import { createLogger, cryptoRng, nullLogger, systemClock } from '../../router/deps'
import { ApiRouter, createApiServer } from '../../router/api'
import { createMesh, createTcpTransport, type Mesh, type PeerName } from '../../router/mesh'
import { IPAM_ROUTES, createIpam, soloGossipHost } from '../../ipam'
import { applyJournal, decodeState, fileStore } from '../../ipam/persistence'
import { labUnavailableReason, waitFor, withLab, type LabHost } from '../lab'

const N = Number(process.env.IPAM_BENCH_N ?? 5000)
const CONCURRENCY = 64

async function hammer(sock: string, method: string, pathOf: (i: number) => string): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY })
  let next = 0
  const one = (p: string) =>
    new Promise<void>((resolve, reject) => {
      const req = http.request({ socketPath: sock, method, path: p, agent }, (res) => {
        res.resume()
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`${method} ${p}: HTTP ${res.statusCode}`))))
      })
      req.on('error', reject)
      req.end()
    })
  const worker = async () => {
    while (next < N) await one(pathOf(next++))
  }
  const t0 = performance.now()
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
  const s = (performance.now() - t0) / 1000
  agent.destroy()
  return N / s
}

async function allocRate(dir: string): Promise<{ allocs: number; baseline: number; core: number }> {
  const name = '02:00:00:00:01:01' as PeerName
  const ipam = createIpam(
    { range: '10.32.0.0/12', init: `seed=${name}`, stateFile: path.join(dir, 'ipam.json') },
    { clock: systemClock(), rng: cryptoRng(), logger: nullLogger, host: soloGossipHost(name, 'bench') },
  )
  const router = new ApiRouter()
  for (const [m, p] of IPAM_ROUTES) router.route(m, p, (req) => ipam.handle(req))
  router.route('GET', '/version', () => ({ text: '0' }))
  const sock = path.join(dir, 'api.sock')
  const server = createApiServer(router, { unixPath: sock }, nullLogger)
  await ipam.start()
  await server.start()
  try {
    // Warm-up: connections, JIT, first write.
    await hammer(sock, 'GET', () => '/version')
    const baseline = await hammer(sock, 'GET', () => '/version')
    const allocs = await hammer(sock, 'POST', (i) => `/ip/bench-${i}`)
    // Everything answered is on disk (snapshot + journal).
    const stored = await fileStore(path.join(dir, 'ipam.json')).load()
    const dec = decodeState(stored.snapshot, { peerName: name, range: '10.32.0.0/12', where: dir })
    const full = dec.ok && dec.state ? applyJournal(dec.state, stored.journal, dir) : dec
    const held = full.ok && full.state ? Object.keys(full.state.leases).length : -1
    if (held !== N) throw new Error(`state on disk holds ${held} leases, want ${N}`)
    // The same allocator without HTTP: what the core and the group-committed state file sustain.
    let k = 0
    const t0 = performance.now()
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (k < N) await ipam.allocator.allocate(`core-${k++}`)
    }))
    const core = N / ((performance.now() - t0) / 1000)
    return { allocs, baseline, core }
  } finally {
    await server.stop()
    await ipam.stop()
  }
}

async function firstAlloc(dir: string): Promise<{ afterThird: number; fromStart: number }> {
  const t00 = performance.now()
  const logger = process.env.IPAM_BENCH_DEBUG
    ? createLogger({ write: (l) => process.stderr.write(`${(performance.now() - t00).toFixed(0)} ${l}`) }, { level: 'debug' })
    : nullLogger
  const deps = { clock: systemClock(), rng: cryptoRng(), logger }
  const ports = [0, 1, 2].map(() => 20000 + Math.floor(Math.random() * 20000))
  const names = [0, 1, 2].map((i) => `02:00:00:00:02:0${i + 1}` as PeerName)
  const meshes: Mesh[] = []
  const ipams: Array<ReturnType<typeof createIpam>> = []
  const t0 = performance.now()
  const start = async (i: number) => {
    const mesh = createMesh(
      { name: names[i], nickname: `b${i}`, port: ports[i], connLimit: 10, discovery: true, peers: ports.slice(0, i).map((p) => `127.0.0.1:${p}`), encryption: false },
      { ...deps, transport: (local) => createTcpTransport({ local, listenAddr: '127.0.0.1', listenPort: ports[i] }, deps) },
    )
    await mesh.start()
    const ipam = createIpam({ range: '10.32.0.0/12', init: 'consensus=3', stateFile: path.join(dir, `ipam-${i}.json`) }, { ...deps, host: mesh })
    await ipam.start()
    meshes.push(mesh)
    ipams.push(ipam)
  }
  try {
    await start(0)
    let answeredAt = 0
    const first = ipams[0].allocator.allocate('first').then((c) => { answeredAt = performance.now(); return c })
    await start(1)
    await new Promise((r) => setTimeout(r, 300))
    await start(2)
    // "Connected": the first peer can reach both others.
    while (!(meshes[0].view.isReachable(names[1]) && meshes[0].view.isReachable(names[2]))) await new Promise((r) => setTimeout(r, 2))
    const connectedAt = performance.now()
    logger.info('third peer connected')
    await first
    return { afterThird: Math.max(0, answeredAt - connectedAt) / 1000, fromStart: (answeredAt - t0) / 1000 }
  } finally {
    for (const i of ipams) await i.stop()
    for (const m of meshes) await m.stop()
  }
}

/**
 * The same on real daemons: `weave launch` in three lab hosts (consensus=3), then an allocation on
 * the first; undefined (with the reason logged) when the lab is unavailable or the daemon's IPAM
 * does not see the mesh.
 */
async function firstAllocLab(): Promise<{ afterThird: number; fromStart: number } | undefined> {
  const why = process.getuid?.() !== 0 ? 'not root' : labUnavailableReason({})
  if (why) {
    console.error(`ipam: lab unavailable (${why}); first allocation measured in-process only`)
    return undefined
  }
  return withLab({ hosts: 3 }, async (lab) => {
    const [h1, h2, h3] = lab.hosts as [LabHost, LabHost, LabHost]
    const init = ['--ipalloc-init', 'consensus=3']
    try {
      const t0 = performance.now()
      await h1.launchWeave([...init])
      await h2.launchWeave([...init, h1.underlayIp])
      await h3.launchWeave([...init, h1.underlayIp])
      const launched = performance.now()
      const known = async () => Number(((await h1.api('/report')).body as { IPAM?: { KnownPeers?: number } }).IPAM?.KnownPeers ?? 0)
      const first = h1.api('/ip/bench-first', { method: 'POST', timeoutMs: 40_000 })
      const meshed = await waitFor('3 peers', async () => (await known()) >= 3, 10_000, 5).then(() => performance.now(), () => undefined)
      const r = await first.catch((e: Error) => ({ status: 0, text: e.message }))
      const done = performance.now()
      if (meshed === undefined || r.status !== 200) {
        console.error(`ipam: lab daemons did not allocate (${r.status} ${r.text.trim()}; mesh ${meshed ? 'up' : 'not seen by IPAM'}); in-process only`)
        return undefined
      }
      void launched
      return { afterThird: Math.max(0, done - meshed) / 1000, fromStart: (done - t0) / 1000 }
    } finally {
      for (const h of [h1, h2, h3]) await h.weave(['stop'], { allowFail: true })
    }
  })
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ipam-bench-'))
  try {
    const rate = await allocRate(dir)
    console.error(`ipam: ${rate.allocs.toFixed(0)} allocations/s over HTTP (baseline trivial route ${rate.baseline.toFixed(0)} req/s); without HTTP ${rate.core.toFixed(0)}/s`)
    const inProc = await firstAlloc(dir)
    console.error(`ipam: in-process mesh: first allocation ${inProc.afterThird.toFixed(3)} s after the third peer connected (${inProc.fromStart.toFixed(3)} s from the first start)`)
    const labRun = await firstAllocLab().catch((err: Error) => {
      console.error(`ipam: lab run failed (${err.message.split('\n')[0]}); in-process only`)
      return undefined
    })
    if (labRun) console.error(`ipam: lab daemons: first allocation ${labRun.afterThird.toFixed(3)} s after IPAM saw the third peer (${labRun.fromStart.toFixed(3)} s from the first weave launch)`)
    const first = labRun ?? inProc
    console.log(JSON.stringify({
      bench: 'ipam',
      allocs_per_s: Math.round(rate.allocs),
      baseline_req_per_s: Math.round(rate.baseline),
      vs_baseline: Number((rate.allocs / rate.baseline).toFixed(3)),
      core_allocs_per_s: Math.round(rate.core),
      first_alloc_s: Number(first.afterThird.toFixed(3)),
      first_alloc_from_start_s: Number(first.fromStart.toFixed(3)),
      n: N,
      first_alloc_setup: labRun ? 'weave launch of 3 lab daemons' : 'in-process mesh over TCP on 127.0.0.1',
      first_alloc_in_process_s: Number(inProc.afterThird.toFixed(3)),
    }))
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().then(() => process.exit(0), (err) => {
  console.error(`ipam bench failed: ${(err as Error).stack ?? err}`)
  process.exit(1)
})
