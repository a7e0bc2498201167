/**
 * `npm run bench -- mesh-procs [N...]`: the router as processes, as a user starts them.
 * Real daemons (`weave launch`) in lab hosts, sleeve only (no Docker, no OVS), all in this run:
 *  - connect_s: a second daemon spawned (`weave launch H1`) → the connection established on both;
 *  - peer_gone_ms: that second daemon SIGKILLed → gone from the first one's peer list;
 *  - rss_idle_mib / rss_idle_password_mib / idle_cpu_pct: a daemon idle in a two-peer mesh for
 *    IDLE_S seconds (without and with --password), RSS from /proc and CPU from its utime+stime;
 *  - rss_after_traffic_mib: after 10 s of iperf3 through sleeve between two attached namespaces;
 *  - for each N (default 10 20 50): N daemons started together, each naming one or two earlier
 *    ones; `mesh_N_s` until every daemon's report lists N peers, `mesh_N_cpu_s` the CPU seconds of
 *    all daemons until then, `mesh_N_rss_mib` their mean RSS.
 * Baseline in the same run: `node_rss_mib` and `node_start_s`, a bare `node -e` process that
 * waits (what Node itself costs before any of our code).
 * Last line: one JSON object.
 */
import { spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { labUnavailableReason, waitFor, withLab, type Lab, type LabHost } from '../lab'
import { ExtraNamespaces, weaveAttach } from '../lab/namespaces'

const ARGS = process.argv.slice(2)
const SIZES = ARGS.filter((a) => /^\d+$/.test(a)).map(Number)
const NS = SIZES.length ? SIZES : [10, 20, 50]
const IDLE_S = Number(process.env.MESH_PROCS_IDLE_S ?? 30)
const CLK_TCK = 100 // USER_HZ on Linux
const RANGE = ['--ipalloc-range', '10.32.0.0/12', '--ipalloc-init', 'consensus=2']

function pidOf(h: LabHost): number {
  return Number(fs.readFileSync(path.join(h.weaveEnv().WEAVE_RUN_DIR, 'weaver.pid'), 'utf8').trim())
}

function rssMib(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) / 1024 : NaN
}

function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ') // after the command name, which may hold spaces
  return (Number(f[11]) + Number(f[12])) / CLK_TCK // utime, stime (fields 14, 15)
}

async function peersListed(h: LabHost): Promise<number> {
  const r = await h.api('/report').catch(() => undefined)
  const peers = (r?.body as { Router?: { Peers?: unknown[] } } | undefined)?.Router?.Peers
  return Array.isArray(peers) ? peers.length : 0
}

async function established(h: LabHost, peerIp: string): Promise<boolean> {
  const r = await h.api('/report').catch(() => undefined)
  const conns = (r?.body as { Router?: { Connections?: Array<{ Address: string; State: string }> } } | undefined)?.Router?.Connections ?? []
  return conns.some((c) => (c.State === 'established' || c.State === 'pending') && c.Address.startsWith(`${peerIp}:`))
}

/** A bare Node process that waits: what Node costs before our code. */
async function nodeBaseline(): Promise<{ rss: number; startS: number }> {
  const t0 = performance.now()
  const r = spawnSync(process.execPath, ['-e', '0'])
  const startS = (performance.now() - t0) / 1000
  if (r.status !== 0) throw new Error('node -e 0 failed')
  const p = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' })
  try {
    await new Promise((res) => setTimeout(res, 1000))
    return { rss: rssMib(p.pid!), startS }
  } finally {
    p.kill('SIGKILL')
  }
}

async function twoPeers(lab: Lab, extra: string[]): Promise<{ connectS: number; rssIdle: number; idleCpuPct: number; h1: LabHost; h2: LabHost }> {
  const [h1, h2] = lab.hosts
  const r1 = await h1.launchWeave([...RANGE, ...extra])
  if (r1.code !== 0) throw new Error(`h1 launch: ${r1.stderr}`)
  const t0 = performance.now()
  const launching = h2.launchWeave([...RANGE, ...extra, h1.underlayIp])
  await waitFor('connection established on both', async () => (await established(h1, h2.underlayIp)) && (await established(h2, h1.underlayIp)), 60_000, 5)
  const connectS = (performance.now() - t0) / 1000
  const r2 = await launching
  if (r2.code !== 0) throw new Error(`h2 launch: ${r2.stderr}`)
  await new Promise((res) => setTimeout(res, 3000)) // past start-up work (consensus, first gossip)
  const pid = pidOf(h1)
  const c0 = cpuSeconds(pid)
  await new Promise((res) => setTimeout(res, IDLE_S * 1000))
  const idleCpuPct = ((cpuSeconds(pid) - c0) / IDLE_S) * 100
  return { connectS, rssIdle: rssMib(pid), idleCpuPct, h1, h2 }
}

