/**
 * Sleeve datagrams: the UDP payload peers exchange on port 6783. Pure encode/decode; decoding
 * takes untrusted bytes and returns a reason instead of throwing.
 *
 * Wire format (integers big-endian):
 *
 *   0  u8   version (1)
 *   1  u8   kind: bits 0-6 = 0 frames | 1 heartbeat | 2 probe | 3 piece | 4 super; bit 7 = sealed (encrypted body)
 *   2  u16  source peer short ID (12 bits, top 4 bits zero)
 *   4  u16  destination peer short ID (the final destination, not the next hop)
 *   6  u16  frame count (frames; 0 for the other kinds)
 *   8  body
 *        frames:    count × (u16 length ≥ 14, then that many bytes of Ethernet frame)
 *        heartbeat: u64 connection UID (proves which mesh connection the sender means)
 *        probe:     any bytes; the datagram's size is what is being tested (path MTU)
 *        super:     10 bytes virtio_net_hdr (little-endian: flags, gso_type, hdr_len, gso_size,
 *                   csum_start, csum_offset), then one GSO super-frame (a container's TSO
 *                   segment, up to 64 KiB) that the receiving kernel cuts into MTU-sized frames.
 *                   Such a datagram (sealed as a whole when encrypting: one AEAD per 64 KiB)
 *                   is larger than the path, so it travels as pieces:
 *        piece:     u32 id, u32 total length, u32 offset, then bytes [offset, offset + n) of an
 *                   oversized sleeve datagram (total ≤ 128 KiB). Never sealed itself (the
 *                   datagram it carries is); consecutive pieces are equal-sized but the last, so
 *                   one UDP GSO send moves them all. Put back together, the datagram is decoded
 *                   (or opened) like any other: one frame per 64 KiB through both routers
 *                   instead of one per MTU.
 *        sealed:    opaque; the crypto layer opens it into the plaintext body above
 *
 * Why this shape: the 8-byte header is fixed, so it can be authenticated as associated data
 * when the body is sealed; destination = final peer lets an intermediate relay a datagram as
 * is; per-frame lengths let one datagram carry a batch of frames (2 bytes overhead each).
 */

export const SLEEVE_VERSION = 1
export const HEADER_BYTES = 8
/** Bytes each frame adds besides itself. */
export const PER_FRAME_BYTES = 2
/** An Ethernet header: the shortest frame worth carrying. */
export const MIN_FRAME_BYTES = 14
/** Largest IPv4 UDP payload. */
export const MAX_DATAGRAM_BYTES = 65_507
/** IPv4 + UDP header bytes in front of every datagram on the underlay. */
export const UNDERLAY_HEADER_BYTES = 28
export const MAX_SHORT_ID = 0xfff

export const Kind = { Frames: 0, Heartbeat: 1, Probe: 2, Piece: 3, Super: 4 } as const
/** Bytes of a piece body before its data. */
export const PIECE_HEADER_BYTES = 12
/** virtio_net_hdr bytes carried with a super-frame. */
export const GSO_HEADER_BYTES = 10
/** Largest super-frame accepted (64 KiB IP packet + Ethernet and VLAN headers, with room). */
export const MAX_SUPER_FRAME_BYTES = 0x1ff00
/** Largest datagram carried as pieces (a super-frame datagram, sealed). */
export const MAX_PIECED_BYTES = 0x20000
export type Kind = (typeof Kind)[keyof typeof Kind]
const SEALED = 0x80

/** Sender and final destination, as data-plane short IDs. */
export interface SleeveHeader {
  src: number
  dst: number
}

export type SleeveDatagram =
  | { kind: 'frames'; src: number; dst: number; frames: Uint8Array[] }
  | { kind: 'heartbeat'; src: number; dst: number; connUid: bigint }
  | { kind: 'probe'; src: number; dst: number; size: number }
  /** Part of an oversized datagram: its bytes [offset, offset + data.length) of `total`. */
  | { kind: 'piece'; src: number; dst: number; id: number; total: number; offset: number; data: Uint8Array }
  /** A GSO super-frame with its virtio_net_hdr (`gso`, 10 bytes). */
  | { kind: 'super'; src: number; dst: number; gso: Uint8Array; frame: Uint8Array }
  /** Encrypted: `header` is the 8 bytes to authenticate, `body` what to open, `inner` the kind inside. */
  | { kind: 'sealed'; src: number; dst: number; inner: 'frames' | 'heartbeat' | 'probe' | 'piece' | 'super'; count: number; header: Uint8Array; body: Uint8Array }

export type DecodeFailure = 'truncated' | 'bad-version' | 'bad-kind' | 'bad-short-id' | 'runt-frame'
  | 'too-large' | 'trailing-bytes' | 'bad-count' | 'bad-piece'

