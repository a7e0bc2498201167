/**
 * `npm run bench -- soak` (SOAK_S seconds of churn, default 1200): three lab hosts with dockerd and
 * a weave daemon each, under continuous change for the whole run:
 *
 * - containers started and removed continuously on every host through the weave proxy (about
 *   three live per host); while a host's router is down its removals go straight to dockerd (the
 *   router must catch up on what it missed);
 * - faults in turn, every SOAK_S/9 seconds (20 s to 150 s): h2's router restarted (`weave stop`,
 *   launch), h3's router SIGKILLed and launched again, the h1 ⇄ h3 link cut for a while and healed.
 *   h1's router is never restarted: it is the one whose memory is watched over the whole run;
 * - every 5 s: each router's RSS, and every address in use (`/ps` of every host): two containers
 *   holding one address at the same time is a duplicate.
 *
 * At the end: all routers up and healed, every live container pings every other (over ethwe);
 * then every container is removed through the proxy and nothing of them may remain: no host-side
 * veth (`vethwepl*`), no iptables rule naming one of their addresses, no IPAM lease.
 *
 * Asserts (exit 1): no duplicate address ever, every live container reachable at the end.
 * Reports against targets (0 duplicates, 0 leftovers, 0 leaked leases, RSS growth ≤ 5 MiB):
 * rss_growth_mib per router = mean RSS over the last window − over the first window of its
 * longest-lived process (windows of 5 min, a quarter of that life when shorter; h1 lives the whole run).
 *
 * Last line: {"bench":"soak","soak_s":…,"duplicates":0,"unreachable":0,"rss_growth_mib":{…},
 * "leftover_veths":0,"leftover_rules":0,"leaked_leases":0,…}
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { createLab, labUnavailableReason, waitFor, delay, type Lab, type LabHost } from '../lab'

const SOAK_S = Number(process.env.SOAK_S ?? 1200)
const RANGE = ['--ipalloc-range', '10.32.0.0/12', '--ipalloc-default-subnet', '10.32.0.0/16', '--ipalloc-init', 'consensus=3']
const LIVE_PER_HOST = 3
const SAMPLE_MS = 5_000
const WINDOW_S = 300

interface RssSample { t: number; pid: number; kib: number }
interface Counters { started: number; removed: number; removedDirect: number; runFailed: number; restarts: number; kills: number; cuts: number }

const proxySock = (h: LabHost) => `unix://${path.join(h.weaveEnv().WEAVE_RUN_DIR, 'weave.sock')}`
const peersOf = (lab: Lab, h: LabHost) => (h === lab.hosts[0] ? [] : [lab.hosts[0].underlayIp])

async function routerUp(h: LabHost): Promise<boolean> {
  return h.api('/report', { timeoutMs: 3_000 }).then((r) => r.status === 200, () => false)
}

async function launch(lab: Lab, h: LabHost): Promise<void> {
  // --no-restart: this bench kills and relaunches routers itself (no supervisor restarting them).
  await h.launchWeaveWait([...RANGE, '--no-restart', ...peersOf(lab, h)])
}

async function weaverPid(h: LabHost): Promise<number | undefined> {
  const r = await h.api('/report', { timeoutMs: 3_000 }).catch(() => undefined)
  return (r?.body as { Daemon?: { Pid?: number } } | undefined)?.Daemon?.Pid
}

function rssKib(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : undefined
  } catch { return undefined }
}

/** Containers started through this host's proxy and still live, oldest first. */
class Churn {
  readonly live: string[] = []
  private n = 0
  constructor(readonly h: LabHost, readonly c: Counters, readonly down: () => boolean) {}

