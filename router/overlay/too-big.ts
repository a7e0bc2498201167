/**
 * What sleeve does with a frame too big for the path to its next hop (pure functions):
 *  - IPv4 with DF set: answer the sender with ICMP "fragmentation needed" (type 3 code 4,
 *    RFC 1191 §4) carrying the MTU that fits, injected back into our bridge, so the sender's
 *    path-MTU discovery shrinks its packets;
 *  - IPv4 without DF: cut it into IP fragments that fit (RFC 791), each sent on its own;
 *  - anything else: dropped (counted by the caller).
 */

const ETH_HEADER = 14
const ETHERTYPE_IPV4 = 0x0800
const IP_DF = 0x4000
const IP_MF = 0x2000
const PROTO_ICMP = 1
/** ICMP error types never answered with another error (RFC 1812 §4.3.2.7). */
const ICMP_ERRORS = new Set([3, 4, 5, 11, 12])

export type TooBigAction =
  | { kind: 'icmp'; reply: Uint8Array }
  | { kind: 'fragments'; frames: Uint8Array[] }
  | { kind: 'drop'; reason: 'not-ipv4' | 'ip-options' | 'icmp-error' | 'bad-header' | 'mtu-too-small' }

/** Internet checksum (RFC 1071) of buf[start, end). */
export function ipChecksum(buf: Uint8Array, start: number, end: number): number {
  let sum = 0
  for (let i = start; i + 1 < end; i += 2) sum += (buf[i] << 8) | buf[i + 1]
  if ((end - start) % 2) sum += buf[end - 1] << 8
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  return ~sum & 0xffff
}

function u16(b: Uint8Array, at: number): number { return (b[at] << 8) | b[at + 1] }
function put16(b: Uint8Array, at: number, v: number): void { b[at] = (v >>> 8) & 255; b[at + 1] = v & 255 }

/**
 * Decides what to do with `frame`, which is larger than `maxFrameBytes` (the biggest Ethernet
 * frame the path carries in one datagram).
 */
export function handleTooBig(frame: Uint8Array, maxFrameBytes: number): TooBigAction {
  if (frame.length < ETH_HEADER + 20 || u16(frame, 12) !== ETHERTYPE_IPV4) return { kind: 'drop', reason: 'not-ipv4' }
  const ihl = (frame[ETH_HEADER] & 0x0f) * 4
  if (frame[ETH_HEADER] >> 4 !== 4 || ihl < 20) return { kind: 'drop', reason: 'bad-header' }
  const totalLen = u16(frame, ETH_HEADER + 2)
  if (totalLen < ihl || ETH_HEADER + totalLen > frame.length) return { kind: 'drop', reason: 'bad-header' }
  const flags = u16(frame, ETH_HEADER + 6)
  const mtu = maxFrameBytes - ETH_HEADER
  if (flags & IP_DF) {
    if (frame[ETH_HEADER + 9] === PROTO_ICMP && ICMP_ERRORS.has(frame[ETH_HEADER + ihl])) return { kind: 'drop', reason: 'icmp-error' }
    return { kind: 'icmp', reply: fragNeeded(frame, ihl, mtu) }
  }
  if (ihl !== 20) return { kind: 'drop', reason: 'ip-options' }
  if (mtu < 28) return { kind: 'drop', reason: 'mtu-too-small' }
  return { kind: 'fragments', frames: fragment(frame, totalLen, mtu) }
}

/** ICMP 3/4 from the packet's destination back to its source, with the next-hop MTU. */
function fragNeeded(frame: Uint8Array, ihl: number, mtu: number): Uint8Array {
  const quoted = Math.min(ihl + 8, u16(frame, ETH_HEADER + 2)) // original IP header + 8 bytes (RFC 792)
  const out = new Uint8Array(ETH_HEADER + 20 + 8 + quoted)
  out.set(frame.subarray(6, 12), 0) // to the sender's MAC
  out.set(frame.subarray(0, 6), 6) // from the MAC it was sent to
  put16(out, 12, ETHERTYPE_IPV4)
  const ip = ETH_HEADER
  out[ip] = 0x45
  put16(out, ip + 2, 20 + 8 + quoted)
  put16(out, ip + 6, IP_DF)
  out[ip + 8] = 64
  out[ip + 9] = PROTO_ICMP
  out.set(frame.subarray(ETH_HEADER + 16, ETH_HEADER + 20), ip + 12) // src = original destination
  out.set(frame.subarray(ETH_HEADER + 12, ETH_HEADER + 16), ip + 16) // dst = original source
  put16(out, ip + 10, ipChecksum(out, ip, ip + 20))
  const icmp = ip + 20
  out[icmp] = 3
  out[icmp + 1] = 4
  put16(out, icmp + 6, mtu) // next-hop MTU (RFC 1191 §4)
  out.set(frame.subarray(ETH_HEADER, ETH_HEADER + quoted), icmp + 8)
  put16(out, icmp + 2, ipChecksum(out, icmp, out.length))
  return out
}

/** RFC 791 fragmentation of an option-less IPv4 packet into frames of at most mtu + 14 bytes. */
function fragment(frame: Uint8Array, totalLen: number, mtu: number): Uint8Array[] {
  const payload = frame.subarray(ETH_HEADER + 20, ETH_HEADER + totalLen)
  const origFlags = u16(frame, ETH_HEADER + 6)
  const origOffset = (origFlags & 0x1fff) * 8 // the packet may itself be a fragment
  const per = Math.floor((mtu - 20) / 8) * 8
  const out: Uint8Array[] = []
  for (let at = 0; at < payload.length; at += per) {
    const piece = payload.subarray(at, Math.min(at + per, payload.length))
    const last = at + per >= payload.length
    const f = new Uint8Array(ETH_HEADER + 20 + piece.length)
    f.set(frame.subarray(0, ETH_HEADER + 20))
    put16(f, ETH_HEADER + 2, 20 + piece.length)
    const mf = !last || origFlags & IP_MF ? IP_MF : 0
    put16(f, ETH_HEADER + 6, mf | ((origOffset + at) / 8))
    put16(f, ETH_HEADER + 10, 0)
    put16(f, ETH_HEADER + 10, ipChecksum(f, ETH_HEADER, ETH_HEADER + 20))
    f.set(piece, ETH_HEADER + 20)
    out.push(f)
  }
  return out
}
