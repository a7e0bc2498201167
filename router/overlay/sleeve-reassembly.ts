/**
 * Putting super-frames back together from their piece datagrams, one per sending neighbour.
 * Pieces come in order (one UDP GSO run from one sender); from an encrypting peer, natively,
 * each piece is decrypted into place as it arrives (no separate copy), and the whole is
 * authenticated once complete. Reassembly buffers (64 KiB and more each) are pooled: one handed
 * out in a batch goes back to the pool once the batch is sent (batchDone).
 */
import type { UdpSocket } from '../native'
import { HEADER_BYTES, MAX_PIECED_BYTES, MAX_SHORT_ID, PIECE_HEADER_BYTES, SLEEVE_VERSION } from './sleeve-frame'
import type { PieceOpener } from './sleeve-crypto'
import type { SleeveCore } from './sleeve-core'
import type { SleevePeers } from './sleeve-peers'

/**
 * A super-frame being put back together from its pieces (one per sending peer); with `open`
 * (an encrypting peer, natively) each piece is decrypted into place as it arrives.
 */
interface Reassembly { id: number; total: number; got: number; buf: Buffer; open: PieceOpener | undefined }
/** Reassembly buffers kept for reuse. */
const POOLED_BUFFERS = 16

export class PieceReassembly {
  private readonly reassembly = new Map<number, Reassembly>()
  /** Reassembly buffers (MAX_PIECED_BYTES each): free, and handed out in the current batch. */
  private readonly freeBufs: Buffer[] = []
  private readonly doneBufs: Buffer[] = []
  private readonly collectState = new Uint32Array(5)
  /** The datagram collect() just completed, if it did. */
  completed: Uint8Array | undefined
  /** How the datagram piece/collect just completed was opened on the way in, if it was. */
  wholeOpened: PieceOpener | undefined

  constructor(private readonly core: SleeveCore, private readonly peers: SleevePeers) {}

  /** Whether a datagram from neighbour `from` is being put together. */
  has(from: number): boolean {
    return this.reassembly.has(from)
  }

  /** Drops what neighbour `from` had half sent (it is gone). */
  forget(from: number): void {
    this.reassembly.delete(from)
  }

  clear(): void {
    this.reassembly.clear()
  }

  /**
   * A piece datagram at buf[off, off + len) from neighbour `from` (unsealed: the datagram it
   * rebuilds is sealed when encrypting): checked and added; the whole datagram once complete.
   */
  piece(from: number, buf: Buffer, off: number, len: number): Uint8Array | undefined {
    if (buf[off] !== SLEEVE_VERSION || buf[off + 6] !== 0 || buf[off + 7] !== 0) { this.core.drop('bad-datagram:bad-piece'); return undefined }
    const src = (buf[off + 2] << 8) | buf[off + 3]
    const dst = (buf[off + 4] << 8) | buf[off + 5]
    if (src > MAX_SHORT_ID || dst > MAX_SHORT_ID) { this.core.drop('bad-datagram:bad-short-id'); return undefined }
    const p = off + HEADER_BYTES
    const id = buf.readUInt32BE(p)
    const total = buf.readUInt32BE(p + 4)
    const at = buf.readUInt32BE(p + 8)
    const dataLen = len - HEADER_BYTES - PIECE_HEADER_BYTES
    if (total < HEADER_BYTES || total > MAX_PIECED_BYTES || at + dataLen > total) { this.core.drop('bad-datagram:bad-piece'); return undefined }
    return this.reassemble(from, id, total, at, buf, p + PIECE_HEADER_BYTES, off + len)
  }

  /**
   * After piece() took entry k of the last read from `udp` (n entries): the pieces right behind
   * it that continue the same datagram, in one native call. Returns how many entries it took;
   * `completed` is the whole datagram when they finished it.
   */
  collect(from: number, udp: UdpSocket, k: number, n: number): number {
    this.completed = undefined
    const r = this.reassembly.get(from)
    if (!r) return 0
    const st = this.collectState
    st[0] = udp.sourceAddrs[k]; st[1] = udp.sourcePorts[k]; st[2] = r.id; st[3] = r.total; st[4] = r.got
    const took = udp.collectPieces(k + 1, n, st, r.buf, r.open)
    if (!took) return 0
    r.got = st[4]
    if (r.got === r.total) {
      this.reassembly.delete(from)
      this.doneBufs.push(r.buf)
      this.completed = r.buf.subarray(0, r.total)
      this.wholeOpened = r.open
    }
    return took
  }

  /** The kernel has copied what it took: rebuilt datagrams' buffers can be reused. */
  batchDone(): void {
    for (const x of this.doneBufs) if (this.freeBufs.length < POOLED_BUFFERS) this.freeBufs.push(x)
    this.doneBufs.length = 0
  }

  /**
   * Adds a piece from neighbour `from` to the datagram it is part of; returns the whole datagram
   * once its last piece is in. Pieces come in order (one GSO run from one sender): a gap or a new
   * id abandons the datagram being built (lost on the way; TCP resends what it carried).
   */
  private reassemble(from: number, id: number, total: number, offset: number, src: Buffer, start: number, end: number): Uint8Array | undefined {
    let r = this.reassembly.get(from)
    if (r && (r.id !== id || r.got !== offset || r.total !== total)) {
      this.core.drop('pieces-incomplete')
      this.reassembly.delete(from)
      if (this.freeBufs.length < POOLED_BUFFERS) this.freeBufs.push(r.buf)
      r = undefined
    }
    if (!r) {
      if (offset !== 0) { this.core.drop('piece-out-of-order'); return undefined }
      r = { id, total, got: 0, buf: this.freeBufs.pop() ?? Buffer.allocUnsafe(MAX_PIECED_BYTES), open: this.peers.byId.get(from)?.cipher?.pieces }
      this.reassembly.set(from, r)
    }
    if (!r.open) src.copy(r.buf, r.got, start, end)
    else if (!r.open.piece(r.buf, src.subarray(start, end), r.got, r.total)) {
      this.core.drop('pieces-incomplete')
      this.reassembly.delete(from)
      if (this.freeBufs.length < POOLED_BUFFERS) this.freeBufs.push(r.buf)
      return undefined
    }
    r.got += end - start
    this.wholeOpened = r.open
    if (r.got < r.total) return undefined
    this.reassembly.delete(from)
    this.doneBufs.push(r.buf)
    return r.buf.subarray(0, r.total)
  }
}
