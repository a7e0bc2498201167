/**
 * `npm run bench -- cni [pairs] [runs]`: the weave-net CNI plugin's cost, in one lab host with its
 * router and `weave setup-cni`.
 *
 * - add_ms_p50 / del_ms_p50: wall time of the installed plugin process (the C front, one request
 *   to the router, which runs the plugin's code and allocates and attaches over netlink) for `pairs` (50) ADD/DEL
 *   pairs, each on a fresh pod namespace, as a runtime runs it: CNI_* variables, conf on stdin, this
 *   process's environment passed through. The plugin only talks to the router's unix socket, so it
 *   runs from here; the router does the namespace work inside the lab host.
 * - version_ms_p50: the same process answering VERSION (no router request) in the same rounds:
 *   the plugin's start-up alone, the floor under add/del on this machine at this moment.
 * - podman_run_ratio: `podman run --rm --network weave busybox true` over the same with
 *   `--network none` (podman's CNI backend, the lab host's own storage), `runs` (11) of each,
 *   interleaved after a warm-up, medians; the difference is what CNI ADD + DEL (plugin and portmap)
 *   add to a container's whole life.
 *
 * Last line: {"bench":"cni","add_ms_p50":…,"del_ms_p50":…,"podman_run_ratio":…,…}
 */
import { execFile } from 'node:child_process'
import * as os from 'node:os'
import { performance } from 'node:perf_hooks'
import {
  BUSYBOX, buildBusyboxTar, createLab, createPodNetns, labUnavailableReason, podmanUnavailableReason, preparePodDir,
  removePodNetns, setupCni, startPodman, type LabHost,
} from '../lab'

const pairs = Number(process.argv[2] ?? 50)
const runs = Number(process.argv[3] ?? 11)

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b)
  const i = (s.length - 1) * q
  return s[Math.floor(i)] + (s[Math.ceil(i)] - s[Math.floor(i)]) * (i - Math.floor(i))
}
const round = (x: number) => Math.round(x * 10) / 10

/** Run the plugin once; resolves with its wall time in ms, rejects with its output on failure. */
function timedPlugin(plugin: string, env: Record<string, string>, conf: string): Promise<{ ms: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const child = execFile(plugin, [], { env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout) => {
      const ms = performance.now() - t0
      if (err) reject(new Error(`${env.CNI_COMMAND} failed: ${stdout}`))
      else resolve({ ms, stdout })
    })
    child.stdin?.end(conf)
  })
}

async function measurePlugin(h: LabHost, plugin: string): Promise<{ add: number[]; del: number[]; version: number[] }> {
  const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'weave', type: 'weave-net', hairpinMode: true, socket: h.apiSocket })
  const add: number[] = []
  const del: number[] = []
  const version: number[] = []
  for (let i = -3; i < pairs; i++) { // three untimed warm-up pairs (the router's first attach starts its netlink worker)
    const netns = await createPodNetns(h, `b${i + 3}`)
    const env = { CNI_CONTAINERID: `bench${String(i + 3).padStart(59, '0')}`, CNI_NETNS: netns, CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni' }
    try {
      const a = await timedPlugin(plugin, { ...env, CNI_COMMAND: 'ADD' }, conf)
      const d = await timedPlugin(plugin, { ...env, CNI_COMMAND: 'DEL' }, conf)
      const v = await timedPlugin(plugin, { ...env, CNI_COMMAND: 'VERSION' }, conf)
      if (i >= 0) { add.push(a.ms); del.push(d.ms); version.push(v.ms) }
    } finally {
      await removePodNetns(netns)
    }
  }
  return { add, del, version }
}

async function main() {
  const why = labUnavailableReason({}) ?? podmanUnavailableReason()
  if (why) {
    console.log(JSON.stringify({ bench: 'cni', skipped: why }))
    return
  }
  const lab = await createLab({ hosts: 1 })
  const h = lab.hosts[0]
  let removeAll = () => {}
  try {
    await preparePodDir(h)
    const launched = await h.launchWeave(['--ipalloc-init', 'consensus=1'])
    if (launched.code !== 0) throw new Error(`weave launch failed: ${launched.stderr}`)
    const cni = await setupCni(h)
    const { add, del, version } = await measurePlugin(h, cni.plugin)

    const p = await startPodman(h, cni, await buildBusyboxTar(lab.dir))
    removeAll = () => p.removeAllSync()
    const podmanRun = async (network: string) => {
      const t0 = performance.now()
      await p.podman(['run', '--rm', '--network', network, BUSYBOX, 'true'])
      return performance.now() - t0
    }
    await podmanRun('none')
    await podmanRun('weave')
    const none: number[] = [], weave: number[] = []
    for (let i = 0; i < runs; i++) {
      none.push(await podmanRun('none'))
      weave.push(await podmanRun('weave'))
    }
    const result = {
      bench: 'cni',
      add_ms_p50: round(quantile(add, 0.5)),
      del_ms_p50: round(quantile(del, 0.5)),
      add_ms_p90: round(quantile(add, 0.9)),
      del_ms_p90: round(quantile(del, 0.9)),
      version_ms_p50: round(quantile(version, 0.5)),
      podman_run_ms_weave: round(quantile(weave, 0.5)),
      podman_run_ms_none: round(quantile(none, 0.5)),
      podman_run_ratio: Math.round((quantile(weave, 0.5) / quantile(none, 0.5)) * 100) / 100,
      pairs,
      runs,
      targets: { add_ms_p50: 50, podman_run_ratio: 1.3 },
      load: Number(os.loadavg()[0].toFixed(2)),
      note: 'plugin wall time of the installed C front (no node process; the router runs the plugin code); podman with runc via the lab\'s no-rlimits wrapper; a shared 2-core machine: figures drift with other load',
    }
    console.log(JSON.stringify(result))
  } finally {
    removeAll()
    await lab.teardown()
  }
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message)
  process.exitCode = 1
})
