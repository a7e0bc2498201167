/**
 * Encrypted fastdp, the pure part: which ESP SAs and policies protect the vxlan tunnel between
 * us and one peer, their keys, and when they rotate. Events in (start, the peer's control
 * messages, ticks of an injected clock), xfrm operations and one control message out; no I/O.
 *
 * Keys. Per mesh connection both ends hold a 32-byte secret from the overlay hello's X25519
 * exchange (run over the password-encrypted, authenticated mesh connection; see sleeve-overlay),
 * and each end sends a fresh 32-byte nonce in its hello. For the direction FROM → TO and epoch e:
 *   okm  = HKDF-SHA256(ikm = secret, salt = nonce_FROM ‖ nonce_TO,
 *                      info = "weave-ts fastdp esp v1" ‖ 0 ‖ name_FROM ‖ 0 ‖ name_TO ‖ 0 ‖ u32be(e), 40 bytes)
 *   key  = okm[0..36)   (AES-256 key ‖ 4-byte salt, as rfc4106(gcm(aes)) takes it)
 *   spi  = (u32be(okm[36..40)) & ~0xff) | (e & 0xff), at least 0x100 (SPIs below 256 are reserved)
 * Each direction and epoch has its own key, so GCM's per-SA sequence-number IVs never repeat
 * under one key, and the label keeps these keys apart from the sleeve's, derived from the same
 * secret. The epoch's low byte in the SPI makes consecutive epochs' SPIs differ.
 *
 * Rotation (each end drives its own outbound direction):
 *   - The receiver keeps inbound SAs installed for the epoch the sender uses AND the next one,
 *     so the sender may switch at any moment without a packet being dropped.
 *   - The sender, every `intervalMs` or after `maxBytes`, if the peer accepts epoch e+1: adds its
 *     outbound SA e+1, re-points the outbound policy at it (the policy pins the SPI) and tells
 *     the peer `sending: e+1`; the old outbound SA goes after `graceMs` (packets in flight).
 *   - The receiver, told `sending: e`: installs inbound e+1, answers `accepting: e+1`, and
 *     removes inbound SAs older than e after `graceMs` (reordered packets still decrypt).
 * The control message is the sender's whole state ({sending, accepting}), repeated now and then,
 * so a lost or early message heals by itself; peer input that names an epoch we never accepted
 * is counted and ignored.
 */
import { hkdfSync } from 'node:crypto'
import { ESP_KEY_BYTES, type EspSa, type XfrmOp } from '../net'

export const ESP_NONCE_BYTES = 32
export const ESP_SECRET_BYTES = 32
/** vxlan's UDP port (the OVS port `vxlan-6784`). */
export const ESP_VXLAN_PORT = 6784
const LABEL = 'weave-ts fastdp esp v1'

export interface EspRotation {
  /** New outbound epoch this often. */
  intervalMs: number
  /** …or after this many bytes through the outbound SA (checked by the driver now and then). */
  maxBytes: number
  /** Old SAs stay this long after a switch. */
  graceMs: number
  /** Repeat our state to the peer this often (heals lost messages). */
  announceMs: number
}

/**
 * Defaults: 15 min keeps each key's life short without churn; 64 GiB stays far below GCM's
 * 2^32-packet limit of one SA without ESN even for small packets; 10 s covers any queue.
 */
export const DEFAULT_ESP_ROTATION: EspRotation = Object.freeze({
  intervalMs: 15 * 60_000,
  maxBytes: 64 * 2 ** 30,
  graceMs: 10_000,
  announceMs: 10_000,
})

export interface EspEnd {
  /** The peer's mesh name (MAC text). */
  name: string
  /** Underlay IPv4 address. */
  ip: string
  /** The nonce this end sent in its hello. */
  nonce: Uint8Array
}

export interface EspPair {
  self: EspEnd
  peer: EspEnd
  /** The connection's overlay secret (ESP_SECRET_BYTES). */
  secret: Uint8Array
  /** Default ESP_VXLAN_PORT. */
  port?: number
}

/** The control message over the mesh connection: the sender's state. */
export interface EspControl {
  t: 'esp'
  /** The epoch we send with. */
  sending: number
  /** The highest epoch we accept from the peer (inbound SA installed). */
  accepting: number
}

