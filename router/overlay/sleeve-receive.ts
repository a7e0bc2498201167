/**
 * The sleeve's receiving side: datagrams from neighbours, read in batches, opened (when
 * encrypting) and decoded, go through the forwarder; what is for our bridge is injected in one
 * batch, what is for other peers is relayed in one sendBatch, control datagrams (heartbeats,
 * probes) go to the overlay-connection layer.
 *
 *   UDP readable → recvRaw → open/decode → Forwarder.fromPeer → one writeBatch (inject)
 *                                                              + one sendBatch (relay/flood)
 *
 * Received bytes are views into the socket's receive buffer, valid until the next read, so each
 * batch is fully handled (injected, relayed) before the next read. Pieces of a super-frame are
 * read in place, no objects per datagram: put back together (sleeve-reassembly), or, for a plain
 * one whose pieces all came in one read, injected straight from them (the kernel gathers it).
 */
import type { UdpSocket, OutDatagram } from '../native'
import { isGroupMac, macAt } from './mac-table'
import {
  decodeDatagram, GSO_HEADER_BYTES, HEADER_BYTES, Kind, MAX_PIECED_BYTES, MAX_SHORT_ID, MIN_FRAME_BYTES, PIECE_HEADER_BYTES, SLEEVE_VERSION,
  type DecodeResult, type SleeveDatagram,
} from './sleeve-frame'
import type { OpenResult, PieceOpener } from './sleeve-crypto'
import { BATCHES_PER_WAKEUP, type SleeveCore, type SleeveStats } from './sleeve-core'
import type { SleeveBridge } from './sleeve-bridge'
import type { SleevePeers } from './sleeve-peers'
import type { PieceReassembly } from './sleeve-reassembly'
import type { SleeveTransmit } from './sleeve-transmit'

/** What one batch of received datagrams produced. */
interface RxBatch { inject: Uint8Array[]; injectGso: Array<Uint8Array | undefined>; anyGso: boolean; out: OutDatagram[] }

export class SleeveReceive {
  private readonly stats: SleeveStats
  private readonly gso: Map<Uint8Array, Uint8Array>
  private readonly collectState = new Uint32Array(5)

  constructor(
    private readonly core: SleeveCore,
    private readonly peers: SleevePeers,
    private readonly rsm: PieceReassembly,
    private readonly tx: SleeveTransmit,
    private readonly bridge: SleeveBridge,
    /** Heartbeats and probes from neighbours, for the overlay-connection layer. */
    private readonly onControl: (from: number, datagram: SleeveDatagram) => void,
  ) {
    this.stats = core.stats
    this.gso = core.gso
  }

  /** The UDP socket is readable: handle what it holds, a few batches at most. */
  onReadable(): void {
    for (let i = 0; i < BATCHES_PER_WAKEUP && this.core.udp; i++) {
      const udp = this.core.udp
      const truncatedBefore = udp.truncated
      const n = udp.recvRaw()
      this.stats.truncated += udp.truncated - truncatedBefore
      if (!n) return
      const buf = udp.buffer
      const offs = udp.offsets
      const lens = udp.lengths
      const addrs = udp.sourceAddrs
      const ports = udp.sourcePorts
      const byNum = this.peers.byNum
      const b: RxBatch = { inject: [], injectGso: [], anyGso: false, out: [] }
      this.gso.clear()
      for (let k = 0; k < n; k++) {
        const len = lens[k]
        if (len <= 0) continue
        this.stats.datagramsReceived++
        const off = offs[k]
        const from = byNum.get(addrs[k] * 65536 + ports[k])
        if (from === undefined) { this.core.drop('unknown-sender'); continue }
        if (len > HEADER_BYTES + PIECE_HEADER_BYTES && buf[off + 1] === Kind.Piece) {
          // a whole plain super-frame for our bridge in this read: injected from its pieces
          const gathered = this.injectFromPieces(from, udp, k, n, b)
          if (gathered) { k += gathered - 1; continue }
          // the bulk of a super-frame: read the piece in place, no objects per datagram
          let whole = this.rsm.piece(from, buf, off, len)
          if (!whole && k + 1 < n) {
            // and the pieces right behind it, in one native call
            const took = this.rsm.collect(from, udp, k, n)
            if (took) {
              k += took
              this.stats.datagramsReceived += took
              whole = this.rsm.completed
            }
          }
          if (whole) this.onDatagram(from, whole, true, b, this.rsm.wholeOpened)
        } else this.onDatagram(from, buf.subarray(off, off + len), false, b)
      }
      this.gso.clear()
      this.bridge.inject(b.inject, b.anyGso ? b.injectGso : undefined)
      this.tx.send(b.out)
      this.rsm.batchDone()
    }
  }

