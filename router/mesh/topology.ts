/**
 * The topology CRDT: every peer owns one record (header + its connections), versioned by itself.
 *
 * Unlike Weave, a record's connections are per-entry registers stamped with the owner's version
 * at the time of the change (`seq`), with tombstones for removed ones. So a change to one
 * connection travels as a small delta ("entries with seq > base") instead of the whole record,
 * which keeps gossip per join linear in the number of peers even in a full mesh.
 *
 * Merge order between two records of the same peer: higher version, then higher UID, then having
 * a short ID (Weave's precedence), then deterministic tie-breaks. Entries of the same incarnation
 * merge pointwise by seq. A peer advances its copy of a record to version v only when it holds
 * every entry up to v: a delta whose base is above what we hold is a gap, reported so the caller
 * can ask the sender for the missing part (see `gaps` and `deltaForDigest`).
 *
 * Pure: no clock, no I/O. Encoding uses MessagePack; decoding untrusted bytes returns a value.
 */
import { decode, encode } from '@msgpack/msgpack'
import type { Rng } from '../deps'
import { bytesToPeerName, peerNameToBytes, pickFreeShortId } from './identity'
import type { PeerName } from './gossip-contract'

export interface ConnEntry {
  /** Owner's version when this entry last changed. */
  seq: number
  /** False for a tombstone (the connection was removed). */
  present: boolean
  outbound: boolean
  established: boolean
  /** Remote's TCP address as seen by the owner. */
  addr: string
}

export interface PeerRecord {
  name: PeerName
  nickname: string
  uid: bigint
  version: number
  /** Undefined until the peer has one. */
  shortId: number | undefined
  conns: Map<PeerName, ConnEntry>
}

/** A record on the wire: `rec.conns` holds exactly the entries with seq > base (all of them when base is 0). */
export interface RecordUpdate {
  rec: PeerRecord
  base: number
}

export interface DigestEntry {
  name: PeerName
  uid: bigint
  version: number
}

export interface MergeResult {
  /** What was new to us, ready to relay (empty: stop propagating). */
  delta: RecordUpdate[]
  /** Records we could not apply because we lack the versions between ours and the update's base. */
  gaps: DigestEntry[]
  /** An old incarnation of us was seen: our version jumped past it, our whole record should be re-sent. */
  selfBumped: boolean
}

/** Header precedence: positive when `a` wins. */
export function compareHeaders(a: PeerRecord, b: PeerRecord): number {
  if (a.version !== b.version) return a.version - b.version
  if (a.uid !== b.uid) return a.uid > b.uid ? 1 : -1
  const ha = a.shortId !== undefined, hb = b.shortId !== undefined
  if (ha !== hb) return ha ? 1 : -1
  if ((a.shortId ?? 0) !== (b.shortId ?? 0)) return (a.shortId ?? 0) - (b.shortId ?? 0)
  return a.nickname < b.nickname ? -1 : a.nickname > b.nickname ? 1 : 0
}

/** Entry precedence within one incarnation: positive when `a` wins. */
export function compareEntries(a: ConnEntry, b: ConnEntry): number {
  if (a.seq !== b.seq) return a.seq - b.seq
  const ka = entryKey(a), kb = entryKey(b)
  return ka < kb ? -1 : ka > kb ? 1 : 0
}

function entryKey(e: ConnEntry): string {
  return `${e.present ? 1 : 0}${e.outbound ? 1 : 0}${e.established ? 1 : 0}${e.addr}`
}

export function cloneRecord(r: PeerRecord): PeerRecord {
  return { ...r, conns: new Map([...r.conns].map(([k, v]) => [k, { ...v }])) }
}

/**
 * The lattice join of two complete records of the same peer (the CRDT merge): a different
 * incarnation replaces the whole record; the same one takes the winning header and, per remote,
 * the winning entry.
 */
