/**
 * `npm run bench -- metrics [scrapes] [idleSeconds]`: what watching the network costs.
 *
 * - scrape: GET /metrics over real HTTP on a loopback port of this run, from the registry over a
 *   real mesh of 100 routers (test/sim's in-memory transport, discovery: a full mesh, 4,950
 *   connections; peer 0's status() is read per scrape), traffic counters for its 99 neighbours,
 *   and a real IPAM (createIpam, seeded alone) holding 1,000 leases. Baseline: GET /version on the
 *   same server, interleaved. scrape_ms_p50/p95 (target ≤ 20 ms); scrape_cpu_ms_*: the CPU time one
 *   scrape costs in-process (less sensitive to other load on the machine than wall time).
 * - idle page: a 3-host lab with real routers; headless Chromium in h1's namespace keeps h1's
 *   /ui open. h1's weaver CPU (utime+stime from /proc) over `idleSeconds` with the page open and
 *   idle, then as long with no page (baseline, same run). page_cpu_pct (target ≤ 0.1 % of a
 *   core) is the difference; router_cpu_pct_* are the totals.
 *
 * Last line: {"bench":"metrics","scrape_ms_p50":…,"scrape_ms_p95":…,…,"page_cpu_pct":…}
 */
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as path from 'node:path'
import { performance } from 'node:perf_hooks'
import { ApiRouter, createApiServer } from '../../router/api'
import { cryptoRng, systemClock } from '../../router/deps'
import { createWeaveRegistry } from '../../router/metrics'
import type { PeerName } from '../../router/mesh'
import { createIpam, memoryStore, soloGossipHost } from '../../ipam'
import { simulatedSources } from '../observe-fixtures'
import { createMeshSim } from '../sim/mesh-harness'
import { createLab, delay, labUnavailableReason, REPO_ROOT, waitFor, type LabHost } from '../lab'
import { chromiumUnavailableReason, launchChromium } from '../browser'

const scrapes = Number(process.argv[2] ?? 300)
const idleSeconds = Number(process.argv[3] ?? 30)
const PEERS = 100
const LEASES = 1000
const quiet = { debug() {}, info() {}, warn() {}, error() {}, child() { return quiet } }

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}

function get(port: number, p: string): Promise<{ ms: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    http.get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
      let bytes = 0
      res.on('data', (d: Buffer) => { bytes += d.length })
      res.on('end', () => resolve({ ms: performance.now() - t0, bytes }))
    }).on('error', reject)
  })
}

/** 100 routers over the in-memory transport, converged to a full mesh; returns peer 0's mesh. */
async function realMesh() {
  const sim = createMeshSim({ seed: 19 })
  await sim.addPeer([])
  for (let i = 1; i < PEERS; i++) await sim.addPeer([sim.peers[sim.rng.int(i)].addr])
  const took = await sim.runUntil(() => sim.converged() && sim.peers.every((p) => p.mesh.connections().size === PEERS - 1), 120_000, 100)
  if (took < 0) throw new Error('the 100-router mesh did not converge')
  return { mesh: sim.peers[0].mesh, stop: () => sim.stop() }
}

async function benchScrape(): Promise<Record<string, number>> {
  const real = await realMesh()
  const st0 = real.mesh.status()
  const sim = simulatedSources(PEERS, 0)
  const traffic = st0.connections.map((c, i) => ({ ...sim.traffic!()[i % (PEERS - 1)], peer: c.peer! }))
  const self = st0.name as PeerName
  const ipam = createIpam({ range: '10.32.0.0/12', init: `seed=${self}` },
    { clock: systemClock(), rng: cryptoRng(), logger: quiet, host: soloGossipHost(self, 'host0'), store: memoryStore() })
  await ipam.start()
  for (let i = 0; i < LEASES; i++) await ipam.allocator.allocate(`container-${i}`)
  const metrics = createWeaveRegistry({ ...sim, mesh: () => ({ connections: real.mesh.connectionStatus(), stats: real.mesh.stats }), traffic: () => traffic, ipam: () => ipam.facts() })
  const router = new ApiRouter()
  router.route('GET', '/metrics', async () => ({ text: await metrics.scrape(), headers: { 'content-type': metrics.contentType } }))
  router.route('GET', '/version', () => ({ text: '0.1.0' }))
  const server = createApiServer(router, { tcp: { host: '127.0.0.1', port: 0 } }, quiet)
  await server.start()
  try {
    const port = server.tcpPort()!
    for (let i = 0; i < 30; i++) { await get(port, '/metrics'); await get(port, '/version') }
    const s: number[] = [], b: number[] = []
    let bytes = 0
    for (let i = 0; i < scrapes; i++) {
      const r = await get(port, '/metrics')
      s.push(r.ms)
      bytes = r.bytes
      b.push((await get(port, '/version')).ms)
    }
    // CPU time of one scrape in this process (registry + sources, no HTTP): what the router
    // pays, nearly independent of how many other processes share the machine's two cores
    const cpu: number[] = []
    for (let i = 0; i < scrapes; i++) {
      const c0 = process.cpuUsage()
      await metrics.scrape()
      const c = process.cpuUsage(c0)
      cpu.push((c.user + c.system) / 1000)
    }
    const text = await metrics.scrape()
    const series = text.split('\n').filter((l) => l && !l.startsWith('#')).length
    if (!/weave_ips\{state="local-used"\} 1000\b/.test(text)) throw new Error('the scrape does not show the 1,000 leases')
    console.log(`scrape: p50 ${pct(s, 50).toFixed(2)} ms, p95 ${pct(s, 95).toFixed(2)} ms (${bytes} bytes, ${series} series); GET /version p50 ${pct(b, 50).toFixed(2)} ms; CPU per scrape p50 ${pct(cpu, 50).toFixed(2)} ms`)
    return {
      scrape_ms_p50: round(pct(s, 50)), scrape_ms_p95: round(pct(s, 95)), scrape_baseline_ms_p50: round(pct(b, 50)),
      scrape_cpu_ms_p50: round(pct(cpu, 50)), scrape_cpu_ms_p95: round(pct(cpu, 95)),
      scrape_ratio: round(pct(s, 50) / pct(b, 50)), scrape_bytes: bytes, scrape_series: series,
    }
  } finally {
    await server.stop()
    await ipam.stop()
    await real.stop()
  }
}

