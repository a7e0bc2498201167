/**
 * fastdp's health per peer: does a full-size frame get through the vxlan tunnel, both ways?
 *
 * Each tick the router sends every peer that offered fastdp one heartbeat frame through its own
 * datapath (OpenFlow packet-out: set tun_dst/tun_id, out the vxlan port), sized to the weave MTU
 * so that a path MTU too small for the encapsulation fails like a blocked port does. The peer's
 * datapath matches it with a flow of its own (fastdp-flows, priority `heartbeat`, ethertype
 * HEARTBEAT_ETHERTYPE, key sender→receiver), which counts it and hands it to the router as an
 * OpenFlow packet-in. A receiver that saw a heartbeat from a peer within `timeoutMs` says "rx ok"
 * about it; it tells the peer so over the mesh connection, and fastdp carries the peer's frames
 * only when both directions are ok.
 *
 * Both directions go over one OpenFlow connection to the bridge (fastdp-openflow), so heartbeats
 * can be frequent: every 100 ms, and 400 ms without one (four lost in a row) is a dead
 * direction, so a blocked tunnel falls back to sleeve within about half a second. A peer whose
 * heartbeats arrive unevenly (a loaded host) gets a longer timeout, 2.5× its recent longest gap,
 * so a busy machine does not flap between fastdp and sleeve. Reading the
 * flow counters instead (`heartbeatCounts`, for a sender without packet-ins) needs the slow
 * timings: ovs-vswitchd refreshes counters from the datapath only every ~0.5 s.
 *
 * `FastdpHealth` is the pure part (heartbeats or counters and times in, verdicts out);
 * `openflowHeartbeats` is the edge.
 */
import { OXM, type OpenFlowConn } from './fastdp-openflow'
import { HEARTBEAT_ETHERTYPE, PRIORITY, parseTunnelKey, tunnelKey, type FlowPorts } from './fastdp-flows'
import type { FlowStat } from './ofctl'

/** Heartbeats through packet-out/packet-in: ten a second per peer (a few hundred bytes each way over a unix socket). */
export const FASTDP_HEARTBEAT_INTERVAL_MS = 100
/** Without a heartbeat for this long the direction is down: three lost in a row are tolerated. */
export const FASTDP_HEARTBEAT_TIMEOUT_MS = 400
/** With flow counters only (no packet-ins): one a second, like the sleeve's... */
export const FASTDP_COUNTER_INTERVAL_MS = 1_000
/** ...and 4 s: OVS updates counters lazily, so a shorter timeout flaps under load. */
export const FASTDP_COUNTER_TIMEOUT_MS = 4_000
/**
 * One heartbeat in ten is full-size (the weave MTU plus Ethernet header), the others minimal:
 * liveness at 10/s costs ~5 kbit/s per peer instead of ~110, and the path MTU is still checked
 * every second...
 */
export const FASTDP_FULL_HEARTBEAT_EVERY = 10
/** ...and without a full-size one for this long (three lost in a row) the path MTU is too small. */
export const FASTDP_FULL_HEARTBEAT_TIMEOUT_MS = 3_500
/** Byte 14 of a heartbeat frame (its first payload byte): 1 in full-size ones. */
const FULL_FLAG_OFFSET = 14

export type FastdpVerdict = { ok: true } | { ok: false; why: string }

interface PeerHealth {
  count: number | undefined
  lastRxAt: number | undefined
  /** When the last full-size heartbeat arrived. */
  lastFullRxAt: number | undefined
  /** The longest recent gap between two heartbeats (decays): this peer's jitter. */
  slowGapMs: number
  remoteOk: boolean | undefined
  since: number
}

export class FastdpHealth {
  private readonly peers = new Map<number, PeerHealth>()

  /** `fullTimeoutMs`: how long without a full-size heartbeat before the path MTU counts as too small (default: `timeoutMs`: every heartbeat is full-size). */
  constructor(private readonly timeoutMs = FASTDP_HEARTBEAT_TIMEOUT_MS, private readonly fullTimeoutMs = timeoutMs) {}

