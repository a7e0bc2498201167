/**
 * The sleeve forwarding decision, per batch of frames. Pure: it reads and updates its MAC
 * table and asks the mesh's routes, and returns effects (send these frames to that peer,
 * inject those into our bridge) that the driver carries out. No sockets, no timers.
 *
 * Peers are data-plane short IDs, as on the wire. Rules (as Weave's router, see
 * Weave 2.8 router's forwarding rules (docs/architecture.md, "The data flow of a frame")):
 *  - captured from our bridge: learn the source MAC as ours (drop the frame if another peer
 *    owns it); drop STP and frames for MACs behind our own bridge (the bridge delivered them);
 *    a known remote destination goes to the unicast next hop towards its owner; anything else
 *    (broadcast, multicast, unknown unicast) goes along our broadcast tree, each copy addressed
 *    to the next hop itself.
 *  - received from a peer: not addressed to us → relay unchanged towards its destination;
 *    addressed to us → learn source MAC → sender (always wins), inject into our bridge, and
 *    unless the destination MAC is ours continue it along the sender's broadcast tree.
 *  - on a middle host whose next hop is reached by the datapath (fastdp) rather than the sleeve:
 *    relayed frames and flood copies from a sleeve peer go to the datapath (a `datapath` effect,
 *    with the same header), which tunnels them with their own key.
 *  - handed to us by the datapath for a sleeve-reached hop (`fromDatapath`): relayed frames of
 *    another peer, never our own: their source MACs are learnt as that peer's, and they go to the
 *    owner of their destination MAC with the original sender kept.
 */
import { MacTable, macAt, isGroupMac } from './mac-table'
import { MIN_FRAME_BYTES } from './sleeve-frame'

/** What the forwarder needs from the mesh's routing. */
export interface Routes {
  /** The neighbour to send to for `dst`, or undefined when it is unreachable now. */
  unicastNextHop(dst: number): number | undefined
  /** Neighbours a broadcast that originated at `src` goes to from here (its spanning tree). */
  broadcastNextHops(src: number): readonly number[]
  /** The next hop for `dst` when the datapath, not the sleeve, reaches it (undefined otherwise). */
  datapathNextHop?(dst: number): number | undefined
  /** The neighbours of `src`'s broadcast tree that the datapath reaches. */
  broadcastDatapathHops?(src: number): readonly number[]
}

export type ForwardEffect =
  /** Carry `frames` to neighbour `hop` in datagrams with header (src, dst). */
  | { kind: 'send'; hop: number; src: number; dst: number; frames: Uint8Array[] }
  /** Put `frames` onto our bridge. */
  | { kind: 'inject'; frames: Uint8Array[] }
  /** Hand `frames` to the datapath for neighbour `hop` (tunnel key src → dst). */
  | { kind: 'datapath'; hop: number; src: number; dst: number; frames: Uint8Array[] }

export type DropReason = 'runt' | 'stp' | 'mac-conflict' | 'local-destination' | 'no-route' | 'own-source'

export interface ForwardResult {
  effects: ForwardEffect[]
  /** Frames dropped, by reason (absent = none). */
  drops: Partial<Record<DropReason, number>>
  /** MACs whose owner changed in this batch: cached forwarding state for them is stale. */
  moved: number[]
}

/** IEEE 802.1D bridge group address (STP BPDUs): never crosses the overlay. */
const STP_MAC = 0x0180c2000000

/** Collects effects for one batch, one `send` per (hop, src, dst) in first-use order. */
class Batch {
  readonly sends = new Map<number, Extract<ForwardEffect, { kind: 'send' | 'datapath' }>>()
  readonly inject: Uint8Array[] = []
  readonly drops: Partial<Record<DropReason, number>> = {}
  readonly moved: number[] = []

  send(hop: number, src: number, dst: number, frame: Uint8Array, kind: 'send' | 'datapath' = 'send'): void {
    const key = ((kind === 'send' ? 0 : 4096) + hop) * 4096 * 4096 + src * 4096 + dst
    const e = this.sends.get(key)
    if (e) { e.frames.push(frame); return }
    this.sends.set(key, { kind, hop, src, dst, frames: [frame] })
  }
  drop(reason: DropReason, n = 1): void { this.drops[reason] = (this.drops[reason] ?? 0) + n }
  result(): ForwardResult {
    const effects: ForwardEffect[] = []
    if (this.inject.length) effects.push({ kind: 'inject', frames: this.inject })
    for (const s of this.sends.values()) effects.push(s)
    return { effects, drops: this.drops, moved: this.moved }
  }
}

