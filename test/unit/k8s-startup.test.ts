/**
 * The Kubernetes add-on's start-up against the recorded-response API server (test/fakes, the one
 * fake: no kubelet or API server runs here), over HTTPS with a bearer token: peers from the node
 * list (InternalIPs minus self) and consensus = node count in the router's launch arguments, the
 * CNI install, this router in the ConfigMap's peer list, NetworkUnavailable=False as a strategic
 * merge patch; a dead node's space reclaimed by exactly one of three survivors racing, and a stale
 * lock taken over. Plus the pure steps on their own.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import {
  KubeApi, PEERS_KEY, claimStep, finishStep, launchArgs, lockKey, planPeers, readPeers, reclaimDeadPeers, registerSelf, startUp,
  type KubeNode, type PeerRecord,
} from '../../k8s'
import { RecordedApiServer } from '../fakes/recorded-apiserver'

const peer = (n: number) => `aa:bb:cc:dd:ee:${String(n).padStart(2, '0')}`
const rec = (n: number, node: string): PeerRecord => ({ PeerName: peer(n), NodeName: node })

let fake: RecordedApiServer
const api = () => new KubeApi({ server: fake.url, token: fake.token, ca: fake.ca })

test.before.each(async () => {
  fake = new RecordedApiServer()
  await fake.start()
})
test.after.each(async () => { await fake.stop() })

test('peers: InternalIPs of the other nodes; consensus = node count; self must be listed', () => {
  const nodes = fake.nodes as KubeNode[]
  const plan = planPeers(nodes, 'node-b')
  assert.equal(plan, { peers: ['172.18.0.11', '172.18.0.13'], consensus: 3, self: ['172.18.0.12'] })
  assert.equal(launchArgs(plan), ['--ipalloc-init', 'consensus=3', '172.18.0.11', '172.18.0.13'])
  assert.throws(() => planPeers(nodes, 'node-x'), /node-x is not in/)
  assert.equal(planPeers(nodes.slice(0, 1), 'node-a'), { peers: [], consensus: 1, self: ['172.18.0.11'] })
})

test('reclaim steps: claim, ours, theirs, stale lock, done; finish drops peer and lock', () => {
  const me = rec(1, 'node-a')
  const ann = { [PEERS_KEY]: JSON.stringify({ Peers: [me, rec(9, 'node-gone')] }) }
  const live = new Set(['node-a', 'node-b'])
  const c = claimStep(ann, peer(9), me, live)
  assert.is(c.kind, 'claim')
  const locked = (c as { annotations: Record<string, string> }).annotations
  assert.equal(JSON.parse(locked[lockKey(peer(9))]), me)
  assert.is(claimStep(locked, peer(9), me, live).kind, 'ours')
  assert.equal(claimStep(locked, peer(9), rec(2, 'node-b'), live), { kind: 'theirs', by: peer(1) })
  assert.is(claimStep(locked, peer(9), rec(2, 'node-b'), new Set(['node-b'])).kind, 'claim', 'a lock whose holder\'s node is gone is stale')
  const fin = finishStep(locked, peer(9))
  assert.equal(readPeers(fin), [me])
  assert.is(fin[lockKey(peer(9))], undefined)
  assert.is(claimStep(fin, peer(9), me, live).kind, 'done')
  assert.not.match(lockKey(peer(9)).split('/')[1], /:/, 'annotation names carry no colon')
})

test('start-up: launch args, CNI install, peer list, NetworkUnavailable=False (HTTPS, bearer token)', async () => {
  const calls: string[] = []
  let args: string[] = []
  const r = await startUp({
    api: api(),
    nodeName: 'node-a',
    async startRouter(a) { calls.push('router'); args = a; return { peerName: peer(1) } },
    async installCni() { calls.push('cni') },
    async rmpeer(p) { calls.push(`rmpeer ${p}`) },
    now: () => new Date('2026-12-06T00:00:00Z'),
    log: () => {},
  }, ['--no-fastdp'])
  assert.equal(args, ['--ipalloc-init', 'consensus=3', '--no-fastdp', '172.18.0.12', '172.18.0.13'])
  assert.equal(calls, ['router', 'cni'], 'the router answers before the plugin is installed; nothing to reclaim')
  assert.equal(r.reclaimed, [])
  assert.equal(readPeers(fake.configMap('kube-system', 'weave-net').metadata.annotations), [rec(1, 'node-a')])
  const patch = fake.requests.find((q) => q.method === 'PATCH')!
  assert.is(patch.path, '/api/v1/nodes/node-a/status')
  assert.is(patch.contentType, 'application/strategic-merge-patch+json')
  const cond = fake.nodes.find((n) => n.metadata.name === 'node-a').status.conditions.find((c: { type: string }) => c.type === 'NetworkUnavailable')
  assert.equal([cond.status, cond.reason, cond.lastTransitionTime], ['False', 'WeaveIsUp', '2026-12-06T00:00:00.000Z'])
  const ready = fake.nodes.find((n) => n.metadata.name === 'node-a').status.conditions.find((c: { type: string }) => c.type === 'Ready')
  assert.is(ready.reason, 'KubeletNotReady', 'the kubelet\'s own conditions are untouched')
  // order: node list first, the node condition last
  assert.is(fake.requests[0].path, '/api/v1/nodes')
  assert.is(fake.requests[fake.requests.length - 1].method, 'PATCH')
})

test('the API client refuses a server without the cluster CA, and the fake refuses a wrong token', async () => {
  const noCa = new KubeApi({ server: fake.url, token: fake.token })
  await noCa.listNodes().then(() => assert.unreachable('trusted an unknown CA'), (err: Error) => assert.match(err.message, /self.signed|certificate/i))
  const badToken = new KubeApi({ server: fake.url, token: 'nope', ca: fake.ca })
  await badToken.listNodes().then(() => assert.unreachable('accepted a bad token'), (err: Error) => assert.match(err.message, /401/))
})

test('a dead node\'s space is reclaimed by exactly one of three survivors racing', async () => {
  const survivors = [rec(1, 'node-a'), rec(2, 'node-b'), rec(3, 'node-c')]
  for (const s of survivors) await registerSelf(api(), s)
  await registerSelf(api(), rec(4, 'node-d'))
  await registerSelf(api(), rec(5, 'node-e'))
  // node-d and node-e are not in the node list: their routers are gone with them.
  // The first three writes wait for each other: all three survivors then claim the same lock
  // from the same version, and the API server's compare-and-swap must pick one.
  let arrived = 0
  let release: () => void = () => {}
  const barrier = new Promise<void>((r) => { release = r })
  fake.beforeWrite = async () => {
    if (++arrived > 3) return
    if (arrived === 3) release()
    await Promise.race([barrier, new Promise((r) => setTimeout(r, 2000))])
  }
  const rmpeers: string[] = []
  const results = await Promise.all(survivors.map((me) => reclaimDeadPeers({
    api: api(),
    async rmpeer(p) { rmpeers.push(`${me.NodeName}:${p}`); await new Promise((r) => setTimeout(r, 20)) },
    log: () => {},
  }, me)))
  const byPeer = (p: string) => rmpeers.filter((x) => x.endsWith(p))
  assert.is(byPeer(peer(4)).length, 1, `rmpeer of node-d's peer ran once: ${rmpeers.join(', ')}`)
  assert.is(byPeer(peer(5)).length, 1, `rmpeer of node-e's peer ran once: ${rmpeers.join(', ')}`)
  assert.is(results.flat().length, 2)
  const ann = fake.configMap('kube-system', 'weave-net').metadata.annotations
  assert.equal(readPeers(ann).map((p) => p.PeerName).sort(), [peer(1), peer(2), peer(3)])
  assert.is(ann[lockKey(peer(4))], undefined)
  const conflicts = fake.requests.filter((q) => q.method === 'PUT' && q.status === 409).length
  assert.ok(conflicts >= 2, `the racing claims met compare-and-swap: ${conflicts} conflicts`)
})

test('a survivor that died holding a lock: another takes the stale lock over', async () => {
  await registerSelf(api(), rec(1, 'node-a'))
  await registerSelf(api(), rec(7, 'node-x'))
  await registerSelf(api(), rec(8, 'node-y'))
  // node-y's router took the lock on node-x's peer, then node-y went too
  const cm = await api().getConfigMap('kube-system', 'weave-net')
  const step = claimStep(cm!.annotations, peer(7), rec(8, 'node-y'), new Set(['node-a', 'node-y']))
  assert.is(step.kind, 'claim')
  await api().replaceConfigMap('kube-system', 'weave-net', { resourceVersion: cm!.resourceVersion, annotations: (step as { annotations: Record<string, string> }).annotations })
  const done: string[] = []
  const got = await reclaimDeadPeers({ api: api(), async rmpeer(p) { done.push(p) }, log: () => {} }, rec(1, 'node-a'))
  assert.equal(got.sort(), [peer(7), peer(8)])
  assert.equal(done.sort(), [peer(7), peer(8)])
  assert.equal(readPeers(fake.configMap('kube-system', 'weave-net').metadata.annotations), [rec(1, 'node-a')])
})

test.run()