async function stopAll(lab: Lab): Promise<void> {
  await Promise.all(lab.hosts.map((h) => h.weave(['stop'], { allowFail: true })))
  await Promise.all(lab.hosts.map((h) => h.weave(['reset'], { allowFail: true })))
}

async function pairFigures(out: Record<string, number>): Promise<void> {
  await withLab({ hosts: 2 }, async (lab) => {
    const plain = await twoPeers(lab, [])
    out.connect_s = plain.connectS
    out.rss_idle_mib = plain.rssIdle
    out.idle_cpu_pct = plain.idleCpuPct
    // traffic through sleeve, then RSS of the busier end
    const extra = new ExtraNamespaces()
    try {
      const [n1, n2] = [await extra.add(`${lab.prefix}-mp1`), await extra.add(`${lab.prefix}-mp2`)]
      const ip1 = await weaveAttach(plain.h1, n1)
      await weaveAttach(plain.h2, n2)
      const srv = spawn('ip', ['netns', 'exec', n1, 'iperf3', '-s', '-1', '-p', '5201'], { stdio: 'ignore' })
      await new Promise((res) => setTimeout(res, 500))
      spawnSync('ip', ['netns', 'exec', n2, 'iperf3', '-c', ip1, '-p', '5201', '-t', '10'], { stdio: 'ignore', timeout: 60_000 })
      srv.kill('SIGKILL')
      out.rss_after_traffic_mib = Math.max(rssMib(pidOf(plain.h1)), rssMib(pidOf(plain.h2)))
    } finally {
      await extra.removeAll()
    }
    // SIGKILL the second peer: until the first no longer lists it
    const before = await peersListed(plain.h1)
    const t0 = performance.now()
    process.kill(pidOf(plain.h2), 'SIGKILL')
    await waitFor('killed peer gone from the peer list', async () => (await peersListed(plain.h1)) < before, 30_000, 2)
    out.peer_gone_ms = performance.now() - t0
    await stopAll(lab)
    const pw = await twoPeers(lab, ['--password', 'bench-secret'])
    out.rss_idle_password_mib = pw.rssIdle
    await stopAll(lab)
  })
}

async function meshOf(n: number, out: Record<string, number>): Promise<void> {
  await withLab({ hosts: n }, async (lab) => {
    const hs = lab.hosts
    const t0 = performance.now()
    // Every daemon at once, each naming the first and the one before it (one or two peers).
    const launches = hs.map((h, i) => h.launchWeave([...RANGE.slice(0, 2), '--ipalloc-init', `consensus=${n}`,
      ...new Set(i === 0 ? [] : [hs[0].underlayIp, hs[i - 1].underlayIp])]))
    await waitFor(`all ${n} daemons list ${n} peers`, async () => {
      const counts = await Promise.all(hs.map((h) => peersListed(h)))
      return counts.every((c) => c === n)
    }, 300_000, 50)
    out[`mesh_${n}_s`] = (performance.now() - t0) / 1000
    const pids = hs.map(pidOf)
    out[`mesh_${n}_cpu_s`] = pids.reduce((a, p) => a + cpuSeconds(p), 0)
    out[`mesh_${n}_rss_mib`] = pids.reduce((a, p) => a + rssMib(p), 0) / n
    const rs = await Promise.all(launches)
    const bad = rs.find((r) => r.code !== 0)
    if (bad) throw new Error(`a launch failed: ${bad.stderr}`)
    await stopAll(lab)
  })
}

async function main(): Promise<void> {
  const why = labUnavailableReason()
  if (why) throw new Error(`mesh-procs needs the lab: ${why}`)
  const out: Record<string, number> = {}
  const base = await nodeBaseline()
  out.node_rss_mib = base.rss
  out.node_start_s = base.startS
  await pairFigures(out)
  for (const n of NS) await meshOf(n, out)
  const rounded = Object.fromEntries(Object.entries(out).map(([k, v]) => [k, Math.round(v * 1000) / 1000]))
  console.log(JSON.stringify(rounded))
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message)
  process.exit(1)
})
