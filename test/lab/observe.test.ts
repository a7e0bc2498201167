/**
 * Seeing a real 3-host mesh (lab hosts, real weaver daemons, sleeve between them):
 * - Prometheus (Debian's) in h1 scrapes all three routers on --metrics-addr 0.0.0.0:6782 over the
 *   lab underlay; its /api/v1/query gives 2 established connections per router, and per-peer
 *   byte counters that grew by exactly the pings the test sent h1 → h2 (and not towards h3).
 * - Headless Chromium inside h1's namespace opens h1's /ui (127.0.0.1:6784 there): 3 nodes and
 *   3 established edges, the same `weave status peers` / `connections` text as the API; after
 *   h3's router is killed its edges turn within 5 s. Screenshots go to test-artifacts/.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as path from 'node:path'
import type { ChildProcess } from 'node:child_process'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { createLab, delay, labUnavailableReason, REPO_ROOT, waitFor, type Lab, type LabHost } from '../lab'
import { ExtraNamespaces, pingFromNamespace, weaveAttach } from './namespaces'
import { ARTIFACT_DIR, chromiumUnavailableReason, launchChromium } from '../browser'
import { skipFile } from '../skip'

const RANGE = ['--ipalloc-range', '10.32.0.0/12', '--ipalloc-default-subnet', '10.32.0.0/24', '--ipalloc-init', 'consensus=3']
const PINGS = 20
const PING_PAYLOAD = 1000
/** An ICMP echo of PING_PAYLOAD bytes as an Ethernet frame: + ICMP 8, IPv4 20, Ethernet 14. */
const FRAME_BYTES = PING_PAYLOAD + 8 + 20 + 14
/** Room for what else crosses in the same seconds (ARP, IPv6 neighbour discovery). */
const SLACK_BYTES = 1500

let lab: Lab
const names = new Map<LabHost, string>()
let prom: ChildProcess | undefined
const extraNs = new ExtraNamespaces()

async function runIn(ns: string, argv: string[]): Promise<{ stdout: string }> {
  return promisify(execFile)('ip', ['netns', 'exec', ns, ...argv], { timeout: 30_000 }).catch((err) => ({ stdout: `${err.stdout ?? ''}${err.message}` }))
}

function reasonToSkip(): string | undefined {
  if (!fs.existsSync(path.join(REPO_ROOT, 'dist', 'cli', 'main.js'))) return 'weave is not built (dist/cli/main.js)'
  if (!fs.existsSync('/usr/bin/prometheus')) return 'no /usr/bin/prometheus (Debian package prometheus)'
  return labUnavailableReason({}) ?? chromiumUnavailableReason()
}

async function launchAll(): Promise<void> {
  const [h1, h2, h3] = lab.hosts
  for (const [h, peers] of [[h1, []], [h2, [h1.underlayIp]], [h3, [h1.underlayIp]]] as Array<[LabHost, string[]]>) {
    const r = await h.launchWeave(['--no-proxy', '--metrics-addr', '0.0.0.0:6782', ...RANGE, ...peers])
    if (r.code !== 0) throw new Error(`${h.name}: launch failed: ${r.stderr}\n${h.weaverLog()}`)
    names.set(h, ((await h.api('/report')).body as { Router: { Name: string } }).Router.Name)
  }
  await waitFor('sleeve established on every pair', async () => {
    for (const h of lab.hosts) {
      const s = await h.api('/status/overlay')
      if ((s.text.match(/ established sleeve/g) ?? []).length < 2) return false
    }
    return true
  }, 60_000, 250)
}

/** One instant query against the Prometheus in h1. */
async function query(h1: LabHost, q: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> {
  const r = await h1.exec(['curl', '-sS', '--max-time', '5', '--get', '--data-urlencode', `query=${q}`, 'http://127.0.0.1:9090/api/v1/query'])
  const j = JSON.parse(r.stdout) as { status: string; data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } }
  if (j.status !== 'success') throw new Error(`prometheus: ${r.stdout}`)
  return j.data.result
}