  add(peer: number, now: number): void {
    if (!this.peers.has(peer)) this.peers.set(peer, { count: undefined, lastRxAt: undefined, lastFullRxAt: undefined, slowGapMs: 0, remoteOk: undefined, since: now })
  }

  remove(peer: number): void {
    this.peers.delete(peer)
  }

  has(peer: number): boolean {
    return this.peers.has(peer)
  }

  ids(): number[] {
    return [...this.peers.keys()]
  }

  /** The heartbeat flow counters of our datapath (all peers at once). */
  onCounters(counts: ReadonlyMap<number, number>, now: number): void {
    for (const [peer, h] of this.peers) {
      const c = counts.get(peer)
      if (c === undefined) continue
      // The flow is (re)installed at 0: only growth since the last reading is a heartbeat.
      if (h.count !== undefined && c > h.count) h.lastRxAt = h.lastFullRxAt = now
      h.count = c
    }
  }

  /**
   * A heartbeat from `peer` arrived (a packet-in). Gaps between heartbeats that were not outages
   * (shorter than the timeout in force) feed the peer's jitter, which stretches its timeout.
   */
  onHeartbeat(peer: number, now: number, full = true): void {
    const h = this.peers.get(peer)
    if (!h) return
    if (full) h.lastFullRxAt = now
    if (h.lastRxAt !== undefined) {
      const gap = now - h.lastRxAt
      h.slowGapMs *= 0.98 // forgets a stall within ~10 s of steady heartbeats
      if (gap <= this.timeoutFor(h) && gap > h.slowGapMs) h.slowGapMs = gap
    }
    h.lastRxAt = now
  }

  /**
   * The timeout for one peer: the configured one, or 2.5 of its recent longest gaps when its
   * heartbeats come that unevenly (a loaded host: busy event loops send and read late), capped
   * at 8× the configured one. Like TCP's RTO, it follows what the path (and the peer) can do.
   */
  private timeoutFor(h: PeerHealth): number {
    return Math.min(this.timeoutMs * 8, Math.max(this.timeoutMs, 2.5 * h.slowGapMs))
  }

  /** What the peer said about our heartbeats reaching it. */
  onRemote(peer: number, ok: boolean): void {
    const h = this.peers.get(peer)
    if (h) h.remoteOk = ok
  }

  /** Whether the peer's heartbeats reach us (what we tell the peer). */
  rxOk(peer: number, now: number): boolean {
    const h = this.peers.get(peer)
    return h?.lastRxAt !== undefined && now - h.lastRxAt <= this.timeoutFor(h) && this.fullOk(h, now)
  }

  /** A full-size heartbeat arrived recently enough (the path takes the weave MTU through the tunnel). */
  private fullOk(h: PeerHealth, now: number): boolean {
    return h.lastFullRxAt !== undefined && now - h.lastFullRxAt <= Math.max(this.fullTimeoutMs, this.timeoutFor(h))
  }

  verdict(peer: number, now: number): FastdpVerdict {
    const h = this.peers.get(peer)
    if (!h) return { ok: false, why: 'no fastdp heartbeats' }
    const rx = this.rxOk(peer, now)
    if (rx && h.remoteOk === true) return { ok: true }
    const never = h.lastRxAt === undefined && h.remoteOk === undefined
    if (never && now - h.since <= this.timeoutMs) return { ok: false, why: 'waiting for fastdp heartbeats' }
    const dirs = [rx ? undefined : 'from the peer', h.remoteOk === true ? undefined : 'to the peer'].filter(Boolean).join(' and ')
    // small heartbeats from the peer arrive, full-size ones do not: that is the MTU, not the port
    const mtu = !rx && h.lastRxAt !== undefined && now - h.lastRxAt <= this.timeoutFor(h)
    if (mtu) return { ok: false, why: `full-size fastdp heartbeats do not get through ${dirs}, small ones do (the path MTU is too small for the weave MTU plus vxlan's 50 bytes)` }
    return { ok: false, why: `fastdp heartbeats do not get through ${dirs} (UDP vxlan port blocked, or the path MTU too small for full-size frames)` }
  }
}

