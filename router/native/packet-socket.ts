/** Packet sockets (AF_PACKET): whole Ethernet frames in and out of one interface. */
import { addon, type Addon, type Handle } from './addon'
import { BatchSocket, type SendResult, type SocketOptions } from './batch-socket'
import { errnoName } from './errno'
import type { UdpSocket } from './udp-socket'

/** Bytes of the virtio_net_hdr in front of each frame on a `vnetHdr` packet socket. */
export const VNET_HDR_BYTES = 10
const FLAG_VNET = 8

export interface PacketSocketOptions extends SocketOptions {
  /**
   * Read and write frames with a virtio_net_hdr (PACKET_VNET_HDR) when the kernel allows: GSO
   * super-frames (TSO from a container, up to 64 KiB) then arrive whole, with `gsoHeader(frame)`
   * telling how the kernel would cut them, and writeBatch can put such super-frames back for the
   * kernel to segment. Frames whose checksum was left to offload are completed on receipt.
   * Give slots of 64 KiB + a little (a super-frame plus its header). Default off.
   */
  vnetHdr?: boolean
  /** Only frames of this ethertype (e.g. heartbeats on a tunnel device); default every frame. */
  ethertype?: number
}

/** An AF_PACKET socket bound to one interface: whole Ethernet frames in and out. */
export class PacketSocket extends BatchSocket {
  /** Whether frames carry a virtio_net_hdr (PacketSocketOptions.vnetHdr, granted by the kernel). */
  readonly vnet: boolean
  private vnetOut = new Uint8Array(64 * VNET_HDR_BYTES)

  private constructor(a: Addon, h: Handle, readonly ifname: string, opts: SocketOptions) {
    super(a, h, opts, 1)
    this.vnet = (a.features(h) & FLAG_VNET) !== 0
  }

  /** Opens and binds; throws an Error with an errno `code` (ENODEV, EPERM...) on failure. */
  static open(ifname: string, opts: PacketSocketOptions = {}): PacketSocket {
    const a = addon()
    const h = a.packetOpen(ifname, opts.netns ?? null, opts.bufferBytes ?? 8 << 20, opts.vnetHdr ? FLAG_VNET : 0, opts.ethertype ?? 0)
    return new PacketSocket(a, h, ifname, opts)
  }

  /**
   * For a frame of the last readBatch on a `vnet` socket: its 10-byte virtio_net_hdr (a view)
   * when it is a GSO super-frame (gso_type ≠ 0), else undefined. Layout (host byte order):
   * u8 flags (1 = needs checksum), u8 gso_type (1 TCPv4, 3 UDP, 4 TCPv6, 5 UDP L4, | 0x80 ECN),
   * u16 hdr_len, u16 gso_size, u16 csum_start, u16 csum_offset.
   */
  gsoHeader(frame: Uint8Array): Uint8Array | undefined {
    if (!this.vnet || frame.buffer !== this.rbuf.buffer) return undefined
    const at = frame.byteOffset - VNET_HDR_BYTES
    if (at < this.rbuf.byteOffset) return undefined
    const hdr = new Uint8Array(frame.buffer, at, VNET_HDR_BYTES)
    return hdr[1] !== 0 ? hdr : undefined
  }

  /**
   * Up to `batch` frames received on the interface (never ones we sent); [] when none wait.
   * The frames are views valid until the next readBatch.
   */
  readBatch(): Buffer[] {
    this.assertOpen()
    const n = this.a.recvBatch(this.h, this.rbuf, this.slot, this.max, this.offs, this.lens, null, null)
    const out: Buffer[] = []
    for (let i = 0; i < n; i++) {
      const len = this.lens[i]
      if (len > 0) out.push(this.rbuf.subarray(this.offs[i], this.offs[i] + len))
      else if (len < 0) this.truncated++
    }
    return out
  }

  /**
   * Sends one frame gathered from received UDP entries `start`..`start + count - 1` of `from`'s
   * last read: each entry's bytes past its 20-byte piece header (the first also past `skip`
   * more), behind the virtio_net_hdr `vnet` — a super-frame injected straight from its pieces,
   * never put together in userspace. `vnet` sockets only. 0 when sent, else an errno code
   * ('EAGAIN': buffer full).
   */
  injectPieces(from: UdpSocket, start: number, count: number, skip: number, vnet: Uint8Array): 0 | string {
    this.assertOpen()
    if (!this.vnet || !this.a.injectPieces) return 'ENOTSUP'
    const r = this.a.injectPieces(this.h, from.buffer, from.offsets, from.lengths, start, count, skip, vnet)
    return r === 0 ? 0 : errnoName(r)
  }

  /**
   * Transmits the frames on the interface, in order, without copying them. On a `vnet` socket,
   * `gso[i]` (a 10-byte virtio_net_hdr, see gsoHeader) makes frame i a super-frame the kernel
   * segments (or passes on whole where the next device takes GSO); other frames go as they are.
   */
  writeBatch(frames: readonly Uint8Array[], gso?: ReadonlyArray<Uint8Array | undefined>): SendResult {
    if (!gso || !this.vnet) return this.sendRaw(frames, null, null)
    const need = frames.length * VNET_HDR_BYTES
    if (this.vnetOut.length < need) this.vnetOut = new Uint8Array(need)
    const v = this.vnetOut
    v.fill(0, 0, need)
    for (let i = 0; i < frames.length; i++) { const g = gso[i]; if (g) v.set(g.subarray(0, VNET_HDR_BYTES), i * VNET_HDR_BYTES) }
    return this.sendRaw(frames, null, null, v)
  }
}

/** Opens a packet socket on `ifname` (see PacketSocket.open). */
export function openPacketSocket(ifname: string, opts: PacketSocketOptions = {}): PacketSocket {
  return PacketSocket.open(ifname, opts)
}
