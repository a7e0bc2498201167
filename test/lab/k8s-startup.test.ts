/**
 * The DaemonSet container's real start-up (`node dist/k8s/main.js`) on two lab hosts, each as a
 * node of a cluster whose API server is the recorded-response fake (test/fakes, the one fake; no
 * kubelet or API server runs here), itself running in h1 so both nodes reach it over the lab LAN:
 * each container starts its router with the other node as peer and consensus=2, the routers
 * connect, the CNI plugin lands in the node's CNI dir with a node binary beside it and attaches a
 * pod, NetworkUnavailable=False on both nodes. Then h2 leaves the cluster (its container stopped,
 * its node deleted) and h1's restarted container reclaims h2's address space through rmpeer.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as path from 'node:path'
import type { ChildProcess } from 'node:child_process'
import {
  createLab, createPodNetns, labUnavailableReason, preparePodDir, removePodNetns, REPO_ROOT, runPlugin, waitFor,
  type Lab, type LabHost,
} from '../lab'
import { skipFile } from '../skip'

function reasonToSkip(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)'
  if (!fs.existsSync(path.join(REPO_ROOT, 'dist', 'k8s', 'main.js'))) return 'weave is not built (dist/k8s/main.js)'
  return labUnavailableReason({})
}

interface FakeState { nodes: any[]; configMaps: Record<string, any> }

const why = reasonToSkip()
if (why) skipFile('k8s start-up lab', why)
else {
  let lab: Lab
  let h1: LabHost, h2: LabHost
  let fakeDir: string
  const containers = new Map<string, ChildProcess>()
  const state = (): FakeState => JSON.parse(fs.readFileSync(path.join(fakeDir, 'state.json'), 'utf8')) as FakeState
  const condition = (node: string) => state().nodes.find((n) => n.metadata.name === node)?.status?.conditions?.find((c: { type: string }) => c.type === 'NetworkUnavailable')?.status as string | undefined
  const peersInMap = () => {
    const cm = state().configMaps['kube-system/weave-net']
    return cm ? (JSON.parse(cm.metadata.annotations['kube-peers.weave.works/peers']) as { Peers: Array<{ PeerName: string; NodeName: string }> }).Peers : []
  }
  const cniDirs = (h: LabHost) => ({ bin: path.join(h.dir, 'host-cni', 'bin'), conf: path.join(h.dir, 'host-cni', 'net.d') })

  /** The DaemonSet container of `h`, as the kubelet would start it (env from the manifest). */
  function startContainer(h: LabHost): void {
    const server = JSON.parse(fs.readFileSync(path.join(fakeDir, 'server.json'), 'utf8')) as { url: string }
    const u = new URL(server.url)
    const log = fs.openSync(path.join(h.dir, 'weave-kube.log'), 'a')
    const c = h.spawn([process.execPath, path.join(REPO_ROOT, 'dist', 'k8s', 'main.js')], {
      stdio: ['ignore', log, log],
      env: {
        ...process.env, ...h.weaveEnv(),
        NODE_NAME: h.name, KUBERNETES_SERVICE_HOST: u.hostname, KUBERNETES_SERVICE_PORT: u.port, WEAVE_KUBE_SA_DIR: fakeDir,
        CNI_BIN_DIR: cniDirs(h).bin, CNI_CONF_DIR: cniDirs(h).conf,
      },
    })
    fs.closeSync(log)
    containers.set(h.name, c)
  }
  async function stopContainer(h: LabHost): Promise<void> {
    const c = containers.get(h.name)
    if (!c || c.exitCode !== null) return
    const exited = new Promise((r) => c.once('exit', r))
    c.kill('SIGTERM') // forwarded to the router, whose exit ends the container
    await exited
  }
  const kubeLog = (h: LabHost) => { try { return fs.readFileSync(path.join(h.dir, 'weave-kube.log'), 'utf8').slice(-3000) } catch { return '' } }

  test.before(async () => {
    lab = await createLab({ hosts: 2 })
    ;[h1, h2] = lab.hosts as [LabHost, LabHost]
    await preparePodDir(h1)
    fakeDir = path.join(lab.dir, 'apiserver')
    fs.mkdirSync(fakeDir, { recursive: true })
    const node = (h: LabHost) => ({ metadata: { name: h.name }, status: { addresses: [{ type: 'InternalIP', address: h.underlayIp }, { type: 'Hostname', address: h.name }], conditions: [] } })
    fs.writeFileSync(path.join(fakeDir, 'nodes.json'), JSON.stringify({ items: [node(h1), node(h2)] }))
    h1.spawn([process.execPath, path.join(REPO_ROOT, 'dist', 'test', 'fakes', 'recorded-apiserver-main.js'), h1.underlayIp, path.join(fakeDir, 'nodes.json'), fakeDir])
    await waitFor('the recorded API server', () => fs.existsSync(path.join(fakeDir, 'server.json')), 20_000)
  })
  test.after(async () => {
    for (const h of [h1, h2]) if (h) await stopContainer(h).catch(() => undefined)
    await lab?.teardown()
  })

  test('both nodes: routers peered with consensus=2, CNI installed and working, NetworkUnavailable=False', async () => {
    startContainer(h1)
    startContainer(h2)
    for (const h of [h1, h2]) {
      await waitFor(`${h.name} NetworkUnavailable=False`, () => fs.existsSync(path.join(fakeDir, 'state.json')) && condition(h.name) === 'False', 120_000, 500)
        .catch((err: Error) => { throw new Error(`${err.message}\n${kubeLog(h)}\n${h.weaverLog(20)}`) })
    }
    for (const h of [h1, h2]) {
      const report = (await h.api('/report')).body as { IPAM: { Init: string } }
      assert.is(report.IPAM.Init, 'consensus=2', `${h.name}: IPAM told the cluster size`)
    }
    const targets = (await h1.weave(['status', 'targets'])).stdout
    assert.match(targets, new RegExp(h2.underlayIp.replace(/\./g, '\\.')), 'h1 was launched with h2 (its InternalIP) as peer')
    assert.not.match(targets, new RegExp(`${h1.underlayIp.replace(/\./g, '\\.')}(:|$|\\s)`), 'not with itself')
    await waitFor('h1 and h2 connected', async () => /established/.test((await h1.weave(['status', 'connections'])).stdout), 30_000, 500)
    assert.equal(peersInMap().map((p) => p.NodeName).sort(), ['h1', 'h2'])
    const plugin = path.join(cniDirs(h1).bin, 'weave-net')
    assert.ok(fs.existsSync(path.join(cniDirs(h1).bin, 'weave-net.d', 'node')), 'a node binary beside the plugin')
    const list = JSON.parse(fs.readFileSync(path.join(cniDirs(h1).conf, '10-weave.conflist'), 'utf8'))
    const ns = await createPodNetns(h1, 'kpod')
    try {
      const add = await runPlugin(h1, plugin, { command: 'ADD', containerId: 'k8spod'.padEnd(64, '0'), netns: ns, conf: { ...list.plugins[0], cniVersion: list.cniVersion, name: list.name } })
      assert.is(add.code, 0, add.stdout + add.stderr)
      const del = await runPlugin(h1, plugin, { command: 'DEL', containerId: 'k8spod'.padEnd(64, '0'), netns: ns, conf: { ...list.plugins[0], cniVersion: list.cniVersion, name: list.name } })
      assert.is(del.code, 0, del.stdout)
    } finally {
      await removePodNetns(ns)
    }
  })

  test('h2 leaves the cluster: h1\'s restarted container reclaims its space', async () => {
    const h2Peer = peersInMap().find((p) => p.NodeName === 'h2')!.PeerName
    await stopContainer(h2)
    const server = JSON.parse(fs.readFileSync(path.join(fakeDir, 'server.json'), 'utf8')) as { url: string; token: string }
    const del = await h1.exec(['curl', '-sk', '-X', 'DELETE', '-H', `Authorization: Bearer ${server.token}`, `${server.url}/test/nodes/h2`], { allowFail: true })
    assert.is(del.code, 0, del.stderr)
    await stopContainer(h1)
    startContainer(h1)
    await waitFor('h2\'s peer gone from the peer list', () => !peersInMap().some((p) => p.PeerName === h2Peer), 120_000, 500)
      .catch((err: Error) => { throw new Error(`${err.message}\n${kubeLog(h1)}\n${h1.weaverLog(20)}`) })
    assert.match(kubeLog(h1), new RegExp(`reclaiming the address space of peer ${h2Peer}`))
    const ipam = (await h1.weave(['status', 'ipam'])).stdout
    assert.not.match(ipam, new RegExp(h2Peer.replace(/:/g, ':')), `h1's IPAM no longer gives h2 any space:\n${ipam}`)
  })
}

test.run()
