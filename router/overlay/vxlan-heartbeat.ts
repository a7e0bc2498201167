/**
 * Heartbeats of the kernel vxlan path, and the MACs they carry. Pure: frames in and out.
 *
 * A heartbeat is a vxlan datagram to the peer's UDP 6784 (our VNI), so it crosses the same
 * firewall rules and the same decapsulation as the peer's traffic; its inner frame goes to a
 * link-local group address (01:80:c2:00:00:0e), which a Linux bridge never forwards: the peer's
 * bridge passes it up on `vxlan-6784`, where the router's packet socket (bound to our ethertype
 * only) reads it. One in ten is full-size (the weave MTU), so a path MTU too small for the
 * encapsulation shows (see fastdp-health).
 *
 * Each heartbeat also carries a page of the sender's local MACs (its containers, learnt by its
 * bridge on their ports, and the bridge's own): the receiver installs fdb entries for them
 * (MAC → the sender's address) only once it has every page of one generation, so no kernel
 * learning is needed and a MAC is only ever tunnelled to the host that said it has it.
 *
 * Layout after the Ethernet header (dst group address, src 02:00:<src id>:<dst id>, ethertype):
 *   [14] 1 = full-size   [15] version 1   [16..19] generation   [20..21] total MACs
 *   [22..23] first index of this page   [24..25] MACs in this page   [26..] the MACs, 6 bytes each
 */
import { HEARTBEAT_ETHERTYPE } from './fastdp-flows'

export const VXLAN_HEADER_BYTES = 8
/** Where a heartbeat's inner frame goes: IEEE 802.1 link-local, never forwarded by a bridge. */
export const HEARTBEAT_DST_MAC = Buffer.from([0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e])
const VERSION = 1
const PAGE_HEADER = 26
const MIN_FRAME = 60
/** More MACs than this behind one host are not announced (the rest flood). */
export const MAX_ANNOUNCED_MACS = 4096

export interface HeartbeatPage { gen: number; total: number; offset: number; macs: string[] }
export interface DecodedHeartbeat { src: number; dst: number; full: boolean; page?: HeartbeatPage }

const macBytes = (m: string): Buffer => Buffer.from(m.split(':').map((x) => parseInt(x, 16)))
const macText = (b: Uint8Array, at: number): string => Array.from(b.subarray(at, at + 6), (x) => x.toString(16).padStart(2, '0')).join(':')

/** How many MACs fit a frame of `frameBytes`. */
export function macsPerFrame(frameBytes: number): number {
  return Math.max(0, Math.floor((frameBytes - PAGE_HEADER) / 6))
}

/**
 * A vxlan datagram (header + inner frame) carrying one heartbeat from `src` to `dst`: full-size
 * frames are `fullBytes` long, small ones just what their page needs (60 at least).
 */
export function encodeHeartbeat(o: { vni: number; src: number; dst: number; full: boolean; fullBytes: number; page: HeartbeatPage }): Buffer {
  const n = o.page.macs.length
  const frameBytes = o.full ? Math.max(o.fullBytes, PAGE_HEADER + 6 * n) : Math.max(MIN_FRAME, PAGE_HEADER + 6 * n)
  const b = Buffer.alloc(VXLAN_HEADER_BYTES + frameBytes)
  b[0] = 0x08 // I flag: the VNI is valid
  b.writeUIntBE(o.vni & 0xffffff, 4, 3)
  const f = b.subarray(VXLAN_HEADER_BYTES)
  HEARTBEAT_DST_MAC.copy(f, 0)
  f.writeUInt16BE(0x0200, 6)
  f.writeUInt16BE(o.src, 8)
  f.writeUInt16BE(o.dst, 10)
  f.writeUInt16BE(HEARTBEAT_ETHERTYPE, 12)
  f[14] = o.full ? 1 : 0
  f[15] = VERSION
  f.writeUInt32BE(o.page.gen >>> 0, 16)
  f.writeUInt16BE(o.page.total, 20)
  f.writeUInt16BE(o.page.offset, 22)
  f.writeUInt16BE(n, 24)
  o.page.macs.forEach((m, i) => macBytes(m).copy(f, PAGE_HEADER + 6 * i))
  return b
}