export type DecodeResult = { ok: true; datagram: SleeveDatagram } | { ok: false; reason: DecodeFailure }

const kindNames = ['frames', 'heartbeat', 'probe', 'piece', 'super'] as const

function checkShortId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > MAX_SHORT_ID) throw new RangeError(`short ID out of range: ${id}`)
}

/** Writes the 8-byte header at `out[0..8)`. */
export function writeHeader(out: Uint8Array, kind: Kind, h: SleeveHeader, count: number, sealed = false): void {
  checkShortId(h.src)
  checkShortId(h.dst)
  out[0] = SLEEVE_VERSION
  out[1] = kind | (sealed ? SEALED : 0)
  out[2] = h.src >>> 8; out[3] = h.src & 255
  out[4] = h.dst >>> 8; out[5] = h.dst & 255
  out[6] = count >>> 8; out[7] = count & 255
}

/** Bytes a frames datagram carrying `frames` takes. */
export function framesDatagramBytes(frames: readonly Uint8Array[]): number {
  let n = HEADER_BYTES
  for (const f of frames) n += PER_FRAME_BYTES + f.length
  return n
}

/** The body of a frames datagram (what gets sealed when encrypting): length-prefixed frames. */
export function encodeFrameList(frames: readonly Uint8Array[], out?: Uint8Array, offset = 0): Uint8Array {
  let size = 0
  for (const f of frames) {
    if (f.length < MIN_FRAME_BYTES || f.length > 0xffff) throw new RangeError(`frame of ${f.length} bytes cannot be carried`)
    size += PER_FRAME_BYTES + f.length
  }
  const buf = out ?? new Uint8Array(size)
  let p = offset
  for (const f of frames) {
    buf[p] = f.length >>> 8; buf[p + 1] = f.length & 255
    buf.set(f, p + 2)
    p += PER_FRAME_BYTES + f.length
  }
  return out ? buf.subarray(offset, p) : buf
}

/**
 * A datagram carrying `frames` (in order) from `h.src` to `h.dst`.
 * Throws on misuse (bad short ID, runt frame, more than fits a datagram): callers pack first.
 */
export function encodeFrames(h: SleeveHeader, frames: readonly Uint8Array[]): Uint8Array {
  const size = framesDatagramBytes(frames)
  if (size > MAX_DATAGRAM_BYTES) throw new RangeError(`${frames.length} frames need ${size} bytes, more than a datagram holds`)
  const out = new Uint8Array(size)
  writeHeader(out, Kind.Frames, h, frames.length)
  encodeFrameList(frames, out, HEADER_BYTES)
  return out
}

export function encodeHeartbeat(h: SleeveHeader, connUid: bigint): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + 8)
  writeHeader(out, Kind.Heartbeat, h, 0)
  new DataView(out.buffer).setBigUint64(HEADER_BYTES, BigInt.asUintN(64, connUid))
  return out
}

/** A probe datagram of exactly `size` bytes (≥ header), for path-MTU tests. */
export function encodeProbe(h: SleeveHeader, size: number): Uint8Array {
  if (size < HEADER_BYTES || size > MAX_DATAGRAM_BYTES) throw new RangeError(`probe size ${size}`)
  const out = new Uint8Array(size)
  writeHeader(out, Kind.Probe, h, 0)
  return out
}

/** A super datagram: GSO super-frame `frame` behind its 10-byte virtio_net_hdr `gso`. */
export function encodeSuper(h: SleeveHeader, frame: Uint8Array, gso: Uint8Array): Uint8Array {
  if (frame.length < MIN_FRAME_BYTES || frame.length > MAX_SUPER_FRAME_BYTES) throw new RangeError(`super-frame of ${frame.length} bytes`)
  const out = allocBytes(HEADER_BYTES + GSO_HEADER_BYTES + frame.length)
  writeHeader(out, Kind.Super, h, 0)
  out.set(gso.subarray(0, GSO_HEADER_BYTES), HEADER_BYTES)
  out.set(frame, HEADER_BYTES + GSO_HEADER_BYTES)
  return out
}

/**
 * Cuts `datagram` (an encoded, possibly sealed, sleeve datagram too big for the path) into
 * pieces of at most `maxDatagramBytes`, laid back to back in one buffer: every piece is
 * `segment` bytes but the last, which may be shorter — the shape one UDP GSO send takes
 * (OutDatagram.segment). `h` names the sender and final destination; `id` tells the datagrams
 * of one sender apart.
 */
