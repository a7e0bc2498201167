/**
 * Path-MTU probing per connection. The sleeve's UDP socket sets DF and asks the kernel for each
 * peer's path MTU, but a path that drops big datagrams silently teaches the kernel nothing, so
 * once a path is established we also probe it: DF probes of the sizes PmtuSearch (sleeve-pmtu)
 * chooses, acked with `pmtu` over the mesh connection; the sleeve uses the smaller figure.
 */
import { HEADER_BYTES, UNDERLAY_HEADER_BYTES, encodeProbe } from './sleeve-frame'
import { PMTU_PROBE_TIMEOUT_MS } from './sleeve-pmtu'
import { SEAL_OVERHEAD_BYTES } from './sleeve-crypto'
import type { Live, OverlayCore } from './sleeve-overlay-core'

/** Path-MTU search steps: half a probe timeout, so a lost probe is retried about on time. */
const PROBE_STEP_MS = PMTU_PROBE_TIMEOUT_MS / 2

/**
 * One step of a connection's path-MTU search (on an established path only: heartbeats must get
 * through for an unanswered probe to mean "too big"); tells the sleeve when its figure changes.
 */
export function probe(c: OverlayCore, l: Live, now: number): void {
  const sleeve = c.sleeve
  const kernel = sleeve?.kernelPathMtu?.(l.shortId)
  if (kernel === undefined || c.live.get(l.link.peer) !== l) return
  if (l.link.state(now) === 'established') {
    const size = l.pmtu.tick(kernel, now)
    // the probe's IP packet is `size` bytes: its plaintext is that less IP/UDP and sealing
    const plain = size === undefined ? 0 : size - UNDERLAY_HEADER_BYTES - (l.cipherSet ? SEAL_OVERHEAD_BYTES : 0)
    if (plain >= HEADER_BYTES) sleeve!.sendControl(l.shortId, encodeProbe({ src: c.mesh!.identity.shortId(), dst: l.shortId }, plain))
  }
  const use = l.pmtu.usable()
  if (use !== l.pmtuTold) {
    l.pmtuTold = use
    sleeve!.setProbedMtu?.(l.shortId, use)
  }
  if (l.pmtu.searching && !c.cancelProbeTimer) c.cancelProbeTimer = c.deps.clock.setTimer(PROBE_STEP_MS, () => probeTick(c))
}

/** The peer got our probe of `size` bytes (plaintext datagram): try the next candidate at once. */
export function onProbeAck(c: OverlayCore, l: Live, size: number): void {
  const now = c.deps.clock.now()
  l.pmtu.onAck(size + UNDERLAY_HEADER_BYTES + (l.cipherSet ? SEAL_OVERHEAD_BYTES : 0), now)
  probe(c, l, now)
}

/** While any search runs: its retries and timeouts, faster than the heartbeat tick. */
function probeTick(c: OverlayCore): void {
  c.cancelProbeTimer = undefined
  const now = c.deps.clock.now()
  for (const l of c.live.values()) if (l.pmtu.searching) probe(c, l, now)
}