export function mergeRecords(a: PeerRecord, b: PeerRecord): PeerRecord {
  if (a.uid !== b.uid) return cloneRecord(compareHeaders(a, b) >= 0 ? a : b)
  const head = compareHeaders(a, b) >= 0 ? a : b
  const out: PeerRecord = { ...head, conns: new Map() }
  for (const [k, v] of a.conns) out.conns.set(k, { ...v })
  for (const [k, v] of b.conns) {
    const cur = out.conns.get(k)
    if (!cur || compareEntries(v, cur) > 0) out.conns.set(k, { ...v })
  }
  return out
}

/** Present connections of a record, as [remote, entry]. */
export function presentConns(r: PeerRecord): Array<[PeerName, ConnEntry]> {
  return [...r.conns].filter(([, e]) => e.present)
}

export class Topology {
  private readonly peers = new Map<PeerName, PeerRecord>()
  /** When each currently-unreachable peer was first seen unreachable (for the GC grace period). */
  private readonly unreachableSince = new Map<PeerName, number>()
  /** Peers the last GC pass found reachable: if one is unreachable now, it departed. */
  private readonly wasReachable = new Set<PeerName>()

  constructor(self: { name: PeerName; nickname: string; uid: bigint; shortId?: number }) {
    this.peers.set(self.name, {
      name: self.name,
      nickname: self.nickname,
      uid: self.uid,
      version: 1,
      shortId: self.shortId,
      conns: new Map(),
    })
    this.selfName = self.name
  }

  readonly selfName: PeerName

  self(): PeerRecord {
    return this.peers.get(this.selfName)!
  }

  get(name: PeerName): PeerRecord | undefined {
    return this.peers.get(name)
  }

  has(name: PeerName): boolean {
    return this.peers.has(name)
  }

  records(): IterableIterator<PeerRecord> {
    return this.peers.values()
  }

  size(): number {
    return this.peers.size
  }

  // ---- changes to our own record (each bumps our version) ----

  setConnection(remote: PeerName, c: { outbound: boolean; established: boolean; addr: string }): void {
    const me = this.self()
    me.version++
    me.conns.set(remote, { seq: me.version, present: true, ...c })
  }

  removeConnection(remote: PeerName): void {
    const me = this.self()
    const cur = me.conns.get(remote)
    if (!cur || !cur.present) return
    me.version++
    me.conns.set(remote, { ...cur, seq: me.version, present: false })
  }

  setShortId(id: number): void {
    const me = this.self()
    me.version++
    me.shortId = id
  }

  /** Our record's changes since `base`, for gossip (base 0 → all of it). */
  ownDeltaSince(base: number): RecordUpdate {
    return this.deltaOf(this.self(), base)
  }

  private deltaOf(r: PeerRecord, base: number): RecordUpdate {
    const conns = new Map<PeerName, ConnEntry>()
    for (const [k, v] of r.conns) if (v.seq > base) conns.set(k, { ...v })
    return { rec: { ...r, conns }, base }
  }

  /** Everything we hold, as complete records. */
  fullState(): RecordUpdate[] {
    return [...this.peers.values()].map((r) => this.deltaOf(r, 0))
  }

  digest(): DigestEntry[] {
    return [...this.peers.values()].map((r) => ({ name: r.name, uid: r.uid, version: r.version }))
  }

  /** What a peer whose holdings are `digest` lacks from us (records it doesn't know, or knows older). */
  deltaForDigest(digest: DigestEntry[], onlyListed = false): RecordUpdate[] {
    const theirs = new Map(digest.map((d) => [d.name, d]))
    const out: RecordUpdate[] = []
    const consider = onlyListed ? digest.map((d) => this.peers.get(d.name)).filter((r): r is PeerRecord => !!r) : this.peers.values()
    for (const r of consider) {
      const d = theirs.get(r.name)
      if (!d) out.push(this.deltaOf(r, 0))
      else if (d.uid === r.uid) {
        if (r.version > d.version) out.push(this.deltaOf(r, d.version))
      } else if (compareHeaders(r, { ...r, uid: d.uid, version: d.version }) > 0) out.push(this.deltaOf(r, 0))
    }
    return out
  }

