/**
 * Reclaiming a dead node's address space with exactly one survivor doing it (pure steps; the
 * driver in reclaimer.ts applies them to the `weave-net` ConfigMap with compare-and-swap).
 *
 * As Weave's kube-utils: the ConfigMap's annotation `kube-peers.weave.works/peers` lists every
 * router that ever ran here (`{"Peers":[{"PeerName","NodeName"}]}`). A peer whose node left the
 * node list is dead; a survivor takes a lock on it (an annotation naming itself), runs `weave
 * rmpeer` on its own router, then drops the peer and the lock. Every write carries the
 * ConfigMap's resourceVersion, so of two survivors racing for one lock exactly one write lands;
 * the loser re-reads and sees the lock taken. A lock whose holder's node is gone too is stale and
 * may be taken over (that survivor died mid-reclaim; rmpeer is safe to repeat).
 */
export type Annotations = Record<string, string>

export interface PeerRecord {
  PeerName: string
  NodeName: string
}

export const PEERS_KEY = 'kube-peers.weave.works/peers'
const LOCK_PREFIX = 'reclaim.kube-peers.weave.works/'

/** Annotation names allow no `:`; peer names are `aa:bb:cc:dd:ee:ff`. */
export function lockKey(peerName: string): string {
  return LOCK_PREFIX + peerName.replace(/[^A-Za-z0-9_.-]/g, '-')
}

export function readPeers(ann: Annotations): PeerRecord[] {
  const raw = ann[PEERS_KEY]
  if (!raw) return []
  try {
    const v = JSON.parse(raw) as { Peers?: unknown }
    if (!Array.isArray(v.Peers)) return []
    return (v.Peers as unknown[]).filter(isPeerRecord)
  } catch {
    return [] // an unreadable list is rebuilt as routers register again
  }
}

function isPeerRecord(p: unknown): p is PeerRecord {
  const r = p as Partial<PeerRecord> | null
  return typeof r?.PeerName === 'string' && typeof r.NodeName === 'string'
}

function writePeers(ann: Annotations, peers: PeerRecord[]): Annotations {
  return { ...ann, [PEERS_KEY]: JSON.stringify({ Peers: peers }) }
}

/** Our entry added (or its node name updated); undefined when the list already has it as it is. */
export function withSelf(ann: Annotations, me: PeerRecord): Annotations | undefined {
  const peers = readPeers(ann)
  const mine = peers.find((p) => p.PeerName === me.PeerName)
  if (mine && mine.NodeName === me.NodeName) return undefined
  return writePeers(ann, [...peers.filter((p) => p.PeerName !== me.PeerName), me])
}

/** Listed peers whose node is no longer in the node list (never ourselves). */
export function deadPeers(ann: Annotations, liveNodes: ReadonlySet<string>, myPeerName: string): PeerRecord[] {
  return readPeers(ann).filter((p) => p.PeerName !== myPeerName && !liveNodes.has(p.NodeName))
}

export type ClaimStep =
  /** Write these annotations (our lock) with the version we read; reclaim once it lands. */
  | { kind: 'claim'; annotations: Annotations }
  /** The lock is ours already (we died after taking it): reclaim. */
  | { kind: 'ours' }
  /** A live survivor holds it: leave it to them. */
  | { kind: 'theirs'; by: string }
  /** The peer is no longer listed (someone finished): nothing to do. */
  | { kind: 'done' }

export function claimStep(ann: Annotations, dead: string, me: PeerRecord, liveNodes: ReadonlySet<string>): ClaimStep {
  if (!readPeers(ann).some((p) => p.PeerName === dead)) return { kind: 'done' }
  const held = ann[lockKey(dead)]
  if (held) {
    let holder: PeerRecord | undefined
    try { holder = JSON.parse(held) as PeerRecord } catch { /* unreadable: stale */ }
    if (holder?.PeerName === me.PeerName) return { kind: 'ours' }
    if (holder && liveNodes.has(holder.NodeName)) return { kind: 'theirs', by: holder.PeerName }
  }
  return { kind: 'claim', annotations: { ...ann, [lockKey(dead)]: JSON.stringify(me) } }
}

/** After rmpeer succeeded: the peer leaves the list and its lock goes. */
export function finishStep(ann: Annotations, dead: string): Annotations {
  const out = writePeers(ann, readPeers(ann).filter((p) => p.PeerName !== dead))
  delete out[lockKey(dead)]
  return out
}