export class Forwarder {
  constructor(
    readonly self: number,
    readonly macs: MacTable<number>,
    private readonly routes: Routes,
  ) {
    if (macs.self !== self) throw new Error('the MAC table must belong to the same peer as the forwarder')
  }

  /** Frames captured from our bridge. */
  fromBridge(frames: readonly Uint8Array[]): ForwardResult {
    const b = new Batch()
    for (const f of frames) {
      if (f.length < MIN_FRAME_BYTES) { b.drop('runt'); continue }
      const dstMac = macAt(f, 0)
      if (dstMac === STP_MAC) { b.drop('stp'); continue }
      if (this.macs.learnLocal(macAt(f, 6)) === 'conflict') { b.drop('mac-conflict'); continue }
      const owner = isGroupMac(dstMac) ? undefined : this.macs.lookup(dstMac)
      if (owner === this.self) { b.drop('local-destination'); continue }
      if (owner === undefined) { this.flood(b, this.self, f); continue }
      const hop = this.routes.unicastNextHop(owner)
      if (hop === undefined) b.drop('no-route')
      else b.send(hop, this.self, owner, f)
    }
    return b.result()
  }

  /** Frames of one datagram from a neighbour, with the datagram's header. */
  fromPeer(src: number, dst: number, frames: readonly Uint8Array[]): ForwardResult {
    const b = new Batch()
    if (src === this.self) { b.drop('own-source', frames.length); return b.result() }
    if (dst !== this.self) {
      // Relay: the frames are not ours to learn from or deliver.
      const hop = this.routes.unicastNextHop(dst)
      const dp = hop === undefined ? this.routes.datapathNextHop?.(dst) : undefined
      if (hop !== undefined) for (const f of frames) b.send(hop, src, dst, f)
      else if (dp !== undefined) for (const f of frames) b.send(dp, src, dst, f, 'datapath')
      else b.drop('no-route', frames.length)
      return b.result()
    }
    for (const f of frames) {
      if (f.length < MIN_FRAME_BYTES) { b.drop('runt'); continue }
      const srcMac = macAt(f, 6)
      if (this.macs.learnRemote(srcMac, src) === 'moved') b.moved.push(srcMac)
      b.inject.push(f)
      const dstMac = macAt(f, 0)
      if (isGroupMac(dstMac) || this.macs.lookup(dstMac) !== this.self) {
        this.flood(b, src, f)
        // the rest of src's tree that the datapath reaches (it floods only what it captured)
        for (const hop of this.routes.broadcastDatapathHops?.(src) ?? []) if (hop !== this.self && hop !== src) b.send(hop, src, hop, f, 'datapath')
      }
    }
    return b.result()
  }

  /**
   * Frames the datapath hands us for a sleeve-reached hop, relayed from peer `src` (a fastdp
   * neighbour, or beyond): not ours, so nothing is learnt as local; they go to the owner of their
   * destination MAC (the datapath's relay had one in mind), or along `src`'s broadcast tree.
   */
  fromDatapath(src: number, frames: readonly Uint8Array[]): ForwardResult {
    const b = new Batch()
    if (src === this.self) { b.drop('own-source', frames.length); return b.result() }
    for (const f of frames) {
      if (f.length < MIN_FRAME_BYTES) { b.drop('runt'); continue }
      if (this.macs.learnRemote(macAt(f, 6), src) === 'moved') b.moved.push(macAt(f, 6))
      const dstMac = macAt(f, 0)
      const owner = isGroupMac(dstMac) ? undefined : this.macs.lookup(dstMac)
      if (owner === this.self) { b.drop('local-destination'); continue }
      if (owner === undefined) { this.flood(b, src, f); continue }
      const hop = this.routes.unicastNextHop(owner)
      if (hop === undefined) b.drop('no-route')
      else b.send(hop, src, owner, f)
    }
    return b.result()
  }

  /** Copies of `f` along `origin`'s broadcast tree, each addressed to its next hop. */
  private flood(b: Batch, origin: number, f: Uint8Array): void {
    for (const hop of this.routes.broadcastNextHops(origin)) if (hop !== this.self && hop !== origin) b.send(hop, origin, hop, f)
  }
}
