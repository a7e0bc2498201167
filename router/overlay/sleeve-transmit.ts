/**
 * The sleeve's sending side: what the forwarder decided to send to a neighbour becomes datagrams
 * for its UDP address (frames packed per path MTU, sealed when encrypting), collected in one
 * batch and sent with one sendBatch; a GSO super-frame leaves at once as a run of piece
 * datagrams (one UDP GSO send), straight from the captured frame when plain. Frames for a
 * neighbour the datapath reaches are handed to it instead (a middle host between sleeve and
 * fastdp). Frames too big for the path are fragmented or answered with ICMP (too-big.ts).
 */
import type { OutDatagram } from '../native'
import type { ForwardEffect } from './forwarder'
import {
  encodeFrames, encodeSuper, writeHeader, packFrames, GSO_HEADER_BYTES, Kind, UNDERLAY_HEADER_BYTES, HEADER_BYTES, PER_FRAME_BYTES,
  PIECE_HEADER_BYTES, MAX_PIECED_BYTES,
} from './sleeve-frame'
import { handleTooBig } from './too-big'
import { segmentTcp4 } from './tcp-segment'
import { SEAL_OVERHEAD_BYTES } from './sleeve-crypto'
import type { SleeveCore, SleeveStats } from './sleeve-core'
import type { SleevePeer, SleevePeers } from './sleeve-peers'

type SendEffect = Extract<ForwardEffect, { kind: 'send' }>

/**
 * A middle host's handoff to its datapath (SleeveDeps.toDatapath): frames to be tunnelled to
 * `hop` with key src → dst; returns how many left.
 */
export type ToDatapath = (hop: number, src: number, dst: number, frames: readonly Uint8Array[]) => number

export class SleeveTransmit {
  private readonly stats: SleeveStats
  private readonly gso: Map<Uint8Array, Uint8Array>
  private nextPieceId = 1
  private sealBuf: Buffer | undefined
  private readonly pieceHead = new Uint8Array(HEADER_BYTES)
  private readonly superHead = new Uint8Array(HEADER_BYTES + GSO_HEADER_BYTES)

  constructor(private readonly core: SleeveCore, private readonly peers: SleevePeers, private readonly toDatapath: ToDatapath | undefined) {
    this.stats = core.stats
    this.gso = core.gso
  }

  /** Sends a control datagram (heartbeat, probe; plaintext form) to neighbour `id`. */
  sendControl(id: number, plain: Uint8Array): boolean {
    const peer = this.peers.byId.get(id)
    const udp = this.core.udp
    if (!peer || !udp) return false
    const data = peer.cipher ? peer.cipher.seal(plain) : plain
    const r = udp.sendBatch([{ addr: peer.addr, port: peer.port, data }])
    return r.sent === 1
  }

  /**
   * Packs one send effect into datagrams for its hop (copying the frames out of the receive
   * buffers). Frames too big for the path: IPv4 without DF is fragmented; with DF, a frame
   * captured here (`replies` given) is answered with ICMP fragmentation-needed, to be injected;
   * a relayed one is dropped (its sender is not on our bridge).
   */
  encode(e: SendEffect, out: OutDatagram[], replies: Uint8Array[] | undefined): void {
    const peer = this.peers.byId.get(e.hop)
    if (!peer) { this.core.drop('no-peer-address', e.frames.length); return }
    const t = this.peers.count(e.hop)
    t.txFrames += e.frames.length
    for (const f of e.frames) t.txBytes += f.length
    const maxBytes = this.peers.mtuOf(e.hop, peer) - UNDERLAY_HEADER_BYTES - (peer.cipher ? SEAL_OVERHEAD_BYTES : 0)
    let frames = e.frames
    if (this.gso.size) {
      frames = []
      for (const f of e.frames) {
        const g = this.gso.get(f)
        if (!g) { frames.push(f); continue }
        // a super-frame: as pieces, after the plain frames gathered so far (order kept)
        if (frames.length) { this.encodePlain(e, peer, frames, maxBytes, out, replies); frames = [] }
        if (!this.sendSuper(e, peer, f, g, out)) continue
        this.stats.superFramesSent++
        this.stats.framesSent++
      }
    }
    if (frames.length) this.encodePlain(e, peer, frames, maxBytes, out, replies)
  }

  /** Sends what encode() collected, in one batch. */
  send(out: OutDatagram[]): void {
    const udp = this.core.udp
    if (!out.length || !udp) return
    const r = udp.sendBatch(out)
    this.stats.datagramsSent += r.sent
    for (const e of r.errors) {
      this.core.drop(`send-error:${e.code}`)
      if (e.code === 'EMSGSIZE') this.peers.relearnMtu(out[e.index].addr, out[e.index].port)
    }
    if (r.notSent) this.core.drop('send-buffer-full', r.notSent)
  }

