/**
 * `npm run bench -- plugin [rounds]`: `docker run --rm --net=weave busybox true` (the Docker
 * network plugin: an IPAM address from the mesh, a veth pair on the weave bridge, moved into the
 * container by Docker) against `docker run --rm --net=none busybox true`, both on the same lab
 * host's dockerd in this run, rounds interleaved so drift hits both alike. For scale, Docker's own
 * bridge driver on a network of its own (`bridge_ratio`) in the same rounds: what any network
 * costs a container start on this engine, with no plugin at all.
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

main().catch((err) => { console.error(err); process.exit(1) })
