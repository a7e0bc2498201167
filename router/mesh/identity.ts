/**
 * Peer identity: the persistent 48-bit name, the per-start UID, the nickname and the 12-bit short
 * ID the data plane puts in vxlan keys.
 *
 * The name is generated once from random bytes (the daemon persists it in its state dir); the UID
 * is new on every start so a restarted peer supersedes its old incarnation in the topology.
 */
import type { Rng } from '../deps'
import type { LocalIdentity } from './connection-contract'
import type { PeerName } from './gossip-contract'

/** Short IDs are 12 bits: they share the 24-bit vxlan key with the destination's. */
export const SHORT_ID_BITS = 12
export const SHORT_ID_COUNT = 1 << SHORT_ID_BITS
/** Random picks tried before falling back to the first free ID. */
const SHORT_ID_RANDOM_TRIES = 10

/** A fresh peer name: 6 random bytes with the locally-administered bit set and the multicast bit clear. */
export function generatePeerName(rng: Rng): PeerName {
  const b = rng.bytes(6)
  b[0] = (b[0] | 0x02) & 0xfe
  return bytesToPeerName(b)
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

export function bytesToPeerName(b: Uint8Array): PeerName {
  return `${HEX[b[0]]}:${HEX[b[1]]}:${HEX[b[2]]}:${HEX[b[3]]}:${HEX[b[4]]}:${HEX[b[5]]}` as PeerName
}

/** Encoded names are cached: the topology encodes the same few names over and over. */
const nameBytesCache = new Map<string, Uint8Array>()

export function peerNameToBytes(name: PeerName): Uint8Array {
  let out = nameBytesCache.get(name)
  if (!out) {
    out = new Uint8Array(6)
    for (let i = 0; i < 6; i++) out[i] = parseInt(name.substr(i * 3, 2), 16)
    if (nameBytesCache.size > 100_000) nameBytesCache.clear()
    nameBytesCache.set(name, out)
  }
  return out
}

/** A random non-zero 64-bit UID (zero means "unknown" on the wire). */
export function randomUid(rng: Rng): bigint {
  for (;;) {
    const b = rng.bytes(8)
    let v = 0n
    for (const x of b) v = (v << 8n) | BigInt(x)
    if (v !== 0n) return v
  }
}

export function randomShortId(rng: Rng): number {
  return rng.int(SHORT_ID_COUNT)
}

/**
 * A short ID not in `used`: a few random tries first (so two peers resolving at once rarely pick
 * the same one), then the lowest free one; undefined when all 4096 are taken.
 */
export function pickFreeShortId(used: Set<number>, rng: Rng): number | undefined {
  for (let i = 0; i < SHORT_ID_RANDOM_TRIES; i++) {
    const id = randomShortId(rng)
    if (!used.has(id)) return id
  }
  for (let id = 0; id < SHORT_ID_COUNT; id++) if (!used.has(id)) return id
  return undefined
}

/** Mutable local identity handed to the transport; the mesh changes `shortId` on a collision. */
export interface MutableLocalIdentity extends LocalIdentity {
  setShortId(id: number): void
}

export function createLocalIdentity(
  opts: { name: PeerName; nickname: string; overlays?: string[]; uid?: bigint; shortId?: number },
  rng: Rng,
): MutableLocalIdentity {
  let shortId = opts.shortId ?? randomShortId(rng)
  return {
    name: opts.name,
    nickname: opts.nickname,
    uid: opts.uid ?? randomUid(rng),
    overlays: opts.overlays ?? [],
    shortId: () => shortId,
    setShortId(id: number) {
      shortId = id
    },
  }
}
