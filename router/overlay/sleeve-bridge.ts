/**
 * The sleeve's bridge side: frames captured on the router port (vethwe-pcap, read with a
 * virtio_net_hdr so a container's TSO segment arrives whole) go through the forwarder and out
 * by UDP in one batch; frames for local containers are put back on the bridge (inject).
 *
 *   bridge readable → readBatch → Forwarder.fromBridge → pack + encode (+ seal) → one sendBatch
 *
 * Captured frames are views into the socket's receive buffer, valid until the next read, so each
 * batch is fully encoded before the next read.
 */
import type { OutDatagram } from '../native'
import { RELAY_TAG_TPID } from './fastdp-flows'
import { BATCHES_PER_WAKEUP, type SleeveCore, type SleeveStats } from './sleeve-core'
import type { SleeveTransmit } from './sleeve-transmit'

export class SleeveBridge {
  private readonly stats: SleeveStats

  constructor(private readonly core: SleeveCore, private readonly tx: SleeveTransmit) {
    this.stats = core.stats
  }

  /** The packet socket is readable: forward what it holds, a few batches at most. */
  onReadable(): void {
    const core = this.core
    for (let i = 0; i < BATCHES_PER_WAKEUP && core.pkt; i++) {
      const pkt = core.pkt
      const truncatedBefore = pkt.truncated
      const frames = pkt.readBatch()
      this.stats.truncated += pkt.truncated - truncatedBefore
      if (!frames.length) return
      this.stats.captured += frames.length
      core.gso.clear()
      if (pkt.vnet) for (const f of frames) { const g = pkt.gsoHeader(f); if (g) core.gso.set(f, g) }
      const { local, relayed } = splitRelayTagged(frames)
      const results = [core.forwarder.fromBridge(local)]
      for (const [src, fs] of relayed) { this.stats.fromDatapath += fs.length; results.push(core.forwarder.fromDatapath(src, fs)) }
      const out: OutDatagram[] = []
      const replies: Uint8Array[] = []
      for (const r of results) {
        for (const [k, n] of Object.entries(r.drops)) core.drop(k, n)
        for (const e of r.effects) {
          if (e.kind === 'send') this.tx.encode(e, out, replies)
          else if (e.kind === 'datapath') this.tx.handToDatapath(e)
        }
      }
      core.gso.clear()
      this.tx.send(out)
      this.inject(replies)
    }
  }

  /** Puts frames on the bridge; `gso`: their virtio_net_hdrs (super-frames), where any has one. */
  inject(frames: Uint8Array[], gso?: Array<Uint8Array | undefined>): void {
    const pkt = this.core.pkt
    if (!frames.length || !pkt) return
    const marks = gso
    if (marks && !pkt.vnet) {
      // cannot hand super-frames to this kernel socket: drop them, keep the rest
      const keep = frames.filter((_, i) => !marks[i])
      this.core.drop('super-frame-unsupported', frames.length - keep.length)
      frames = keep
      gso = undefined
    }
    const w = pkt.writeBatch(frames, gso)
    this.stats.injected += w.sent
    if (w.sent < frames.length) this.core.drop('inject-failed', frames.length - w.sent)
  }
}

/**
 * Frames on the router port carrying the datapath's relay tag (an 802.1ad tag whose VLAN ID is
 * the original sender's short ID; see fastdp-flows) are relayed frames, not captured ones: they
 * are taken apart from the rest, untagged, by sender.
 */
export function splitRelayTagged(frames: readonly Uint8Array[]): { local: Uint8Array[]; relayed: Map<number, Uint8Array[]> } {
  const relayed = new Map<number, Uint8Array[]>()
  let local: Uint8Array[] | undefined
  for (let i = 0; i < frames.length; i++) {
    const f = frames[i]
    if (f.length < 18 || ((f[12] << 8) | f[13]) !== RELAY_TAG_TPID) { local?.push(f); continue }
    local ??= frames.slice(0, i)
    const src = ((f[14] << 8) | f[15]) & 0xfff
    const untagged = new Uint8Array(f.length - 4)
    untagged.set(f.subarray(0, 12))
    untagged.set(f.subarray(16), 12)
    const xs = relayed.get(src) ?? []
    xs.push(untagged)
    relayed.set(src, xs)
  }
  return { local: local ?? (frames as Uint8Array[]), relayed }
}