  async step(): Promise<void> {
    if (this.live.length < LIVE_PER_HOST) {
      if (this.down()) return
      const name = `soak-${this.h.name}-${++this.n}`
      const r = await this.h.exec(['docker', '-H', proxySock(this.h), 'run', '-d', '--name', name, 'busybox', 'sleep', '3600'], { allowFail: true, timeoutMs: 60_000 })
      if (r.code === 0) { this.live.push(name); this.c.started++ }
      else {
        this.c.runFailed++
        await this.h.docker(['rm', '-f', name], { allowFail: true }) // a half-made one
      }
      return
    }
    const name = this.live.shift()!
    const viaProxy = !this.down() && (await this.h.exec(['docker', '-H', proxySock(this.h), 'rm', '-f', name], { allowFail: true, timeoutMs: 60_000 })).code === 0
    if (!viaProxy) {
      await this.h.docker(['rm', '-f', name], { allowFail: true })
      this.c.removedDirect++
    }
    this.c.removed++
  }
}

/** Addresses in use on every answering host right now: ip → container ids. */
async function addressesInUse(lab: Lab): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>()
  await Promise.all(lab.hosts.map(async (h) => {
    const r = await h.api('/ps', { timeoutMs: 5_000 }).catch(() => undefined)
    if (!r || r.status !== 200) return
    for (const line of r.text.split('\n')) {
      const [id, , ...cidrs] = line.trim().split(/\s+/)
      if (!id) continue
      for (const c of cidrs) {
        const ip = c.split('/')[0]
        const s = out.get(ip) ?? new Set<string>()
        s.add(`${h.name}/${id}`)
        out.set(ip, s)
      }
    }
  }))
  return out
}

/** Mean RSS (MiB) of the last window minus the first, over the longest-lived pid of one router; `trace`: means of five equal slices of its life (where the growth happens). */
function rssGrowth(samples: RssSample[], windowS: number): { growth: number | null; spanS: number; trace: number[] } {
  const byPid = new Map<number, RssSample[]>()
  for (const s of samples) byPid.set(s.pid, [...(byPid.get(s.pid) ?? []), s])
  let best: RssSample[] = []
  for (const xs of byPid.values()) if (xs.length && (!best.length || xs[xs.length - 1].t - xs[0].t > best[best.length - 1].t - best[0].t)) best = xs
  if (best.length < 5) return { growth: null, spanS: 0, trace: [] }
  const t0 = best[0].t, t1 = best[best.length - 1].t
  const w = Math.min(windowS * 1000, (t1 - t0) / 4)
  const mean = (xs: RssSample[]) => xs.reduce((a, s) => a + s.kib, 0) / Math.max(1, xs.length) / 1024
  const r2 = (x: number) => Math.round(x * 100) / 100
  const first = best.filter((s) => s.t <= t0 + w), last = best.filter((s) => s.t >= t1 - w)
  const slice = (t1 - t0) / 5
  const trace = [0, 1, 2, 3, 4].map((k) => r2(mean(best.filter((s) => s.t >= t0 + k * slice && s.t <= t0 + (k + 1) * slice))))
  return { growth: r2(mean(last) - mean(first)), spanS: Math.round((t1 - t0) / 1000), trace }
}

async function ethweIp(h: LabHost, name: string): Promise<string | undefined> {
  const r = await h.docker(['exec', name, 'ip', '-4', '-o', 'addr', 'show', 'ethwe'], { allowFail: true })
  return /inet (\d+\.\d+\.\d+\.\d+)/.exec(r.stdout)?.[1]
}

