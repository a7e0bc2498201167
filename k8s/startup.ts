/**
 * The DaemonSet container's start-up, in order (its edges injected, so tests run it against a
 * recorded API server and a recorded router):
 *   1. the node list → peers (InternalIPs minus ours) and consensus (the node count);
 *   2. the router, launched with them; wait until its API answers;
 *   3. the CNI plugin and conflist into the host's CNI dirs (`weave setup-cni`);
 *   4. this router into the ConfigMap's peer list; dead nodes' space reclaimed (one survivor each);
 *   5. the node's NetworkUnavailable=False condition.
 */
import type { KubeApi } from './api'
import { networkReadyPatch, STRATEGIC_MERGE } from './node-condition'
import { launchArgs, planPeers, type PeerPlan } from './peers'
import { reclaimDeadPeers, registerSelf } from './reclaimer'

export interface StartupDeps {
  api: KubeApi
  nodeName: string
  /** Start the router with these arguments; resolves once its API answers, with its peer name. */
  startRouter(args: string[]): Promise<{ peerName: string }>
  installCni(): Promise<void>
  rmpeer(peerName: string): Promise<void>
  now(): Date
  log(line: string): void
}

export interface StartupResult {
  plan: PeerPlan
  peerName: string
  reclaimed: string[]
}

export async function startUp(deps: StartupDeps, extraRouterArgs: string[] = []): Promise<StartupResult> {
  const plan = planPeers(await deps.api.listNodes(), deps.nodeName)
  deps.log(`node ${deps.nodeName}: ${plan.peers.length} peer(s) ${plan.peers.join(' ') || '(none)'}, consensus=${plan.consensus}`)
  const { peerName } = await deps.startRouter(launchArgs(plan, extraRouterArgs))
  deps.log(`router ${peerName} answers`)
  await deps.installCni()
  const me = { PeerName: peerName, NodeName: deps.nodeName }
  await registerSelf(deps.api, me)
  const reclaimed = await reclaimDeadPeers({ api: deps.api, rmpeer: (p) => deps.rmpeer(p), log: (l) => deps.log(l) }, me)
  await deps.api.patchNodeStatus(deps.nodeName, networkReadyPatch(deps.now().toISOString()), STRATEGIC_MERGE)
  deps.log(`node ${deps.nodeName}: NetworkUnavailable=False`)
  return { plan, peerName, reclaimed }
}