  /** Merge updates received from a peer; returns what was new, what we could not apply, and whether we saw an old self. */
  merge(updates: RecordUpdate[]): MergeResult {
    const delta: RecordUpdate[] = []
    const gaps: DigestEntry[] = []
    let selfBumped = false
    for (const u of updates) {
      const inc = u.rec
      if (inc.name === this.selfName) {
        const me = this.self()
        // An old incarnation of us: jump past it so our new record wins everywhere.
        if (inc.uid !== me.uid && inc.version >= me.version) {
          me.version = inc.version + 1
          selfBumped = true
        }
        continue
      }
      const cur = this.peers.get(inc.name)
      if (!cur || cur.uid !== inc.uid) {
        if (cur && compareHeaders(inc, cur) <= 0) continue
        if (u.base > 0) {
          gaps.push({ name: inc.name, uid: cur?.uid ?? 0n, version: cur && cur.uid === inc.uid ? cur.version : 0 })
          continue
        }
        const rec = cloneRecord(inc)
        this.peers.set(inc.name, rec)
        delta.push(this.deltaOf(rec, 0))
        continue
      }
      // Same incarnation.
      if (inc.version < cur.version) continue
      if (inc.version === cur.version) {
        if (compareHeaders(inc, cur) > 0) {
          cur.nickname = inc.nickname
          cur.shortId = inc.shortId
          delta.push(this.deltaOf(cur, cur.version))
        }
        continue
      }
      if (u.base > cur.version) {
        gaps.push({ name: cur.name, uid: cur.uid, version: cur.version })
        continue
      }
      const oldVersion = cur.version
      cur.version = inc.version
      cur.nickname = inc.nickname
      cur.shortId = inc.shortId
      for (const [k, v] of inc.conns) {
        const e = cur.conns.get(k)
        if (!e || compareEntries(v, e) > 0) cur.conns.set(k, { ...v })
      }
      delta.push(this.deltaOf(cur, oldVersion))
    }
    return { delta, gaps, selfBumped }
  }

  /**
   * Peers reachable from us following each owner's present connections (forward edges only: a
   * departed peer's frozen record still lists its old neighbours, so it must not count).
   */
  reachable(): Set<PeerName> {
    const seen = new Set<PeerName>([this.selfName])
    const queue: PeerName[] = [this.selfName]
    for (let i = 0; i < queue.length; i++) {
      const r = this.peers.get(queue[i])
      if (!r) continue
      for (const [k, e] of r.conns) {
        if (e.present && !seen.has(k)) {
          seen.add(k)
          queue.push(k)
        }
      }
    }
    return seen
  }

  /**
   * Garbage-collect unreachable peers. A peer the previous pass found reachable has departed (its
   * last path is gone: a killed peer, a cut link, a partition) and goes at once, as in Weave, so
   * the peer list never shows the dead. A peer never yet seen reachable waits `graceMs`: it is
   * usually a just-joined peer whose neighbour's record is still on its way, and dropping it would
   * only make us fetch it again. Either comes back with the next gossip that connects it (a heal
   * exchanges digests). Returns the names removed.
   */
  gc(now: number, graceMs = 0): PeerName[] {
    const reach = this.reachable()
    const removed: PeerName[] = []
    for (const name of this.peers.keys()) {
      if (reach.has(name)) {
        this.unreachableSince.delete(name)
        this.wasReachable.add(name)
        continue
      }
      const since = this.unreachableSince.get(name)
      if (since === undefined) this.unreachableSince.set(name, now)
      if (this.wasReachable.has(name) || now - (since ?? now) >= graceMs) {
        this.peers.delete(name)
        this.unreachableSince.delete(name)
        this.wasReachable.delete(name)
        removed.push(name)
      }
    }
    return removed
  }

  /** Whether some unreachable peer is waiting for its grace period to end. */
  hasUnreachablePending(): boolean {
    return this.unreachableSince.size > 0
  }