async function main(): Promise<void> {
  const why = labUnavailableReason({ docker: true })
  if (why) {
    console.log(JSON.stringify({ bench: 'soak', skipped: why }))
    return
  }
  const lab = await createLab({ hosts: 3, docker: true })
  const [h1, h2, h3] = lab.hosts
  const c: Counters = { started: 0, removed: 0, removedDirect: 0, runFailed: 0, restarts: 0, kills: 0, cuts: 0 }
  const rss = new Map<LabHost, RssSample[]>(lab.hosts.map((h) => [h, []]))
  const pids = new Map<LabHost, number | undefined>()
  const downs = new Set<LabHost>()
  const duplicates: string[] = []
  const everUsed = new Set<string>()
  try {
    for (const h of lab.hosts) await launch(lab, h)
    await waitFor('all routers connected', async () => {
      for (const h of lab.hosts) if (((await h.api('/status/overlay')).text.match(/ established /g) ?? []).length < 2) return false
      return true
    }, 120_000, 500)
    for (const h of lab.hosts) pids.set(h, await weaverPid(h))
    const churns = lab.hosts.map((h) => new Churn(h, c, () => downs.has(h)))
    const start = Date.now()
    const end = start + SOAK_S * 1000
    const running = () => Date.now() < end
    console.log(`soak: ${SOAK_S} s of churn on ${lab.hosts.length} hosts (lab ${lab.prefix})`)

    const churnLoop = async (ch: Churn) => { while (running()) { await ch.step(); await delay(500) } }
    const sampleLoop = async () => {
      while (running()) {
        const t = Date.now()
        for (const h of lab.hosts) {
          const pid = pids.get(h)
          const kib = pid === undefined ? undefined : rssKib(pid)
          if (pid !== undefined && kib !== undefined) rss.get(h)!.push({ t, pid, kib })
        }
        const inUse = await addressesInUse(lab)
        for (const [ip, ids] of inUse) {
          everUsed.add(ip)
          if (ids.size < 2) continue
          // confirm: both still hold it a moment later (not a release racing our sample)
          const again = (await addressesInUse(lab)).get(ip)
          const both = [...ids].filter((id) => again?.has(id))
          if (both.length > 1) {
            duplicates.push(`${ip}: ${both.join(' ')}`)
            console.log(`DUPLICATE ${ip}: ${both.join(' ')}`)
          }
        }
        await delay(Math.max(0, SAMPLE_MS - (Date.now() - t)))
      }
    }
    const eventEveryMs = Math.min(150, Math.max(20, SOAK_S / 9)) * 1000
    const faultLoop = async () => {
      for (let i = 0; running(); i++) {
        await delay(Math.min(eventEveryMs, Math.max(0, end - Date.now())))
        if (!running()) break
        const kind = i % 3
        const at = `${Math.round((Date.now() - start) / 1000)} s`
        if (kind === 0) {
          console.log(`${at}: restart h2's router`)
          downs.add(h2)
          await h2.weave(['stop'], { allowFail: true })
          await launch(lab, h2)
          downs.delete(h2)
          pids.set(h2, await weaverPid(h2))
          c.restarts++
        } else if (kind === 1) {
          console.log(`${at}: SIGKILL h3's router`)
          const pid = pids.get(h3)
          downs.add(h3)
          if (pid) { try { process.kill(pid, 'SIGKILL') } catch { /* gone already */ } }
          await delay(2_000)
          await launch(lab, h3)
          downs.delete(h3)
          pids.set(h3, await weaverPid(h3))
          c.kills++
        } else {
          const cutMs = Math.min(30_000, eventEveryMs / 3)
          console.log(`${at}: cut h1 ⇄ h3 for ${cutMs / 1000} s`)
          await lab.partition([h1], [h3])
          await delay(cutMs)
          await lab.heal()
          c.cuts++
        }
      }
    }
    await Promise.all([...churns.map(churnLoop), sampleLoop(), faultLoop()])
    console.log(`churn over: ${c.started} started, ${c.removed} removed (${c.removedDirect} while the router was down), ${c.runFailed} failed runs`)

    // ---- the end state: everyone up, every live container reaches every other ----
    await lab.heal()
    for (const h of lab.hosts) if (!await routerUp(h)) await launch(lab, h)
    await waitFor('all routers connected again', async () => {
      for (const h of lab.hosts) if (((await h.api('/status/overlay')).text.match(/ established /g) ?? []).length < 2) return false
      return true
    }, 120_000, 500).catch((err) => console.log(`warning: ${(err as Error).message}`))
    const live: Array<{ h: LabHost; name: string; ip: string | undefined }> = []
    for (const ch of churns) for (const name of ch.live) live.push({ h: ch.h, name, ip: await ethweIp(ch.h, name) })
    let unreachable = 0
    const noAddress = live.filter((x) => !x.ip).length
    for (const a of live) {
      for (const b of live) {
        if (a === b || !a.ip || !b.ip) continue
        let ok = false
        for (let i = 0; i < 5 && !ok; i++) ok = (await a.h.docker(['exec', a.name, 'ping', '-c', '1', '-W', '2', b.ip], { allowFail: true })).code === 0
        if (!ok) { unreachable++; console.log(`unreachable: ${a.h.name}/${a.name} → ${b.h.name}/${b.name} ${b.ip}`) }
      }
    }
    unreachable += noAddress
    const finalIps = new Set(live.map((x) => x.ip).filter(Boolean))
    if (finalIps.size !== live.filter((x) => x.ip).length) duplicates.push(`at the end: ${live.map((x) => `${x.name}=${x.ip}`).join(' ')}`)

    // ---- remove everything through the proxy: nothing of the containers may remain ----
    for (const ch of churns) {
      for (const name of ch.live.splice(0)) await ch.h.exec(['docker', '-H', proxySock(ch.h), 'rm', '-f', name], { allowFail: true, timeoutMs: 60_000 })
    }
    const leftovers = async () => {
      let veths = 0, rules = 0, leases = 0
      for (const h of lab.hosts) {
        veths += (await h.exec(['ip', '-o', 'link', 'show'])).stdout.split('\n').filter((l) => /: vethwepl/.test(l)).length
        const ipt = (await h.exec(['iptables-save'], { allowFail: true })).stdout
        rules += ipt.split('\n').filter((l) => l.startsWith('-A') && ([...everUsed].some((ip) => l.includes(`${ip}/32`) || l.includes(` ${ip} `)) || /vethwepl/.test(l))).length
        const owned = ((await h.api('/ip')).body as { owned?: Array<{ containerid: string }> }).owned ?? []
        leases += owned.length
      }
      return { veths, rules, leases }
    }
    let left = await leftovers()
    // releases after a removal are immediate, after a die within the proxy's grace (30 s)
    for (let i = 0; i < 45 && (left.veths || left.rules || left.leases); i++) { await delay(1_000); left = await leftovers() }

    const growth = Object.fromEntries(lab.hosts.map((h) => [h.name, rssGrowth(rss.get(h)!, WINDOW_S)]))
    const result = {
      bench: 'soak',
      soak_s: SOAK_S,
      duplicates: duplicates.length,
      unreachable,
      live_containers_at_end: live.length,
      rss_growth_mib: Object.fromEntries(Object.entries(growth).map(([k, v]) => [k, v.growth])),
      rss_span_s: Object.fromEntries(Object.entries(growth).map(([k, v]) => [k, v.spanS])),
      rss_trace_mib: Object.fromEntries(Object.entries(growth).map(([k, v]) => [k, v.trace])),
      rss_window_s: Math.round(Math.min(WINDOW_S, SOAK_S / 4)),
      leftover_veths: left.veths,
      leftover_rules: left.rules,
      leaked_leases: left.leases,
      containers_started: c.started,
      containers_removed: c.removed,
      removed_while_router_down: c.removedDirect,
      failed_runs: c.runFailed,
      restarts: c.restarts,
      kills: c.kills,
      link_cuts: c.cuts,
      targets_met: duplicates.length === 0 && left.veths === 0 && left.rules === 0 && left.leases === 0
        && Object.values(growth).every((g) => g.growth === null || g.growth <= 5),
      load1: Math.round(os.loadavg()[0] * 10) / 10,
      note: 'h1 never restarts (its RSS spans the run); h2 restarted, h3 SIGKILLed in turn, h1⇄h3 cut and healed; shared 2-core machine',
    }
    if (duplicates.length) console.log(`duplicates:\n${duplicates.join('\n')}`)
    console.log(JSON.stringify(result))
    if (duplicates.length || unreachable) process.exitCode = 1
  } finally {
    for (const h of lab.hosts) await h.weave(['stop'], { allowFail: true })
    await lab.teardown()
  }
}

main().catch((err) => { console.error(err); process.exit(1) })
