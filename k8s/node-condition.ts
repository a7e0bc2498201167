/**
 * The node condition a network add-on owns (pure): `NetworkUnavailable=False` once the router
 * answers, so the node controller lifts the node.kubernetes.io/network-unavailable taint.
 * Sent as a strategic merge patch of nodes/NAME/status: `conditions` merge by `type`, so the
 * kubelet's own conditions stay untouched.
 */
export const STRATEGIC_MERGE = 'application/strategic-merge-patch+json'

export function networkReadyPatch(nowIso: string): Record<string, unknown> {
  return {
    status: {
      conditions: [{
        type: 'NetworkUnavailable',
        status: 'False',
        reason: 'WeaveIsUp',
        message: 'Weave pod has set this',
        lastTransitionTime: nowIso,
        lastHeartbeatTime: nowIso,
      }],
    },
  }
}