/** Heartbeat counts per sender from a dump of our flows. */
export function heartbeatCounts(stats: readonly FlowStat[], self: number): Map<number, number> {
  const out = new Map<number, number>()
  for (const f of stats) {
    if (f.priority !== PRIORITY.heartbeat) continue
    const m = /tun_id=(0x[0-9a-f]+)/i.exec(f.match)
    if (!m) continue
    const k = parseTunnelKey(Number(m[1]))
    if (k.dst === self) out.set(k.src, f.packets)
  }
  return out
}

/**
 * A heartbeat frame of `frameBytes` (Ethernet header included): broadcast, our ethertype, zeros;
 * `full` marks a full-size one in its first payload byte.
 */
export function heartbeatFrame(frameBytes: number, src: number, dst: number, full = true): Buffer {
  const b = Buffer.alloc(Math.max(60, frameBytes))
  if (full) b[FULL_FLAG_OFFSET] = 1
  b.fill(0xff, 0, 6)
  b.writeUInt16BE(0x0200, 6) // a locally administered source MAC 02:00:<src>:<dst>
  b.writeUInt16BE(src, 8)
  b.writeUInt16BE(dst, 10)
  b.writeUInt16BE(HEARTBEAT_ETHERTYPE, 12)
  return b
}

export interface HeartbeatSender {
  send(peer: { shortId: number; ip: string }): Promise<void>
  /**
   * Heartbeats that reached us, by sender short ID, as they arrive. A sender with this runs the
   * fast timings (FASTDP_HEARTBEAT_*); without, the router reads flow counters (FASTDP_COUNTER_*).
   */
  onReceive?(fn: (src: number, full: boolean) => void): void
  close?(): void
}

/**
 * Heartbeats over one OpenFlow connection: packet-outs into the tunnel, packet-ins from our
 * heartbeat flows (checked: our cookie, our ethertype, addressed to us, the key matching the
 * sender it names).
 */
export function openflowHeartbeats(conn: OpenFlowConn, opts: { self: number; ports: () => FlowPorts | undefined; frameBytes: number; cookie: number; fullEvery?: number }): HeartbeatSender {
  const frames = new Map<number, { full: Buffer; small: Buffer; sent: number }>()
  const every = opts.fullEvery ?? FASTDP_FULL_HEARTBEAT_EVERY
  conn.start()
  return {
    send(peer) {
      const ports = opts.ports()
      if (!ports) return Promise.resolve()
      let f = frames.get(peer.shortId)
      if (!f) {
        f = { full: heartbeatFrame(opts.frameBytes, opts.self, peer.shortId, true), small: heartbeatFrame(60, opts.self, peer.shortId, false), sent: 0 }
        frames.set(peer.shortId, f)
      }
      const frame = f.sent++ % every === 0 ? f.full : f.small
      const sent = conn.packetOut(frame, [
        { kind: 'set-tun-dst', ip: peer.ip }, { kind: 'set-tun-id', id: tunnelKey(opts.self, peer.shortId) }, { kind: 'output', port: ports.vxlan },
      ])
      return sent ? Promise.resolve() : Promise.reject(new Error('no OpenFlow connection to the bridge (yet)'))
    },
    onReceive(fn) {
      conn.onPacketIn((p) => {
        if (p.cookie !== BigInt(opts.cookie) || p.data.length < 14 || p.data.readUInt16BE(12) !== HEARTBEAT_ETHERTYPE) return
        const src = p.data.readUInt16BE(8), dst = p.data.readUInt16BE(10)
        if (dst !== opts.self || src > 0xfff) return
        const key = p.fields.get(OXM.tunnelId)
        if (key && key.length === 8 && key.readBigUInt64BE(0) !== BigInt(tunnelKey(src, opts.self))) return
        fn(src, p.data.length > FULL_FLAG_OFFSET && p.data[FULL_FLAG_OFFSET] === 1)
      })
    },
    close: () => conn.close(),
  }
}
