/**
 * Applies reclaim.ts's steps to the `weave-net` ConfigMap: every change is a read, a pure step,
 * and a replace carrying the version read (compare-and-swap); a 409 means another router wrote in
 * between, so the loop reads again and decides again.
 */
import type { ConfigMapState, KubeApi } from './api'
import { claimStep, deadPeers, finishStep, withSelf, type Annotations, type PeerRecord } from './reclaim'

export const CONFIGMAP_NAMESPACE = 'kube-system'
export const CONFIGMAP_NAME = 'weave-net'
/** Writes lost to other routers before giving up (each loss means someone else made progress). */
const MAX_CAS_ROUNDS = 50

export interface ReclaimDeps {
  api: KubeApi
  /** `weave rmpeer PEER` on this node's router; resolves once its IPAM took the space over. */
  rmpeer(peerName: string): Promise<void>
  log(line: string): void
}

/**
 * Read-modify-write until it lands: `change` returns new annotations, or undefined for "nothing to
 * write". Creates the ConfigMap when missing.
 */
async function update(api: KubeApi, change: (ann: Annotations) => Annotations | undefined): Promise<boolean> {
  for (let i = 0; i < MAX_CAS_ROUNDS; i++) {
    const cm: ConfigMapState | undefined = await api.getConfigMap(CONFIGMAP_NAMESPACE, CONFIGMAP_NAME)
    const next = change(cm?.annotations ?? {})
    if (next === undefined) return false
    const landed = cm
      ? await api.replaceConfigMap(CONFIGMAP_NAMESPACE, CONFIGMAP_NAME, { resourceVersion: cm.resourceVersion, annotations: next })
      : await api.createConfigMap(CONFIGMAP_NAMESPACE, CONFIGMAP_NAME, next)
    if (landed) return true
  }
  throw new Error(`the ${CONFIGMAP_NAMESPACE}/${CONFIGMAP_NAME} ConfigMap kept changing under us (${MAX_CAS_ROUNDS} lost writes)`)
}

/** Put this router into the peer list (so a survivor can reclaim its space if its node goes). */
export async function registerSelf(api: KubeApi, me: PeerRecord): Promise<void> {
  await update(api, (ann) => withSelf(ann, me))
}

/**
 * Reclaim every listed peer whose node is gone, each by exactly one survivor. Returns the peers
 * this router reclaimed.
 */
export async function reclaimDeadPeers(deps: ReclaimDeps, me: PeerRecord): Promise<string[]> {
  const { api } = deps
  const live = new Set((await api.listNodes()).map((n) => n.metadata.name))
  const cm = await api.getConfigMap(CONFIGMAP_NAMESPACE, CONFIGMAP_NAME)
  const done: string[] = []
  for (const dead of deadPeers(cm?.annotations ?? {}, live, me.PeerName)) {
    let verdict: ReturnType<typeof claimStep> | undefined
    await update(api, (ann) => {
      verdict = claimStep(ann, dead.PeerName, me, live)
      return verdict.kind === 'claim' ? verdict.annotations : undefined
    })
    if (verdict?.kind === 'theirs') { deps.log(`peer ${dead.PeerName} (node ${dead.NodeName} gone) is being reclaimed by ${verdict.by}`); continue }
    if (verdict?.kind === 'done') continue
    deps.log(`reclaiming the address space of peer ${dead.PeerName} (node ${dead.NodeName} gone)`)
    await deps.rmpeer(dead.PeerName)
    await update(api, (ann) => finishStep(ann, dead.PeerName))
    done.push(dead.PeerName)
  }
  return done
}
