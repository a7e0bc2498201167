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
 */
import { MacTable, macAt, isGroupMac } from './mac-table'
import { MIN_FRAME_BYTES } from './sleeve-frame'

/** What the forwarder needs from the mesh's routing. */
export interface Routes {
  /** The neighbour to send to for `dst`, or undefined when it is unreachable now. */
  unicastNextHop(dst: number): number | undefined
  /** Neighbours a broadcast that originated at `src` goes to from here (its spanning tree). */
  broadcastNextHops(src: number): readonly number[]
}

export type ForwardEffect =
  /** Carry `frames` to neighbour `hop` in datagrams with header (src, dst). */
  | { kind: 'send'; hop: number; src: number; dst: number; frames: Uint8Array[] }
  /** Put `frames` onto our bridge. */
  | { kind: 'inject'; frames: Uint8Array[] }

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
  readonly sends = new Map<number, Extract<ForwardEffect, { kind: 'send' }>>()
  readonly inject: Uint8Array[] = []
  readonly drops: Partial<Record<DropReason, number>> = {}
  readonly moved: number[] = []

  send(hop: number, src: number, dst: number, frame: Uint8Array): void {
    const key = (hop * 4096 + src) * 4096 + dst
    let e = this.sends.get(key)
    if (!e) { e = { kind: 'send', hop, src, dst, frames: [] }; this.sends.set(key, e) }
    e.frames.push(frame)
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
      if (hop === undefined) b.drop('no-route', frames.length)
      else for (const f of frames) b.send(hop, src, dst, f)
      return b.result()
    }
    for (const f of frames) {
      if (f.length < MIN_FRAME_BYTES) { b.drop('runt'); continue }
      const srcMac = macAt(f, 6)
      if (this.macs.learnRemote(srcMac, src) === 'moved') b.moved.push(srcMac)
      b.inject.push(f)
      const dstMac = macAt(f, 0)
      if (isGroupMac(dstMac) || this.macs.lookup(dstMac) !== this.self) this.flood(b, src, f)
    }
    return b.result()
  }

  /** Copies of `f` along `origin`'s broadcast tree, each addressed to its next hop. */
  private flood(b: Batch, origin: number, f: Uint8Array): void {
    for (const hop of this.routes.broadcastNextHops(origin)) if (hop !== this.self && hop !== origin) b.send(hop, origin, hop, f)
  }
}