const MAX_EPOCH = 0xffffffff

/** Peer input: an EspControl, or undefined when malformed. */
export function validateEspControl(r: Record<string, unknown>): EspControl | undefined {
  const ok = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= MAX_EPOCH
  if (r.t !== 'esp' || !ok(r.sending) || !ok(r.accepting)) return undefined
  return { t: 'esp', sending: r.sending, accepting: r.accepting }
}

/** The SA for direction from → to at `epoch` (see the header for the derivation). */
export function deriveSa(secret: Uint8Array, from: EspEnd, to: EspEnd, epoch: number): EspSa {
  if (secret.length !== ESP_SECRET_BYTES) throw new Error(`ESP secret must be ${ESP_SECRET_BYTES} bytes`)
  if (from.nonce.length !== ESP_NONCE_BYTES || to.nonce.length !== ESP_NONCE_BYTES) throw new Error(`ESP nonces must be ${ESP_NONCE_BYTES} bytes`)
  const salt = Buffer.concat([from.nonce, to.nonce])
  const e = Buffer.alloc(4)
  e.writeUInt32BE(epoch >>> 0)
  const info = Buffer.concat([Buffer.from(LABEL), Buffer.from([0]), Buffer.from(from.name), Buffer.from([0]), Buffer.from(to.name), Buffer.from([0]), e])
  const okm = Buffer.from(hkdfSync('sha256', secret, salt, info, ESP_KEY_BYTES + 4))
  let high = okm.readUInt32BE(ESP_KEY_BYTES) & 0xffffff00
  if (high === 0) high = 0x100
  return { src: from.ip, dst: to.ip, spi: (high | (epoch & 0xff)) >>> 0, key: new Uint8Array(okm.subarray(0, ESP_KEY_BYTES)) }
}

/** What one event asks the driver to do: host changes in order, then maybe a message to the peer. */
export interface EspStep {
  ops: XfrmOp[]
  send?: EspControl
}

export interface EspStatus {
  sending: number
  peerSending: number
  inbound: number[]
  rotations: number
  badControl: number
}

/** The ESP state of one peer pair; see the header. Time comes in as `now` (ms). */
export class EspPeer {
  private readonly port: number
  private outEpoch = 0
  /** The highest epoch the peer said it accepts from us. */
  private peerAccepts = 0
  private peerSending = 0
  /** Installed inbound epochs → SPI. */
  private readonly inbound = new Map<number, number>()
  /** Outbound SAs replaced but not yet deleted. */
  private readonly pending: Array<{ at: number; op: XfrmOp }> = []
  private rotatedAt = 0
  private announcedAt = 0
  private started = false
  private stopped = false
  private rotations = 0
  private badControl = 0

  constructor(readonly pair: EspPair, private readonly rotation: EspRotation = DEFAULT_ESP_ROTATION) {
    this.port = pair.port ?? ESP_VXLAN_PORT
  }

  /** The SA we send with now. */
  outSa(): EspSa { return deriveSa(this.pair.secret, this.pair.self, this.pair.peer, this.outEpoch) }
  private inSa(epoch: number): EspSa { return deriveSa(this.pair.secret, this.pair.peer, this.pair.self, epoch) }

  private state(): EspControl {
    let accepting = 0
    for (const e of this.inbound.keys()) accepting = Math.max(accepting, e)
    return { t: 'esp', sending: this.outEpoch, accepting }
  }

  private addInbound(epoch: number, ops: XfrmOp[]): void {
    if (this.inbound.has(epoch) || epoch > MAX_EPOCH) return
    const sa = this.inSa(epoch)
    this.inbound.set(epoch, sa.spi)
    ops.push({ op: 'add-sa', sa })
  }

  /**
   * Everything for epoch 0: the plaintext drop, inbound SAs 0 and 1 and their policy, then the
   * outbound SA and, last, the outbound policy (the xfrm ops together: one `ip -batch`). Call
   * before any vxlan goes to the peer.
   */
  start(now: number): EspStep {
    if (this.started) return { ops: [] }
    this.started = true
    this.rotatedAt = this.announcedAt = now
    const { self, peer } = this.pair
    const ops: XfrmOp[] = [{ op: 'drop-plain', src: peer.ip, dst: self.ip, port: this.port }]
    this.addInbound(0, ops)
    this.addInbound(1, ops)
    ops.push({ op: 'policy', dir: 'in', src: peer.ip, dst: self.ip, port: this.port })
    const out = this.outSa()
    ops.push({ op: 'add-sa', sa: out })
    ops.push({ op: 'policy', dir: 'out', src: self.ip, dst: peer.ip, port: this.port, spi: out.spi })
    return { ops, send: this.state() }
  }

