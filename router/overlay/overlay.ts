/**
 * The seam between the overlay switch and the ways a peer's frames can travel: an `Overlay` is
 * one data path on this host (OVS fastdp, the kernel's vxlan on the weave bridge, the sleeve);
 * `connect(peer)` gives its per-peer connection, which the switch starts, asks for health, turns
 * forwarding on or off, and stops. The switch picks one overlay per peer and falls back to the
 * sleeve (router/overlay/overlay-switch.ts); `NullOverlay` lets a router run with no fast path.
 *
 * Fast overlays (OVS fastdp, kernel vxlan) prove a path with heartbeats through their own tunnel
 * (fastdp-health): `heartbeats()` is how they send and receive them; the switch runs the clock.
 */
import type { OverlayPeerHello } from './sleeve-overlay'
import type { TunnelHeartbeats } from './tunnel-heartbeats'

/** A peer as the overlay switch knows it (from its hello over the mesh connection). */
export interface OverlayPeer {
  shortId: number
  /** Its name (for logs and status). */
  peer: string
  /** Its underlay IPv4 address (where its tunnel ends). */
  ip: string
  /** Our address as that peer sees us (outer source of our tunnel frames), when known. */
  localIp?: string
}

/** One peer's traffic on a fast path (inner Ethernet frames, as the sleeve counts its own). */
export interface FastPeerTraffic { peer: string; txBytes: number; txPackets: number; rxBytes: number; rxPackets: number }

export type OverlayHealth = { ok: true } | { ok: false; why: string }

/** One peer on one overlay. */
export interface OverlayConnection {
  /** Make what the peer needs (tunnel ends, heartbeats), without carrying its traffic yet. */
  start(): Promise<void>
  /** Whether its path works now (heartbeats both ways), else why not. */
  health(now: number): OverlayHealth
  /** Carry the peer's traffic (`true`) or give it back to the fallback (`false`). */
  forward(on: boolean): Promise<void>
  /** Remove everything made for the peer. */
  stop(): Promise<void>
  /** One word or two for `weave status connections` (`fastdp`, `fastdp vxlan`). */
  status(): string
}

/** One data path on this host. */
export interface Overlay {
  /** As status shows it: `fastdp` (OVS), `fastdp vxlan` (the kernel's vxlan), `sleeve`, `none`. */
  readonly name: string
  /** What our hellos name our fast path (`vxlan`); none: OVS fastdp (what older peers assume). */
  readonly kind?: string
  /** undefined when it can carry peers here, else why not (host-neutral: peers see it in our hello). */
  unavailable(): string | undefined
  /** Make the host side (after the bridge exists); on failure unavailable() says why. */
  start(self: number): Promise<void>
  connect(peer: OverlayPeer): OverlayConnection
  /** Remove what start() made that must not outlive the daemon. */
  stop(): Promise<void>
  /** Heartbeats through this overlay's tunnel (fast overlays only). */
  heartbeats?(): TunnelHeartbeats | undefined
  /** A MAC behind our own bridge (a container attached through the API). */
  learnLocal?(mac: string): void
  /**
   * Every topology change: the next hop to each peer (relays where it is not the peer itself), and
   * the neighbours we pass other peers' broadcasts on to (child → the sources whose trees say so).
   */
  syncRoutes?(hop: ReadonlyMap<number, number>, neighbours: ReadonlySet<number>, names: ReadonlyMap<number, string>,
    broadcastTo?: ReadonlyMap<number, readonly number[]>): void
  /** Relayed peers the overlay carries (for status). */
  relayed?(): number
  /**
   * A middle host's handoff: frames of sleeve peers for neighbour `hop`, which this overlay
   * reaches, tunnelled with key src → dst. Returns how many went.
   */
  relayFrames?(hop: number, src: number, dst: number, frames: readonly Uint8Array[]): number
  /**
   * Inner frames and their bytes exchanged with each connected peer over this path, as the
   * kernel or the datapath counts them (read now: a process or a dump per call, so at scrape
   * time only). Counters start at 0 when the peer's do (connect), and go with it.
   */
  traffic?(): Promise<FastPeerTraffic[]>
  /** `weave status`'s line for it. */
  statusLine(): string
  /** `weave report`'s part for it. */
  report(): Record<string, unknown>
}

/** No fast path: every peer stays on the sleeve, and status says why. */
export class NullOverlay implements Overlay {
  readonly name = 'none'
  constructor(private why: string = 'no fast datapath') {}
  unavailable(): string { return this.why }
  /** A new reason (e.g. `stopped`). */
  setWhy(why: string): void { this.why = why }
  async start(): Promise<void> {}
  connect(): OverlayConnection {
    const why = this.why
    return {
      start: async () => {},
      health: () => ({ ok: false, why }),
      forward: async (on) => { if (on) throw new Error(`no fast datapath: ${why}`) },
      stop: async () => {},
      status: () => 'none',
    }
  }
  async stop(): Promise<void> {}
  statusLine(): string { return `off: ${this.why}` }
  report(): Record<string, unknown> { return { Unavailable: this.why } }
}

/** The overlay switch's choice for one peer: the fast overlay when both ends are ready, else sleeve and why. */
export function chooseOverlay(
  here: { ready: boolean; why?: string; encrypt?: boolean; kind?: string },
  h: Pick<OverlayPeerHello, 'ip' | 'fastdp'> & { esp?: unknown; dp?: string; trusted?: boolean },
): { via: 'fastdp' | 'sleeve'; why?: string } {
  if (!here.ready) return { via: 'sleeve', why: `here: ${here.why ?? 'no fastdp'}` }
  if (h.fastdp === undefined) return { via: 'sleeve', why: 'peer without fastdp' }
  if (h.fastdp !== true) return { via: 'sleeve', why: `on the peer: ${h.fastdp}` }
  // OVS and the kernel's vxlan tunnel with different keys: each only decapsulates its own
  const ours = here.kind ?? 'ovs', theirs = h.dp ?? 'ovs'
  if (ours !== theirs) return { via: 'sleeve', why: `the peer's fast path is ${kindName(theirs)}, ours ${kindName(ours)}` }
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(h.ip)) return { via: 'sleeve', why: `peer address ${h.ip} is not IPv4` }
  // With a password the tunnel must be encrypted: an offer without ESP keys is a peer that
  // would send vxlan in clear (older version, or it lost ESP since its fastdp offer).
  // Mutually trusted peers (`--trusted-subnets`) need no ESP: Weave sends their data in clear.
  if (here.encrypt && h.esp === undefined && h.trusted !== true) return { via: 'sleeve', why: 'the peer offers fastdp without ESP encryption' }
  return { via: 'fastdp' }
}

const kindName = (k: string): string => k === 'ovs' ? 'OVS fastdp' : k === 'vxlan' ? 'kernel vxlan' : k
