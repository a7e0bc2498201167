/**
 * `npm run bench -- proxy [rounds]`: the Docker API proxy against talking to the engine directly,
 * both measured in this run with the real docker client against a lab host's dockerd.
 *
 * - passthrough: `docker version` and `docker ps` (median of N each way, rounds interleaved so
 *   drift hits both sides alike); passthrough_ratio = median(proxy) / median(direct), the worse
 *   of the two calls.
 * - ping_us: a bare GET /_ping from this process, direct vs proxy: the proxy's own added latency
 *   per request, without the docker client's process start-up and the machine's noise around it.
 * - run: `docker run --rm busybox true`. The proxy is the real daemon's (`weave launch` in a lab
 *   host with its own dockerd): the container gets /w/w, an IPAM address and `ethwe` before its
 *   command runs. run_ratio = median(proxy) / median(direct). run_ratio_no_attach uses
 *   WEAVE_CIDR=none through the proxy: the interception cost alone.
 *
 * Last line: {"bench":"proxy","passthrough_ratio":…,"run_ratio":…,…,"note":…}
 */
import * as http from 'node:http'
import * as os from 'node:os'
import * as path from 'node:path'
import { performance } from 'node:perf_hooks'
import { createLab, labUnavailableReason } from '../lab'
import { median, timedRun } from './stats'

const rounds = Number(process.argv[2] ?? 21)

/** One GET /_ping on a fresh connection; resolves with its time in ms. */
function pingOnce(socketPath: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    http.get({ socketPath, path: '/_ping', agent: false }, (res) => {
      res.resume()
      res.on('end', () => resolve(performance.now() - t0))
    }).on('error', reject)
  })
}

/** Median µs of a bare API round trip, each way, interleaved in blocks (no docker CLI process start-up). */
async function comparePing(sockets: Record<string, string>, n: number): Promise<Record<string, number>> {
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(sockets).map((k) => [k, []]))
  for (let i = 0; i < n; i++) {
    for (const [k, p] of Object.entries(sockets)) samples[k].push(await pingOnce(p))
  }
  return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v) * 1000]))
}

/** Median ms of `args` run against each docker host, interleaved. */
async function compare(hosts: Record<string, string>, args: string[], n: number): Promise<Record<string, number>> {
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(hosts).map((k) => [k, []]))
  for (const h of Object.values(hosts)) await timedRun(['docker', '-H', h, ...args]) // warm-up
  for (let i = 0; i < n; i++) {
    for (const [k, h] of Object.entries(hosts)) samples[k].push(await timedRun(['docker', '-H', h, ...args]))
  }
  return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]))
}

async function main() {
  const why = labUnavailableReason({ docker: true })
  if (why) {
    console.log(JSON.stringify({ bench: 'proxy', skipped: why }))
    return
  }
  const lab = await createLab({ hosts: 1, docker: true })
  const h = lab.hosts[0]
  const socketPath = path.join(h.weaveEnv().WEAVE_RUN_DIR, 'weave.sock')
  try {
    const launched = await h.launchWeave(['--ipalloc-init', 'consensus=1'])
    if (launched.code !== 0) throw new Error(`weave launch failed: ${launched.stderr}`)
    const hosts = { direct: h.dockerHost!, proxy: `unix://${socketPath}` }
    const ping = await comparePing({ direct: h.dockerHost!.replace(/^unix:\/\//, ''), proxy: socketPath }, 300)
    console.log(`GET /_ping:     direct ${ping.direct.toFixed(0)} µs, proxy ${ping.proxy.toFixed(0)} µs (one request, fresh connection)`)
    const version = await compare(hosts, ['version'], rounds)
    console.log(`docker version: direct ${version.direct.toFixed(1)} ms, proxy ${version.proxy.toFixed(1)} ms`)
    const ps = await compare(hosts, ['ps', '-a'], rounds)
    console.log(`docker ps:      direct ${ps.direct.toFixed(1)} ms, proxy ${ps.proxy.toFixed(1)} ms`)
    const runN = Math.max(5, Math.round(rounds * 2 / 3))
    const runs = await compare(hosts, ['run', '--rm', 'busybox', 'true'], runN)
    console.log(`docker run:     direct ${runs.direct.toFixed(1)} ms, proxy (IPAM + ethwe) ${runs.proxy.toFixed(1)} ms`)
    const none = await compare({ direct: hosts.direct, proxy: hosts.proxy }, ['run', '--rm', '-e', 'WEAVE_CIDR=none', 'busybox', 'true'], runN)
    console.log(`docker run, WEAVE_CIDR=none: direct ${none.direct.toFixed(1)} ms, proxy ${none.proxy.toFixed(1)} ms`)
    const r3 = (x: number) => Math.round(x * 1000) / 1000
    console.log(JSON.stringify({
      bench: 'proxy',
      passthrough_ratio: r3(Math.max(version.proxy / version.direct, ps.proxy / ps.direct)),
      run_ratio: r3(runs.proxy / runs.direct),
      run_ratio_no_attach: r3(none.proxy / none.direct),
      ping_us: { direct: Math.round(ping.direct), proxy: Math.round(ping.proxy) },
      version_ms: { direct: r3(version.direct), proxy: r3(version.proxy) },
      ps_ms: { direct: r3(ps.direct), proxy: r3(ps.proxy) },
      run_ms: { direct: r3(runs.direct), proxy: r3(runs.proxy) },
      rounds,
      load1: Math.round(os.loadavg()[0] * 10) / 10, // the machine is shared: high load makes every figure noisy
      note: 'proxy = the weave daemon\'s (weave launch in a lab host); run_ratio includes IPAM allocation and the ethwe attach',
    }))
  } finally {
    await h.weave(['stop'], { allowFail: true })
    await lab.teardown()
  }
}

main().catch((err) => { console.error(err); process.exit(1) })