async function one(h1: LabHost, q: string): Promise<number> {
  const r = await query(h1, q)
  if (r.length !== 1) throw new Error(`${q}: ${r.length} series`)
  return Number(r[0].value[1])
}

function startPrometheus(h1: LabHost): ChildProcess {
  const dir = path.join(lab.dir, 'prometheus')
  fs.mkdirSync(path.join(dir, 'data'), { recursive: true })
  const targets = lab.hosts.map((h) => `'${h.underlayIp}:6782'`).join(', ')
  fs.writeFileSync(path.join(dir, 'prometheus.yml'),
    `global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: weave\n    static_configs:\n      - targets: [${targets}]\n`)
  return h1.spawn(['prometheus', `--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`,
    '--web.listen-address=127.0.0.1:9090', '--log.level=warn'], { stdio: ['ignore', 'ignore', 'pipe'] })
}

const bytesQ = (dir: 'tx' | 'rx', h: LabHost, peer: LabHost) =>
  `weave_peer_${dir}_bytes_total{instance="${h.underlayIp}:6782",peer="${names.get(peer)}",datapath="sleeve"}`

const skip = reasonToSkip()
if (skip) skipFile('metrics and topology page on a 3-host lab', skip)
else {
  test.before(async () => {
    lab = await createLab({ hosts: 3 })
    await launchAll()
  })
  test.after(async () => {
    if (prom?.pid) { try { process.kill(prom.pid, 'SIGTERM') } catch { /* gone */ } }
    for (const h of lab?.hosts ?? []) await h.weave(['stop'], { allowFail: true })
    await extraNs.removeAll()
    await lab?.teardown()
  })

  test('Prometheus scrapes three routers: connection counts and per-peer bytes match the traffic sent', async () => {
    const [h1, h2, h3] = lab.hosts
    try {
      prom = startPrometheus(h1)
      let promErr = ''
      prom.stderr!.on('data', (d) => { promErr += d })
      await waitFor('Prometheus scrapes all three routers', async () => {
        const up = await query(h1, 'up{job="weave"} == 1').catch(() => [])
        return up.length === 3
      }, 60_000, 500).catch((err) => { throw new Error(`${(err as Error).message}\n${promErr.slice(-2000)}`) })
      for (const h of lab.hosts) {
        const n = await waitFor(`${h.name}: 2 established connections in Prometheus`, async () =>
          (await one(h1, `sum(weave_connections{instance="${h.underlayIp}:6782",state="established"})`)) === 2, 20_000, 500).then(() => 2)
        assert.is(n, 2)
      }
      const tcp = await one(h1, 'sum(weave_connections{state="established",type="sleeve"})')
      assert.is(tcp, 6, 'six established sleeve connections in the 3-host mesh')

      // a "container" (plain namespace) on h1 and on h2, attached to the weave network
      const c1 = await extraNs.add(`${h1.ns}-c1`)
      const c2 = await extraNs.add(`${h2.ns}-c2`)
      await weaveAttach(h1, c1)
      const ip2 = await weaveAttach(h2, c2)
      assert.ok(await pingFromNamespace(c1, ip2, { tries: 20 }), 'c1 on h1 reaches c2 on h2 over the overlay')
      await delay(3000) // quiet: control traffic is not counted, data frames have stopped
      const settle = async () => {
        // two consecutive scrapes agree: Prometheus holds the routers' current counters
        const read = async () => Promise.all([bytesQ('tx', h1, h2), bytesQ('rx', h1, h2), bytesQ('rx', h2, h1), bytesQ('tx', h1, h3)].map((q) => one(h1, q)))
        let prev = await read()
        for (let i = 0; i < 20; i++) {
          await delay(1500)
          const now = await read()
          if (now.every((v, k) => v === prev[k])) return now
          prev = now
        }
        return prev
      }
      const before = await settle()
      const r = await runIn(c1, ['busybox', 'ping', '-c', String(PINGS), '-i', '0.1', '-s', String(PING_PAYLOAD), '-W', '2', ip2])
      assert.match(r.stdout, new RegExp(`${PINGS} packets transmitted, ${PINGS} (packets )?received`), r.stdout)
      await delay(2500)
      const after = await settle()
      const [tx12, rx12, rx21, tx13] = after.map((v, k) => v - before[k])
      console.log(`h1→h2 tx +${tx12} B, h1←h2 rx +${rx12} B, h2←h1 rx +${rx21} B, h1→h3 tx +${tx13} B (pings: ${PINGS} × ${FRAME_BYTES} B each way)`)
      const sent = PINGS * FRAME_BYTES
      for (const [what, v] of [['h1 tx to h2', tx12], ['h1 rx from h2', rx12], ['h2 rx from h1', rx21]] as const) {
        assert.ok(v >= sent && v <= sent + SLACK_BYTES, `${what}: +${v} bytes, expected ${sent}..${sent + SLACK_BYTES}`)
      }
      assert.ok(tx13 < SLACK_BYTES, `h1 tx to h3 grew by ${tx13} bytes only (no pings went there)`)
      const pk = await one(h1, `weave_peer_tx_packets_total{instance="${h1.underlayIp}:6782",peer="${names.get(h2)}"}`)
      assert.ok(pk >= PINGS, `${pk} packets to h2`)
      // Weave's other series are present on every router, IPAM's with real values
      const maxIps = await query(h1, 'weave_max_ips')
      assert.is(maxIps.length, 3)
      for (const s of maxIps) assert.is(Number(s.value[1]), 1 << 20)
      assert.is((await query(h1, 'weave_dns_entries')).length, 3)
      assert.is((await query(h1, 'weave_ipam_pending_claims')).length, 3)
      const ips1 = await one(h1, `weave_ips{instance="${h1.underlayIp}:6782"}`)
      assert.is(ips1, 1, 'c1\'s address is h1\'s one lease')
    } catch (err) {
      for (const h of lab.hosts) console.log(`--- ${h.name} log\n${h.weaverLog(30)}`)
      throw err
    } finally {
      if (prom?.pid) { try { process.kill(prom.pid, 'SIGTERM') } catch { /* gone */ } }
      prom = undefined
    }
  })

  test('Chromium in h1 shows the 3-host topology; a killed router\'s edges turn within 5 s', async () => {
    const [h1, , h3] = lab.hosts
    const chrome = await launchChromium({ netns: h1.ns })
    try {
      const page = await chrome.context.newPage()
      await page.goto('http://127.0.0.1:6784/ui')
      await page.waitForFunction(() => document.querySelectorAll('.node').length === 3
        && document.querySelectorAll('.edge[data-state="established"]').length === 3, undefined, { timeout: 20_000 })
      // the page's status texts are what the API (and so `weave status peers|connections`) prints
      for (const [sel, route] of [['#peers-text', '/status/peers'], ['#connections-text', '/status/connections']]) {
        await waitFor(`${sel} equals ${route}`, async () => (await page.locator(sel).textContent()) === (await h1.api(route)).text, 10_000, 300)
      }
      const ownEdges = page.locator(`.edge[data-datapath="sleeve"]`)
      assert.is(await ownEdges.count(), 2, 'h1\'s two connections show their data path')
      fs.mkdirSync(ARTIFACT_DIR, { recursive: true })
      await page.screenshot({ path: path.join(ARTIFACT_DIR, 'ui-lab-3-hosts.png') })

      const n3 = names.get(h3)!
      const pid = Number(fs.readFileSync(path.join(h3.weaveRunDir, 'weaver.pid'), 'utf8'))
      process.kill(pid, 'SIGKILL')
      const t0 = Date.now()
      await page.waitForFunction((n) => {
        const es = [...document.querySelectorAll('.edge')].filter((e) => (e.getAttribute('data-edge') ?? '').includes(n))
        return es.length > 0 && es.every((e) => e.getAttribute('data-state') !== 'established')
      }, n3, { timeout: 5_000 })
      const ms = Date.now() - t0
      console.log(`h3's edges turned ${ms} ms after kill -9`)
      assert.ok(ms < 5000)
      await page.screenshot({ path: path.join(ARTIFACT_DIR, 'ui-lab-h3-killed.png') })
    } finally {
      await chrome.close()
    }
  })
}

test.run()
