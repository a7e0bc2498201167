/**
 * Who the router connects to, from the API server's node list (pure): every node's InternalIP
 * addresses except this node's own, and the cluster size IPAM's consensus waits for.
 */

/** The part of a Kubernetes Node this add-on reads (GET /api/v1/nodes → items[]). */
export interface KubeNode {
  metadata: { name: string }
  status?: { addresses?: Array<{ type: string; address: string }> }
}

export interface PeerPlan {
  /** InternalIPs of the other nodes, sorted, each once: the router's launch peers. */
  peers: string[]
  /**
   * `--ipalloc-init consensus=N`: the nodes in the list, this one included (Weave's peer_count),
   * so IPAM waits until that many routers agree before handing out the first address.
   */
  consensus: number
  /** This node's own InternalIPs (what "minus self" took out). */
  self: string[]
}

export function internalIps(node: KubeNode): string[] {
  return (node.status?.addresses ?? []).filter((a) => a.type === 'InternalIP' && a.address).map((a) => a.address)
}

/**
 * `selfName` is this node's name (the pod's spec.nodeName). An address of ours that also appears
 * on another node (a misconfigured list) is still left out: a router never dials itself.
 */
export function planPeers(nodes: KubeNode[], selfName: string): PeerPlan {
  const me = nodes.find((n) => n.metadata.name === selfName)
  if (!me) throw new Error(`node ${selfName} is not in the API server's node list`)
  const self = internalIps(me)
  const peers = [...new Set(nodes.filter((n) => n !== me).flatMap(internalIps))].filter((ip) => !self.includes(ip)).sort()
  return { peers, consensus: nodes.length, self }
}

/** Router launch arguments for a plan (peers are positional, as in `weave launch PEER...`). */
export function launchArgs(plan: PeerPlan, extra: string[] = []): string[] {
  return ['--ipalloc-init', `consensus=${plan.consensus}`, ...extra, ...plan.peers]
}
