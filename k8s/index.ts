/**
 * Public door of k8s/: the Kubernetes add-on's start-up (the DaemonSet container runs main.ts;
 * the manifest is weave-daemonset.yaml). Pure parts (peers, node condition, reclaim steps) are
 * separate from the edges (api.ts: the REST calls; reclaimer.ts: compare-and-swap on the ConfigMap).
 */
export { KubeApi, KubeApiError, inClusterConfig, type KubeApiConfig, type ConfigMapState } from './api'
export { planPeers, launchArgs, internalIps, type KubeNode, type PeerPlan } from './peers'
export { networkReadyPatch, STRATEGIC_MERGE } from './node-condition'
export { PEERS_KEY, lockKey, readPeers, withSelf, deadPeers, claimStep, finishStep, type Annotations, type PeerRecord, type ClaimStep } from './reclaim'
export { reclaimDeadPeers, registerSelf, CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, type ReclaimDeps } from './reclaimer'
export { startUp, type StartupDeps, type StartupResult } from './startup'