  /**
   * Resolve a short-ID collision: the lowest name keeps the ID; if that is not us, pick a free one.
   * Returns the new ID, or undefined when nothing changed.
   */
  resolveShortIdCollision(rng: Rng): number | undefined {
    const me = this.self()
    const used = new Set<number>()
    let lose = false
    for (const r of this.peers.values()) {
      if (r.name === this.selfName || r.shortId === undefined) continue
      used.add(r.shortId)
      if (r.shortId === me.shortId && r.name < me.name) lose = true
    }
    if (me.shortId !== undefined && !lose) return undefined
    const id = pickFreeShortId(used, rng)
    if (id === undefined || id === me.shortId) return undefined
    this.setShortId(id)
    return id
  }

  /** A canonical string of who holds what (name, uid, version): equal on peers that agree. */
  fingerprint(): string {
    return [...this.peers.values()]
      .map((r) => `${r.name}/${r.uid}/${r.version}`)
      .sort()
      .join(',')
  }
}

// ---- wire encoding ----
// A topology message is one type byte then MessagePack:
//   UPDATE (1): [[name(bin 6), nickname, uid(bin 8), version, shortId|-1, base, [[remote(bin 6), seq, flags, addr], ...]], ...]
//   DIGEST (2): raw 18-byte entries name(6) uid(8, BE) version(u32 BE)  (a request: "send me everything I lack")
//   DIGEST_LISTED (3): same shape (a request: "send me what I lack of these peers", after a gap)
// flags: bit 0 present, bit 1 outbound, bit 2 established.

export const MSG_UPDATE = 1
export const MSG_DIGEST = 2
export const MSG_DIGEST_LISTED = 3

/** Hard caps on decoded sizes, so a peer's bad message cannot make us allocate without bound. */
const MAX_RECORDS = 100_000
const MAX_CONNS = 100_000
const MAX_TEXT = 256

function uidToBytes(uid: bigint): Uint8Array {
  const out = new Uint8Array(8)
  let v = uid
  for (let i = 7; i >= 0; i--) {
    out[i] = Number(v & 0xffn)
    v >>= 8n
  }
  return out
}

function bytesToUid(b: Uint8Array): bigint {
  let v = 0n
  for (const x of b) v = (v << 8n) | BigInt(x)
  return v
}

export function encodeUpdate(updates: RecordUpdate[]): Uint8Array {
  const body = updates.map(({ rec, base }) => [
    peerNameToBytes(rec.name),
    rec.nickname,
    uidToBytes(rec.uid),
    rec.version,
    rec.shortId ?? -1,
    base,
    [...rec.conns].map(([k, e]) => [
      peerNameToBytes(k),
      e.seq,
      (e.present ? 1 : 0) | (e.outbound ? 2 : 0) | (e.established ? 4 : 0),
      e.addr,
    ]),
  ])
  return withType(MSG_UPDATE, encode(body))
}

/** Digests are packed raw (18 bytes an entry: name, uid, u32 version): they go with every new connection. */
const DIGEST_ENTRY = 18

export function encodeDigest(digest: DigestEntry[], listedOnly = false): Uint8Array {
  const out = new Uint8Array(1 + digest.length * DIGEST_ENTRY)
  const dv = new DataView(out.buffer)
  out[0] = listedOnly ? MSG_DIGEST_LISTED : MSG_DIGEST
  digest.forEach((d, i) => {
    const o = 1 + i * DIGEST_ENTRY
    out.set(peerNameToBytes(d.name), o)
    dv.setBigUint64(o + 6, BigInt.asUintN(64, d.uid))
    dv.setUint32(o + 14, Math.min(d.version, 0xffffffff))
  })
  return out
}

function withType(t: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(body.length + 1)
  out[0] = t
  out.set(body, 1)
  return out
}

export type DecodedTopologyMessage =
  | { ok: true; kind: 'update'; updates: RecordUpdate[] }
  | { ok: true; kind: 'digest'; digest: DigestEntry[]; listedOnly: boolean }
  | { ok: false; reason: string }

const isBin = (x: unknown, n: number): x is Uint8Array => x instanceof Uint8Array && x.length === n
const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0
const isText = (x: unknown): x is string => typeof x === 'string' && x.length <= MAX_TEXT