export function encodePieces(h: SleeveHeader, id: number, datagram: Uint8Array, maxDatagramBytes: number): { data: Uint8Array; segment: number; count: number } {
  const room = Math.min(maxDatagramBytes, MAX_DATAGRAM_BYTES) - HEADER_BYTES - PIECE_HEADER_BYTES
  if (room < 64) throw new RangeError(`datagrams of ${maxDatagramBytes} bytes are too small for pieces`)
  if (datagram.length > MAX_PIECED_BYTES) throw new RangeError(`datagram of ${datagram.length} bytes is too big even for pieces`)
  const n = Math.max(1, Math.ceil(datagram.length / room))
  const per = HEADER_BYTES + PIECE_HEADER_BYTES
  const buf = allocBytes(n * per + datagram.length)
  writeHeader(buf, Kind.Piece, h, 0)
  id >>>= 0
  let p = 0
  for (let i = 0, off = 0; i < n; i++, off += room) {
    const len = Math.min(room, datagram.length - off)
    if (i) buf.copyWithin(p, 0, HEADER_BYTES)
    p += HEADER_BYTES
    writeU32(buf, p, id); writeU32(buf, p + 4, datagram.length); writeU32(buf, p + 8, off)
    p += PIECE_HEADER_BYTES
    buf.set(len === datagram.length ? datagram : datagram.subarray(off, off + len), p)
    p += len
  }
  return { data: buf, segment: per + room, count: n }
}

/**
 * encodePieces(h, id, encodeSuper(h, frame, gso), max) without building the super datagram
 * first: one copy of the frame instead of two (the plaintext path).
 */
export function encodeSuperPieces(h: SleeveHeader, id: number, frame: Uint8Array, gso: Uint8Array, maxDatagramBytes: number): { data: Uint8Array; segment: number; count: number } {
  if (frame.length < MIN_FRAME_BYTES || frame.length > MAX_SUPER_FRAME_BYTES) throw new RangeError(`super-frame of ${frame.length} bytes`)
  const room = Math.min(maxDatagramBytes, MAX_DATAGRAM_BYTES) - HEADER_BYTES - PIECE_HEADER_BYTES
  const head = HEADER_BYTES + GSO_HEADER_BYTES
  if (room < 64) throw new RangeError(`datagrams of ${maxDatagramBytes} bytes are too small for pieces`)
  const total = head + frame.length
  const n = Math.ceil(total / room)
  const per = HEADER_BYTES + PIECE_HEADER_BYTES
  const buf = allocBytes(n * per + total)
  writeHeader(buf, Kind.Piece, h, 0)
  id >>>= 0
  let p = 0
  for (let i = 0, off = 0; i < n; i++, off += room) {
    const len = Math.min(room, total - off)
    if (i) buf.copyWithin(p, 0, HEADER_BYTES)
    p += HEADER_BYTES
    writeU32(buf, p, id); writeU32(buf, p + 4, total); writeU32(buf, p + 8, off)
    p += PIECE_HEADER_BYTES
    if (i === 0) {
      writeHeader(buf.subarray(p), Kind.Super, h, 0)
      buf.set(gso.subarray(0, GSO_HEADER_BYTES), p + HEADER_BYTES)
      buf.set(frame.subarray(0, len - head), p + head)
    } else {
      buf.set(frame.subarray(off - head, off - head + len), p)
    }
    p += len
  }
  return { data: buf, segment: per + room, count: n }
}

/** Uninitialised bytes where Node offers them (every byte is written before use). */
function allocBytes(n: number): Uint8Array {
  return typeof Buffer !== 'undefined' ? Buffer.allocUnsafe(n) : new Uint8Array(n)
}

function writeU32(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 24; b[at + 1] = (v >>> 16) & 255; b[at + 2] = (v >>> 8) & 255; b[at + 3] = v & 255
}
function readU32(b: Uint8Array, at: number): number {
  return ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0
}

/** Parses a frame list body of `count` frames; frames are views into `body`. */
export function decodeFrameList(body: Uint8Array, count: number): { ok: true; frames: Uint8Array[] } | { ok: false; reason: DecodeFailure } {
  const frames = new Array<Uint8Array>(count)
  let p = 0
  for (let i = 0; i < count; i++) {
    if (p + PER_FRAME_BYTES > body.length) return { ok: false, reason: 'truncated' }
    const len = (body[p] << 8) | body[p + 1]
    if (len < MIN_FRAME_BYTES) return { ok: false, reason: 'runt-frame' }
    p += PER_FRAME_BYTES
    if (p + len > body.length) return { ok: false, reason: 'truncated' }
    frames[i] = body.subarray(p, p + len)
    p += len
  }
  if (p !== body.length) return { ok: false, reason: 'trailing-bytes' }
  return { ok: true, frames }
}