  /** The peer's state arrived. */
  onControl(m: EspControl, now: number): EspStep {
    if (!this.started || this.stopped) return { ops: [] }
    const ops: XfrmOp[] = []
    // It may accept at most the epoch after the one we use (we never announced further).
    if (m.accepting > this.outEpoch + 1) this.badControl++
    else this.peerAccepts = Math.max(this.peerAccepts, m.accepting)
    let changed = false
    if (m.sending > this.peerSending) {
      if (!this.inbound.has(m.sending)) {
        this.badControl++ // an epoch we never accepted: it cannot decrypt here anyway
      } else {
        this.peerSending = m.sending
        this.addInbound(m.sending + 1, ops)
        for (const [e, spi] of this.inbound) {
          if (e < m.sending) {
            this.inbound.delete(e)
            this.pending.push({ at: now + this.rotation.graceMs, op: { op: 'del-sa', src: this.pair.peer.ip, dst: this.pair.self.ip, spi } })
          }
        }
        changed = true
      }
    }
    if (!changed) return { ops }
    this.announcedAt = now
    return { ops, send: this.state() }
  }

  /**
   * Time passes: deletes that are due, a rotation when due and the peer is ready, our state now
   * and then. `outBytes`: what the outbound SA protected so far, when the driver read it.
   */
  tick(now: number, outBytes?: number): EspStep {
    if (!this.started || this.stopped) return { ops: [] }
    const ops: XfrmOp[] = []
    for (let i = 0; i < this.pending.length;) {
      if (this.pending[i].at <= now) ops.push(this.pending.splice(i, 1)[0].op)
      else i++
    }
    let send: EspControl | undefined
    const due = now - this.rotatedAt >= this.rotation.intervalMs || (outBytes !== undefined && outBytes >= this.rotation.maxBytes)
    if (due && this.peerAccepts > this.outEpoch && this.outEpoch < MAX_EPOCH) {
      const old = this.outSa()
      this.outEpoch++
      this.rotations++
      this.rotatedAt = now
      const sa = this.outSa()
      const { self, peer } = this.pair
      ops.push({ op: 'add-sa', sa })
      ops.push({ op: 'policy', dir: 'out', src: self.ip, dst: peer.ip, port: this.port, spi: sa.spi })
      this.pending.push({ at: now + this.rotation.graceMs, op: { op: 'del-sa', src: old.src, dst: old.dst, spi: old.spi } })
      send = this.state()
    }
    if (!send && now - this.announcedAt >= this.rotation.announceMs) send = this.state()
    if (send) this.announcedAt = now
    return { ops, send }
  }

  /**
   * Remove everything of this pair. The outbound policy goes first only after the caller took
   * the peer out of the datapath: without the policy, vxlan to the peer would leave in clear.
   */
  stop(): EspStep {
    if (!this.started || this.stopped) return { ops: [] }
    this.stopped = true
    const { self, peer } = this.pair
    const ops: XfrmOp[] = [
      { op: 'del-policy', dir: 'out', src: self.ip, dst: peer.ip, port: this.port },
      { op: 'del-sa', src: self.ip, dst: peer.ip, spi: this.outSa().spi },
    ]
    for (const p of this.pending.splice(0)) ops.push(p.op)
    ops.push({ op: 'del-policy', dir: 'in', src: peer.ip, dst: self.ip, port: this.port })
    for (const spi of this.inbound.values()) ops.push({ op: 'del-sa', src: peer.ip, dst: self.ip, spi })
    ops.push({ op: 'allow-plain', src: peer.ip, dst: self.ip, port: this.port })
    this.inbound.clear()
    return { ops }
  }

  status(): EspStatus {
    return {
      sending: this.outEpoch, peerSending: this.peerSending, inbound: [...this.inbound.keys()].sort((a, b) => a - b),
      rotations: this.rotations, badControl: this.badControl,
    }
  }
}
