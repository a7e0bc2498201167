/**
 * Wire format of the `dns` gossip channel: MessagePack `{v: 1, t: senderNowMs, e: [[hostname,
 * origin, containerId, address, version, tombstone], ...]}`. `t` lets a receiver refuse gossip
 * from a peer whose clock is far off (tombstone ages are in the owner's clock). Decoding
 * untrusted bytes returns a value, never throws.
 */
import { decode, encode } from '@msgpack/msgpack'
import type { GossipData } from '../router/mesh'
import { entryKey, type Entry } from './records'
import { isIPv4, normalizeName } from './names'

export const DNS_WIRE_VERSION = 1
/** Entries per message: a full state of tens of thousands of names goes as several small messages. */
const ENTRIES_PER_MSG = 2000
const MAX_MSG_BYTES = 4 << 20

export interface DnsMsg { sentAt: number; entries: Entry[] }

export function encodeDnsMsgs(entries: readonly Entry[], now: number): Uint8Array[] {
  const row = (x: Entry) => [x.hostname, x.origin, x.containerId, x.address, x.version, x.tombstone]
  if (entries.length === 0) return [encode({ v: DNS_WIRE_VERSION, t: now, e: [] })]
  const out: Uint8Array[] = []
  for (let i = 0; i < entries.length; i += ENTRIES_PER_MSG) {
    out.push(encode({ v: DNS_WIRE_VERSION, t: now, e: entries.slice(i, i + ENTRIES_PER_MSG).map(row) }))
  }
  return out
}

export type DecodedDns = { ok: true; msg: DnsMsg } | { ok: false; reason: string }

export function decodeDnsMsg(bytes: Uint8Array): DecodedDns {
  if (bytes.length > MAX_MSG_BYTES) return { ok: false, reason: 'too-large' }
  let o: unknown
  try { o = decode(bytes) } catch { return { ok: false, reason: 'not-msgpack' } }
  if (!o || typeof o !== 'object') return { ok: false, reason: 'not-object' }
  const m = o as Record<string, unknown>
  if (m.v !== DNS_WIRE_VERSION) return { ok: false, reason: `bad-version ${String(m.v)}` }
  if (typeof m.t !== 'number' || !Number.isFinite(m.t)) return { ok: false, reason: 'bad-time' }
  if (!Array.isArray(m.e)) return { ok: false, reason: 'bad-entries' }
  const entries: Entry[] = []
  for (const r of m.e as unknown[]) {
    if (!Array.isArray(r) || r.length !== 6) return { ok: false, reason: 'bad-entry' }
    const [hostname, origin, containerId, address, version, tombstone] = r as unknown[]
    if (typeof hostname !== 'string' || normalizeName(hostname) !== hostname) return { ok: false, reason: 'bad-hostname' }
    if (typeof origin !== 'string' || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(origin)) return { ok: false, reason: 'bad-origin' }
    if (typeof containerId !== 'string' || containerId.length === 0 || containerId.length > 128) return { ok: false, reason: 'bad-container' }
    if (typeof address !== 'string' || !isIPv4(address)) return { ok: false, reason: 'bad-address' }
    if (!Number.isSafeInteger(version) || (version as number) < 1) return { ok: false, reason: 'bad-version-number' }
    if (!Number.isSafeInteger(tombstone) || (tombstone as number) < 0) return { ok: false, reason: 'bad-tombstone' }
    entries.push({ hostname, origin, containerId, address, version: version as number, tombstone: tombstone as number })
  }
  return { ok: true, msg: { sentAt: m.t, entries } }
}

/** Pending DNS gossip: entries by key, the higher version winning when two are merged. */
export class DnsGossipData implements GossipData {
  constructor(readonly entries: ReadonlyMap<string, Entry>, private readonly now: () => number) {}

  static of(entries: readonly Entry[], now: () => number): DnsGossipData {
    return new DnsGossipData(new Map(entries.map((e) => [entryKey(e), e])), now)
  }

  encode(): Uint8Array[] {
    return encodeDnsMsgs([...this.entries.values()], this.now())
  }

  merge(other: GossipData): GossipData {
    if (!(other instanceof DnsGossipData)) return other
    const m = new Map(this.entries)
    for (const [k, e] of other.entries) {
      const old = m.get(k)
      if (!old || old.version < e.version) m.set(k, e)
    }
    return new DnsGossipData(m, this.now)
  }
}
