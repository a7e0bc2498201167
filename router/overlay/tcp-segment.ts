/**
 * Software TCP segmentation of a GSO super-frame (pure): what a NIC does with a TSO send. Needed
 * where a super-frame must leave as ordinary frames and no kernel is on the way to cut it, e.g.
 * a middle host handing a sleeve peer's TCP to its datapath (one OpenFlow packet-out per frame).
 *
 * Input: an Ethernet frame carrying one IPv4 TCP packet longer than the MTU, and its 10-byte
 * virtio_net_hdr (little-endian: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset).
 * Each segment gets the headers with its own IP total length, IP ID (+1 per segment, as Linux),
 * IP checksum, TCP sequence number and checksum; FIN and PSH only on the last, CWR only on the
 * first (RFC 3168 §6.1.2). Anything else (IPv6, UDP, options we cannot place) is refused.
 */
import { ipChecksum } from './too-big'

const ETH = 14
const GSO_TCPV4 = 1
const TCP_FIN = 0x01, TCP_PSH = 0x08, TCP_CWR = 0x80

export type SegmentResult = { ok: true; frames: Uint8Array[] } | { ok: false; reason: 'not-tcpv4' | 'bad-header' }

export function segmentTcp4(frame: Uint8Array, gso: Uint8Array): SegmentResult {
  const gsoType = gso[1] & 0x7f
  const gsoSize = gso[4] | (gso[5] << 8)
  if (gsoType !== GSO_TCPV4 || frame.length < ETH + 40 || ((frame[12] << 8) | frame[13]) !== 0x0800) return { ok: false, reason: 'not-tcpv4' }
  const ihl = (frame[ETH] & 0x0f) * 4
  if (frame[ETH] >> 4 !== 4 || ihl < 20 || frame[ETH + 9] !== 6) return { ok: false, reason: 'not-tcpv4' }
  const tcp = ETH + ihl
  const doff = (frame[tcp + 12] >> 4) * 4
  const hdr = tcp + doff
  const totalLen = (frame[ETH + 2] << 8) | frame[ETH + 3]
  // a super-frame's IP total length may be 0 or stale: the frame's own length counts
  const end = totalLen >= ihl + doff && ETH + totalLen <= frame.length && totalLen > 0 ? ETH + totalLen : frame.length
  if (doff < 20 || hdr > end || gsoSize <= 0) return { ok: false, reason: 'bad-header' }
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.length)
  const seq0 = dv.getUint32(tcp + 4)
  const id0 = dv.getUint16(ETH + 4)
  const flags = frame[tcp + 13]
  const frames: Uint8Array[] = []
  for (let at = hdr, i = 0; at < end || i === 0; at += gsoSize, i++) {
    const len = Math.min(gsoSize, end - at)
    const f = new Uint8Array(hdr + len)
    f.set(frame.subarray(0, hdr))
    f.set(frame.subarray(at, at + len), hdr)
    const v = new DataView(f.buffer)
    const last = at + gsoSize >= end
    v.setUint16(ETH + 2, ihl + doff + len)
    v.setUint16(ETH + 4, (id0 + i) & 0xffff)
    v.setUint16(ETH + 10, 0)
    v.setUint16(ETH + 10, ipChecksum(f, ETH, ETH + ihl))
    v.setUint32(tcp + 4, (seq0 + (at - hdr)) >>> 0)
    f[tcp + 13] = flags & ~((last ? 0 : TCP_FIN | TCP_PSH) | (i === 0 ? 0 : TCP_CWR))
    v.setUint16(tcp + 16, 0)
    v.setUint16(tcp + 16, tcpChecksum(f, ETH, tcp, f.length))
    frames.push(f)
    if (len <= 0) break
  }
  return { ok: true, frames }
}

/** TCP checksum over the IPv4 pseudo-header (RFC 793 §3.1) and buf[tcp, end). */
function tcpChecksum(buf: Uint8Array, ip: number, tcp: number, end: number): number {
  let sum = 0
  for (let i = ip + 12; i < ip + 20; i += 2) sum += (buf[i] << 8) | buf[i + 1]
  sum += 6 + (end - tcp)
  for (let i = tcp; i + 1 < end; i += 2) sum += (buf[i] << 8) | buf[i + 1]
  if ((end - tcp) % 2) sum += buf[end - 1] << 8
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  return ~sum & 0xffff
}