/** utime + stime of `pid` in seconds. */
function cpuSeconds(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100 // CLK_TCK is 100 on Linux
}

async function cpuOver(pid: number, seconds: number): Promise<number> {
  const c0 = cpuSeconds(pid), t0 = performance.now()
  await delay(seconds * 1000)
  return (100 * (cpuSeconds(pid) - c0)) / ((performance.now() - t0) / 1000)
}

async function benchIdlePage(): Promise<Record<string, number | string | null>> {
  const why = labUnavailableReason({}) ?? chromiumUnavailableReason()
    ?? (fs.existsSync(path.join(REPO_ROOT, 'dist', 'cli', 'main.js')) ? undefined : 'weave is not built')
  if (why) return { page_cpu_pct: null, idle_page_skipped: why }
  const lab = await createLab({ hosts: 3 })
  try {
    const [h1, h2, h3] = lab.hosts
    for (const [h, peers] of [[h1, []], [h2, [h1.underlayIp]], [h3, [h1.underlayIp]]] as Array<[LabHost, string[]]>) {
      const r = await h.launchWeave(['--no-proxy', '--ipalloc-init', 'consensus=3', ...peers])
      if (r.code !== 0) throw new Error(`${h.name}: launch failed: ${r.stderr}`)
    }
    const pid = Number(fs.readFileSync(path.join(h1.weaveRunDir, 'weaver.pid'), 'utf8'))
    const chrome = await launchChromium({ netns: h1.ns })
    let withPage: number
    try {
      const page = await chrome.context.newPage()
      await page.goto('http://127.0.0.1:6784/ui')
      await page.waitForFunction(() => document.querySelectorAll('.edge[data-state="established"]').length === 3, undefined, { timeout: 60_000 })
      await delay(3000) // past the start-up gossip
      withPage = await cpuOver(pid, idleSeconds)
    } finally {
      await chrome.close()
    }
    await waitFor('page gone', async () => true, 1000)
    await delay(2000)
    const without = await cpuOver(pid, idleSeconds)
    console.log(`h1 weaver CPU: ${withPage.toFixed(3)} % of a core with /ui open and idle, ${without.toFixed(3)} % without (${idleSeconds} s each)`)
    for (const h of lab.hosts) await h.weave(['stop'], { allowFail: true })
    return {
      router_cpu_pct_page_idle: round(withPage, 3), router_cpu_pct_no_page: round(without, 3),
      page_cpu_pct: round(Math.max(0, withPage - without), 3), idle_seconds: idleSeconds,
    }
  } finally {
    await lab.teardown()
  }
}

function round(x: number, digits = 2): number {
  return Number(x.toFixed(digits))
}

async function main(): Promise<void> {
  const scrape = await benchScrape()
  const idle = await benchIdlePage()
  console.log(JSON.stringify({
    bench: 'metrics', peers: PEERS, leases: LEASES, ...scrape, ...idle,
    note: 'scrape: real HTTP on loopback, a real 100-router in-memory mesh (full mesh) + real IPAM with 1,000 leases; CPU: h1 of a 3-host lab, Chromium in its namespace; shared 2-core machine, figures noisy',
  }))
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