/** An inner frame read off `vxlan-6784`; undefined for anything that is not a well-formed heartbeat. */
export function decodeHeartbeat(f: Uint8Array): DecodedHeartbeat | undefined {
  if (f.length < MIN_FRAME || !HEARTBEAT_DST_MAC.equals(f.subarray(0, 6))) return undefined
  const v = Buffer.from(f.buffer, f.byteOffset, f.length)
  if (v.readUInt16BE(12) !== HEARTBEAT_ETHERTYPE || v.readUInt16BE(6) !== 0x0200) return undefined
  const src = v.readUInt16BE(8), dst = v.readUInt16BE(10)
  if (src > 0xfff || dst > 0xfff) return undefined
  const full = v[14] === 1
  if (v[15] !== VERSION) return { src, dst, full }
  const total = v.readUInt16BE(20), offset = v.readUInt16BE(22), count = v.readUInt16BE(24)
  if (PAGE_HEADER + 6 * count > v.length || offset + count > total || total > MAX_ANNOUNCED_MACS) return { src, dst, full }
  const macs: string[] = []
  for (let i = 0; i < count; i++) macs.push(macText(v, PAGE_HEADER + 6 * i))
  return { src, dst, full, page: { gen: v.readUInt32BE(16), total, offset, macs } }
}

/** Our local MACs, cut into pages (a new generation whenever the set changes). */
export class MacAnnouncer {
  private macs: string[] = []
  private gen = 0

  /** The current set; true when it changed (a new generation). */
  set(macs: Iterable<string>): boolean {
    const sorted = [...new Set(macs)].sort().slice(0, MAX_ANNOUNCED_MACS)
    if (sorted.length === this.macs.length && sorted.every((m, i) => m === this.macs[i])) return false
    this.macs = sorted
    this.gen = (this.gen + 1) >>> 0
    return true
  }

  get size(): number { return this.macs.length }

  /**
   * The page from index `from` (wrapping to 0 past the end) of at most `room` MACs, and where the
   * next one starts: each peer keeps its own cursor, so every peer sees every page in turn.
   */
  page(from: number, room: number): { page: HeartbeatPage; next: number } {
    const total = this.macs.length
    if (total === 0 || room <= 0) return { page: { gen: this.gen, total, offset: 0, macs: [] }, next: 0 }
    const offset = from >= total ? 0 : from
    const macs = this.macs.slice(offset, offset + room)
    return { page: { gen: this.gen, total, offset, macs }, next: offset + macs.length }
  }
}

/** One peer's announced MACs: a generation counts once every index of it has arrived. */
export class MacCollector {
  private gen: number | undefined
  private got: Array<string | undefined> = []
  private missing = 0
  private complete: ReadonlySet<string> | undefined

  /** A page arrived; returns the peer's full set when this page completed a (new) one. */
  add(p: HeartbeatPage): ReadonlySet<string> | undefined {
    if (p.gen !== this.gen || p.total !== this.got.length) {
      this.gen = p.gen
      this.got = Array.from({ length: p.total }, () => undefined)
      this.missing = p.total
      if (p.total === 0) return this.finish()
    }
    p.macs.forEach((m, i) => {
      if (this.got[p.offset + i] === undefined) this.missing--
      this.got[p.offset + i] = m
    })
    return this.missing === 0 ? this.finish() : undefined
  }

  private finish(): ReadonlySet<string> | undefined {
    const set = new Set(this.got as string[])
    const same = this.complete !== undefined && this.complete.size === set.size && [...set].every((m) => this.complete!.has(m))
    this.complete = set
    // the same generation keeps arriving (pages wrap around): only a change is news
    this.got = Array.from({ length: this.got.length }, () => undefined)
    this.missing = this.got.length
    if (this.got.length === 0) this.gen = undefined
    return same ? undefined : set
  }

  /** The last complete set (empty before one). */
  macs(): ReadonlySet<string> { return this.complete ?? new Set() }
}