/** Decode a topology message from a peer; never throws. */
export function decodeTopologyMessage(bytes: Uint8Array): DecodedTopologyMessage {
  if (bytes.length < 1) return { ok: false, reason: 'empty' }
  if (bytes[0] === MSG_DIGEST || bytes[0] === MSG_DIGEST_LISTED) {
    if ((bytes.length - 1) % DIGEST_ENTRY !== 0) return { ok: false, reason: 'bad-digest' }
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length)
    const digest: DigestEntry[] = []
    for (let o = 1; o < bytes.length; o += DIGEST_ENTRY) {
      digest.push({ name: bytesToPeerName(bytes.subarray(o, o + 6)), uid: dv.getBigUint64(o + 6), version: dv.getUint32(o + 14) })
    }
    return { ok: true, kind: 'digest', digest, listedOnly: bytes[0] === MSG_DIGEST_LISTED }
  }
  let body: unknown
  try {
    body = decode(bytes.subarray(1))
  } catch {
    return { ok: false, reason: 'bad-msgpack' }
  }
  if (!Array.isArray(body) || body.length > MAX_RECORDS) return { ok: false, reason: 'bad-shape' }
  if (bytes[0] !== MSG_UPDATE) return { ok: false, reason: 'unknown-type' }
  const updates: RecordUpdate[] = []
  for (const r of body) {
    if (!Array.isArray(r) || r.length !== 7) return { ok: false, reason: 'bad-record' }
    const [name, nick, uid, version, shortId, base, conns] = r as unknown[]
    if (!isBin(name, 6) || !isText(nick) || !isBin(uid, 8) || !isCount(version) || !isCount(base) || base > version) {
      return { ok: false, reason: 'bad-record' }
    }
    if (typeof shortId !== 'number' || !Number.isInteger(shortId) || shortId < -1 || shortId > 4095) return { ok: false, reason: 'bad-short-id' }
    if (!Array.isArray(conns) || conns.length > MAX_CONNS) return { ok: false, reason: 'bad-conns' }
    const map = new Map<PeerName, ConnEntry>()
    for (const c of conns) {
      if (!Array.isArray(c) || !isBin(c[0], 6) || !isCount(c[1]) || !isCount(c[2]) || !isText(c[3])) return { ok: false, reason: 'bad-conn' }
      if (c[1] > version || c[1] <= base) return { ok: false, reason: 'bad-conn-seq' }
      map.set(bytesToPeerName(c[0]), { seq: c[1], present: (c[2] & 1) !== 0, outbound: (c[2] & 2) !== 0, established: (c[2] & 4) !== 0, addr: c[3] })
    }
    const u = bytesToUid(uid)
    if (u === 0n) return { ok: false, reason: 'zero-uid' }
    updates.push({ rec: { name: bytesToPeerName(name), nickname: nick, uid: u, version, shortId: shortId < 0 ? undefined : shortId, conns: map }, base })
  }
  return { ok: true, kind: 'update', updates }
}

/**
 * Merge two lists of updates into one for a pending send. Updates of the same peer and
 * incarnation combine when their version ranges touch (so no version in between goes missing);
 * otherwise both are kept, in order.
 */
export function combineUpdates(a: RecordUpdate[], b: RecordUpdate[]): RecordUpdate[] {
  // Updates are treated as immutable: shared, never changed in place.
  const out = a.slice()
  const lastByName = new Map<PeerName, number>()
  out.forEach((u, i) => lastByName.set(u.rec.name, i))
  for (const u of b) {
    const i = lastByName.get(u.rec.name)
    const prev = i === undefined ? undefined : out[i]
    if (prev && prev.rec.uid === u.rec.uid && u.base <= prev.rec.version && prev.base <= u.rec.version) {
      const rec = mergeRecords(prev.rec, u.rec)
      out[i!] = { rec, base: Math.min(prev.base, u.base) }
    } else if (prev && prev.rec.uid !== u.rec.uid && u.base === 0 && compareHeaders(u.rec, prev.rec) > 0) {
      out[i!] = u
    } else {
      lastByName.set(u.rec.name, out.length)
      out.push(u)
    }
  }
  return out
}