/** Decodes one received datagram. Frames are views into `buf` (copy to keep them). */
export function decodeDatagram(buf: Uint8Array): DecodeResult {
  // only a super datagram (put back together from pieces) may exceed what UDP carries
  if (buf.length > MAX_DATAGRAM_BYTES && (buf.length > MAX_PIECED_BYTES || (buf[1] & ~SEALED) !== Kind.Super)) return { ok: false, reason: 'too-large' }
  if (buf.length < HEADER_BYTES) return { ok: false, reason: 'truncated' }
  if (buf[0] !== SLEEVE_VERSION) return { ok: false, reason: 'bad-version' }
  const sealed = (buf[1] & SEALED) !== 0
  const kind = kindNames[buf[1] & ~SEALED]
  if (kind === undefined) return { ok: false, reason: 'bad-kind' }
  const src = (buf[2] << 8) | buf[3]
  const dst = (buf[4] << 8) | buf[5]
  if (src > MAX_SHORT_ID || dst > MAX_SHORT_ID) return { ok: false, reason: 'bad-short-id' }
  const count = (buf[6] << 8) | buf[7]
  if (kind !== 'frames' && count !== 0) return { ok: false, reason: 'bad-count' }
  const body = buf.subarray(HEADER_BYTES)
  if (sealed) return { ok: true, datagram: { kind: 'sealed', src, dst, inner: kind, count, header: buf.subarray(0, HEADER_BYTES), body } }
  return decodeBody(kind, src, dst, count, body)
}

/** Decodes a plaintext body of the given kind (also used after opening a sealed one). */
export function decodeBody(kind: 'frames' | 'heartbeat' | 'probe' | 'piece' | 'super', src: number, dst: number, count: number, body: Uint8Array): DecodeResult {
  switch (kind) {
    case 'frames': {
      if (count === 0) return { ok: false, reason: 'bad-count' }
      const r = decodeFrameList(body, count)
      return r.ok ? { ok: true, datagram: { kind, src, dst, frames: r.frames } } : r
    }
    case 'heartbeat': {
      if (body.length < 8) return { ok: false, reason: 'truncated' }
      if (body.length > 8) return { ok: false, reason: 'trailing-bytes' }
      const connUid = new DataView(body.buffer, body.byteOffset, 8).getBigUint64(0)
      return { ok: true, datagram: { kind, src, dst, connUid } }
    }
    case 'probe':
      return { ok: true, datagram: { kind, src, dst, size: HEADER_BYTES + body.length } }
    case 'piece': {
      if (body.length <= PIECE_HEADER_BYTES) return { ok: false, reason: 'truncated' }
      const id = readU32(body, 0)
      const total = readU32(body, 4)
      const offset = readU32(body, 8)
      const data = body.subarray(PIECE_HEADER_BYTES)
      if (total < HEADER_BYTES || total > MAX_PIECED_BYTES || offset + data.length > total) return { ok: false, reason: 'bad-piece' }
      return { ok: true, datagram: { kind, src, dst, id, total, offset, data } }
    }
    case 'super': {
      if (body.length < GSO_HEADER_BYTES + MIN_FRAME_BYTES) return { ok: false, reason: 'truncated' }
      return { ok: true, datagram: { kind, src, dst, gso: body.subarray(0, GSO_HEADER_BYTES), frame: body.subarray(GSO_HEADER_BYTES) } }
    }
  }
}

/**
 * Splits `frames` (each ≥ MIN_FRAME_BYTES) into datagram-sized groups, in order: each group is packed until the next
 * frame would push its datagram above `maxDatagramBytes` (the path MTU minus IP and UDP
 * headers, minus sealing overhead when encrypting). Frames that cannot fit even alone go to
 * `tooBig` (the caller answers them with ICMP "fragmentation needed" or drops them).
 */
export function packFrames(frames: readonly Uint8Array[], maxDatagramBytes: number): { groups: Uint8Array[][]; tooBig: Uint8Array[] } {
  const limit = Math.min(maxDatagramBytes, MAX_DATAGRAM_BYTES)
  const groups: Uint8Array[][] = []
  const tooBig: Uint8Array[] = []
  let cur: Uint8Array[] = []
  let size = HEADER_BYTES
  for (const f of frames) {
    const need = PER_FRAME_BYTES + f.length
    if (HEADER_BYTES + need > limit || f.length > 0xffff) { tooBig.push(f); continue }
    if (size + need > limit || cur.length === 0xffff) { groups.push(cur); cur = []; size = HEADER_BYTES }
    cur.push(f)
    size += need
  }
  if (cur.length) groups.push(cur)
  return { groups, tooBig }
}

/** The largest frame one datagram carries on a path of `pathMtu` bytes, given extra sealing bytes. */
export function maxFrameBytes(pathMtu: number, sealOverheadBytes = 0): number {
  return pathMtu - UNDERLAY_HEADER_BYTES - HEADER_BYTES - PER_FRAME_BYTES - sealOverheadBytes
}
