/**
 * `npm run bench -- plugin [rounds]`: `docker run --rm --net=weave busybox true` (the Docker
 * network plugin: an IPAM address from the mesh, a veth pair on the weave bridge, moved into the
 * container by Docker) against `docker run --rm --net=none busybox true`, both on the same lab
 * host's dockerd in this run, rounds interleaved so drift hits both alike. For scale, Docker's own
 * bridge driver on a network of its own (`bridge_ratio`) in the same rounds: what any network
 * costs a container start on this engine, with no plugin at all.
 *
 * Where the weave run's extra time goes, from the router's own request histograms
 * (weave_request_duration_seconds{component="plugin"}): `plugin_call_ms` is each libnetwork call's
 * mean handling time and `plugin_ms_per_run` their sum per container. What is left of
 * `run_ms.weave - run_ms.none` is Docker's: for any user-defined network it starts its embedded
 * DNS resolver in the container (a re-exec of dockerd and about ten iptables processes, seen with
 * strace), which `bridge` pays as well.
 *
 * Last line: {"bench":"plugin","run_ratio":…,"run_ms":{"weave":…,"none":…},"rounds":…,…}
 */
import * as os from 'node:os'
import { createLab, labUnavailableReason, waitFor } from '../lab'
import { median, timedRun } from './stats'

const rounds = Number(process.argv[2] ?? 20)

async function main() {
  const why = labUnavailableReason({ docker: true })
  if (why) {
    console.log(JSON.stringify({ bench: 'plugin', skipped: why }))
    return
  }
  const lab = await createLab({ hosts: 1, docker: true })
  const h = lab.hosts[0]
  try {
    await h.launchWeaveWait(['--ipalloc-init', 'consensus=1'])
    await waitFor('docker network weave', async () => (await h.docker(['network', 'inspect', 'weave'], { allowFail: true })).code === 0, 30_000, 200)
    // The lab engine runs with --iptables=false: this bridge touches no firewall.
    await h.docker(['network', 'create', '-d', 'bridge', '--subnet', '172.30.0.0/16', 'benchbr'])
    const modes = { weave: '--net=weave', none: '--net=none', bridge: '--net=benchbr' }
    const samples: Record<string, number[]> = { weave: [], none: [], bridge: [] }
    for (const m of Object.values(modes)) await timedRun(['docker', '-H', h.dockerHost!, 'run', '--rm', m, 'busybox', 'true']) // warm-up
    for (let i = 0; i < rounds; i++) {
      for (const [k, m] of Object.entries(modes)) samples[k].push(await timedRun(['docker', '-H', h.dockerHost!, 'run', '--rm', m, 'busybox', 'true']))
    }
    const calls = pluginCallMs((await h.api('/metrics')).text)
    const weave = median(samples.weave)
    const none = median(samples.none)
    const bridge = median(samples.bridge)
    console.log(`docker run --rm busybox true: --net=weave ${weave.toFixed(1)} ms, --net=none ${none.toFixed(1)} ms, Docker's bridge ${bridge.toFixed(1)} ms (medians of ${rounds})`)
    const r3 = (x: number) => Math.round(x * 1000) / 1000
    console.log(JSON.stringify({
      bench: 'plugin',
      run_ratio: r3(weave / none),
      run_ms: { weave: r3(weave), none: r3(none), bridge: r3(bridge) },
      bridge_ratio: r3(bridge / none),
      plugin_ms_per_run: r3(Object.values(calls).reduce((a, c) => a + c.mean * c.perRun, 0)),
      plugin_call_ms: Object.fromEntries(Object.entries(calls).map(([k, c]) => [k, r3(c.mean)])),
      target: 1.3,
      rounds,
      load1: Math.round(os.loadavg()[0] * 10) / 10, // the machine is shared: high load makes every figure noisy
      note: 'medians; weave = the daemon\'s Docker plugin (IPAM address, endpoint veth, Docker moves it in); none = no network at all',
    }))
  } finally {
    await h.weave(['stop'], { allowFail: true })
    await lab.teardown()
  }
}

/**
 * Mean handling time per plugin call (ms) and how often it came per weave run, from the router's
 * Prometheus text; the warm-up run counts too (rounds + 1 runs).
 */
function pluginCallMs(text: string): Record<string, { mean: number; perRun: number }> {
  const sums = new Map<string, number>()
  const counts = new Map<string, number>()
  for (const line of text.split('\n')) {
    const m = /^weave_request_duration_seconds_(sum|count)\{([^}]*)\} (\S+)$/.exec(line)
    if (!m || !/component="plugin"/.test(m[2])) continue
    const route = /route="([^"]+)"/.exec(m[2])?.[1] ?? 'other'
    const into = m[1] === 'sum' ? sums : counts
    into.set(route, (into.get(route) ?? 0) + Number(m[3]))
  }
  const out: Record<string, { mean: number; perRun: number }> = {}
  for (const [route, n] of counts) if (n > 0) out[route] = { mean: (sums.get(route)! / n) * 1000, perRun: n / (rounds + 1) }
  return out
}

main().catch((err) => { console.error(err); process.exit(1) })