  /**
   * Frames for a neighbour the datapath reaches: tunnelled by it, frame by frame, so a TCP
   * super-frame (GSO) is cut into segments here first, as a NIC would; other super-frames drop.
   */
  handToDatapath(e: Extract<ForwardEffect, { kind: 'datapath' }>): void {
    const frames: Uint8Array[] = []
    for (const f of e.frames) {
      const g = this.gso.get(f)
      if (!g) { frames.push(f); continue }
      const r = segmentTcp4(f, g)
      if (r.ok) frames.push(...r.frames)
      else this.core.drop(`super-frame-to-datapath:${r.reason}`)
    }
    if (!frames.length) return
    const sent = this.toDatapath ? this.toDatapath(e.hop, e.src, e.dst, frames) : 0
    this.stats.toDatapath += sent
    if (sent < frames.length) this.core.drop(this.toDatapath ? 'datapath-handoff-failed' : 'no-datapath', frames.length - sent)
  }

  /**
   * Sends super-frame `f` (GSO header `g`) to `peer` as pieces, right away (after what `out`
   * holds, to keep order): the kernel gathers them from the frame itself, no copy here unless
   * sealing. False (counted) when it could not leave whole.
   */
  private sendSuper(e: SendEffect, peer: SleevePeer, f: Uint8Array, g: Uint8Array, out: OutDatagram[]): boolean {
    const udp = this.core.udp
    if (!udp) return false
    if (out.length) { this.send(out); out.length = 0 }
    const h = { src: e.src, dst: e.dst }
    const id = this.nextPieceId++ >>> 0
    const room = this.peers.mtuOf(e.hop, peer) - UNDERLAY_HEADER_BYTES - HEADER_BYTES - PIECE_HEADER_BYTES
    let r: 0 | string // 'full', or why not
    try {
      writeHeader(this.pieceHead, Kind.Piece, h, 0)
      writeHeader(this.superHead, Kind.Super, h, 0)
      this.superHead.set(g.subarray(0, GSO_HEADER_BYTES), HEADER_BYTES)
      const c = peer.cipher
      if (c) {
        const sealed = c.sealParts
          ? c.sealParts(this.superHead, [this.superHead.subarray(HEADER_BYTES), f], this.sealScratch())
          : c.seal(encodeSuper(h, f, g))
        r = udp.sendPieces(peer.addr, peer.port, this.pieceHead, id, [sealed], room)
      } else {
        r = udp.sendPieces(peer.addr, peer.port, this.pieceHead, id, [this.superHead, f], room)
      }
    } catch {
      this.core.drop('super-frame-unsendable')
      return false
    }
    if (r === 0) { this.stats.datagramsSent++; return true }
    if (r === 'full') this.core.drop('send-buffer-full')
    else {
      this.core.drop(`send-error:${r}`)
      if (r === 'EMSGSIZE') this.peers.relearnMtu(peer.addr, peer.port)
    }
    return false
  }

  /** Where super-frames are sealed: sendPieces hands them to the kernel (which copies) at once. */
  private sealScratch(): Buffer {
    return (this.sealBuf ??= Buffer.allocUnsafe(MAX_PIECED_BYTES))
  }

  private encodePlain(e: SendEffect, peer: SleevePeer, frames: Uint8Array[], maxBytes: number,
    out: OutDatagram[], replies: Uint8Array[] | undefined): void {
    const packed = packFrames(frames, maxBytes)
    let groups = packed.groups
    const tooBig = packed.tooBig
    if (tooBig.length) {
      const pieces: Uint8Array[] = []
      for (const f of tooBig) {
        const a = handleTooBig(f, maxBytes - HEADER_BYTES - PER_FRAME_BYTES)
        if (a.kind === 'fragments') { pieces.push(...a.frames); this.stats.fragmented++ }
        else if (a.kind === 'icmp' && replies) { replies.push(a.reply); this.stats.icmpSent++ }
        else this.core.drop(`too-big:${a.kind === 'drop' ? a.reason : 'relayed-df'}`)
      }
      if (pieces.length) groups = groups.concat(packFrames(pieces, maxBytes).groups)
    }
    for (const g of groups) {
      const plain = encodeFrames({ src: e.src, dst: e.dst }, g)
      out.push({ addr: peer.addr, port: peer.port, data: peer.cipher ? peer.cipher.seal(plain) : plain })
      this.stats.framesSent += g.length
    }
  }
}