  /**
   * One received datagram (or one put back together from pieces) from neighbour `from`;
   * `opened`: the pieces were decrypted on the way in, and this finishes opening it.
   */
  private onDatagram(from: number, data: Uint8Array, pieced: boolean, b: RxBatch, opened?: PieceOpener): void {
    const cipher = this.peers.byId.get(from)!.cipher
    const r: DecodeResult | OpenResult = opened ? opened.done(data) : cipher ? cipher.open(data) : decodeDatagram(data)
    if (!r.ok) { this.core.drop(`bad-datagram:${r.reason}`); return }
    const dg = r.datagram
    if (pieced && dg.kind !== 'super') { this.core.drop('bad-datagram:pieced-not-super'); return }
    if (dg.kind === 'sealed') { this.core.drop('unexpected-sealed'); return }
    if (dg.kind === 'piece') { this.core.drop('unexpected-piece'); return }
    let frames: Uint8Array[]
    if (dg.kind === 'super') {
      this.stats.superFramesReceived++
      this.gso.set(dg.frame, dg.gso)
      frames = [dg.frame]
    } else if (dg.kind !== 'frames') { this.onControl(from, dg); return }
    else frames = dg.frames
    if (dg.dst !== this.core.self) this.stats.relayed += frames.length
    const t = this.peers.count(from)
    t.rxFrames += frames.length
    for (const f of frames) t.rxBytes += f.length
    const fr = this.core.forwarder.fromPeer(dg.src, dg.dst, frames)
    for (const k in fr.drops) this.core.drop(k, fr.drops[k as keyof typeof fr.drops])
    for (const e of fr.effects) {
      if (e.kind === 'inject') {
        for (const f of e.frames) {
          const g = this.gso.get(f)
          if (g) b.anyGso = true
          b.inject.push(f)
          b.injectGso.push(g)
        }
      } else if (e.kind === 'datapath') this.tx.handToDatapath(e)
      else this.tx.encode(e, b.out, undefined)
    }
  }

  /**
   * The commonest case without a copy: entry k of the last read is the first piece of an
   * unsealed super-frame for a container on our bridge (a known unicast MAC here), and all its
   * pieces are in this read. Then the kernel gathers the frame from the pieces as it injects it
   * (PacketSocket.injectPieces), instead of our putting it together first. Returns how many
   * entries it took, or 0 to leave the pieces to the general path (relay, flood, sealed, a
   * super-frame spread over two reads, anything odd), which checks them fully.
   */
  private injectFromPieces(from: number, udp: UdpSocket, k: number, n: number, b: RxBatch): number {
    const pkt = this.core.pkt
    if (!pkt || !pkt.vnet || this.peers.byId.get(from)?.cipher || this.rsm.has(from)) return 0
    const buf = udp.buffer
    const off = udp.offsets[k]
    const len = udp.lengths[k]
    if (buf[off] !== SLEEVE_VERSION || buf[off + 6] !== 0 || buf[off + 7] !== 0) return 0
    const p = off + HEADER_BYTES
    const id = buf.readUInt32BE(p)
    const total = buf.readUInt32BE(p + 4)
    const first = len - HEADER_BYTES - PIECE_HEADER_BYTES
    const skip = HEADER_BYTES + GSO_HEADER_BYTES
    if (buf.readUInt32BE(p + 8) !== 0 || total > MAX_PIECED_BYTES || first >= total || first < skip + MIN_FRAME_BYTES) return 0
    // the super datagram's own header, at the start of the first piece's data
    const q = p + PIECE_HEADER_BYTES
    if (buf[q] !== SLEEVE_VERSION || buf[q + 1] !== Kind.Super || buf[q + 6] !== 0 || buf[q + 7] !== 0) return 0
    const src = (buf[q + 2] << 8) | buf[q + 3]
    const dst = (buf[q + 4] << 8) | buf[q + 5]
    const self = this.core.self
    if (dst !== self || src === self || src > MAX_SHORT_ID) return 0
    const head = buf.subarray(q + skip, off + len) // the frame's start: its Ethernet header
    const dstMac = macAt(head, 0)
    if (isGroupMac(dstMac) || this.core.forwarder.macs.lookup(dstMac) !== self) return 0
    const st = this.collectState
    st[0] = udp.sourceAddrs[k]; st[1] = udp.sourcePorts[k]; st[2] = id; st[3] = total; st[4] = first
    const more = udp.countPieces(k + 1, n, st)
    if (st[4] !== total) return 0
    // learns the source MAC; for a local unicast destination the only effect is the inject
    const fr = this.core.forwarder.fromPeer(src, dst, [head])
    if (fr.effects.length !== 1 || fr.effects[0].kind !== 'inject' || fr.effects[0].frames.length !== 1) return 0
    // after the frames this read gave so far, to keep their order
    if (b.inject.length) {
      this.bridge.inject(b.inject, b.anyGso ? b.injectGso : undefined)
      b.inject = []; b.injectGso = []; b.anyGso = false
    }
    this.stats.datagramsReceived += more
    this.stats.superFramesReceived++
    this.stats.superFramesGathered++
    const t = this.peers.count(from)
    t.rxFrames++
    t.rxBytes += total - skip
    const r = pkt.injectPieces(udp, k, 1 + more, skip, buf.subarray(q + HEADER_BYTES, q + skip))
    if (r === 0) this.stats.injected++
    else this.core.drop('inject-failed')
    return 1 + more
  }
}
