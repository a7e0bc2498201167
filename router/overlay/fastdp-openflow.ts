/**
 * A small OpenFlow 1.4 client on a bridge's management socket (`unix:RUNDIR/BRIDGE.mgmt`), for
 * what fastdp does many times a second: heartbeat packet-outs and heartbeat packet-ins. One
 * persistent connection replaces an `ovs-ofctl` process per heartbeat (flow programming stays
 * with ovs-ofctl bundles, see ofctl.ts).
 *
 * Wire (OpenFlow 1.4, RFC-less but specified by the ONF; numbers below are from the 1.4.0 spec):
 *   header      version(1)=0x05 type(1) length(2) xid(4)
 *   HELLO(0), ERROR(1), ECHO_REQUEST(2)/REPLY(3), SET_CONFIG(9) flags(2) miss_send_len(2),
 *   PACKET_IN(10) buffer_id(4) total_len(2) reason(1) table_id(1) cookie(8) match pad(2) data,
 *   PACKET_OUT(13) buffer_id(4) in_port(4) actions_len(2) pad(6) actions data,
 *   FLOW_MOD(14) cookie(8) cookie_mask(8) table_id(1) command(1) idle(2) hard(2) priority(2)
 *               buffer_id(4) out_port(4) out_group(4) flags(2) importance(2) match [instructions].
 *   match       type(2)=1 (OXM) length(2) OXM TLVs, padded to 8 bytes
 *   OXM TLV     class(2) field(7 bits) hasmask(1 bit) length(1) value [mask]
 *   actions     OUTPUT(0) len=16 port(4) max_len(2) pad(6); SET_FIELD(25) len OXM TLV, padded to 8
 *
 * Open vSwitch sends asynchronous messages (packet-ins) to a management-socket connection only
 * after it set a non-zero miss_send_len, hence the SET_CONFIG right after the HELLO.
 */
import * as net from 'node:net'
import type { Clock, Logger } from '../deps'
import { nullLogger } from '../deps'
import { mustParseIp } from '../../ipv4'

export const OFP_VERSION = 0x05
export const OFPT = { hello: 0, error: 1, echoRequest: 2, echoReply: 3, setConfig: 9, packetIn: 10, flowMod: 14, packetOut: 13 } as const
export const OFPP_CONTROLLER = 0xfffffffd
export const OFPP_ANY = 0xffffffff
const OFP_NO_BUFFER = 0xffffffff

/** OXM headers we use: standard OpenFlow fields (class 0x8000) and Nicira's tun_dst (NXM_1). */
export const OXM = {
  inPort: oxmHeader(0x8000, 0, 4),
  ethType: oxmHeader(0x8000, 5, 2),
  tunnelId: oxmHeader(0x8000, 38, 8),
  /** NXM_NX_TUN_IPV4_DST: class 0x0001, field 32. */
  tunIpv4Dst: oxmHeader(0x0001, 32, 4),
} as const

export function oxmHeader(cls: number, field: number, len: number, hasMask = false): number {
  return ((cls << 16) | (field << 9) | (hasMask ? 0x100 : 0) | len) >>> 0
}

function header(type: number, length: number, xid: number): Buffer {
  const b = Buffer.alloc(8)
  b.writeUInt8(OFP_VERSION, 0)
  b.writeUInt8(type, 1)
  b.writeUInt16BE(length, 2)
  b.writeUInt32BE(xid >>> 0, 4)
  return b
}

const pad8 = (n: number) => (8 - (n % 8)) % 8

export function encodeHello(xid: number): Buffer {
  return header(OFPT.hello, 8, xid)
}

export function encodeEchoReply(xid: number, payload: Buffer): Buffer {
  return Buffer.concat([header(OFPT.echoReply, 8 + payload.length, xid), payload])
}

/** SET_CONFIG: normal fragment handling, and packet-ins carry up to `missSendLen` bytes. */
export function encodeSetConfig(xid: number, missSendLen = 0xffff): Buffer {
  const b = Buffer.concat([header(OFPT.setConfig, 12, xid), Buffer.alloc(4)])
  b.writeUInt16BE(missSendLen, 10)
  return b
}

/** FLOW_MOD DELETE (non-strict) of every flow in every table whose cookie is `cookie`. */
export function encodeDeleteByCookie(xid: number, cookie: number): Buffer {
  const b = Buffer.alloc(48 + 8)
  header(OFPT.flowMod, b.length, xid).copy(b, 0)
  b.writeBigUInt64BE(BigInt(cookie), 8)
  b.writeBigUInt64BE(0xffffffffffffffffn, 16) // cookie mask: all bits
  b.writeUInt8(0xff, 24) // OFPTT_ALL
  b.writeUInt8(3, 25) // OFPFC_DELETE
  b.writeUInt32BE(OFP_NO_BUFFER, 32)
  b.writeUInt32BE(OFPP_ANY, 36)
  b.writeUInt32BE(0xffffffff, 40) // OFPG_ANY
  b.writeUInt16BE(1, 48) // match: OXM, no fields
  b.writeUInt16BE(4, 50)
  return b
}

export type OfAction =
  | { kind: 'output'; port: number }
  | { kind: 'set-tun-dst'; ip: string }
  | { kind: 'set-tun-id'; id: number }

function ipv4Bytes(ip: string): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(mustParseIp(ip))
  return b
}

function setField(oxm: number, value: Buffer): Buffer {
  const len = 4 + 4 + value.length
  const b = Buffer.alloc(len + pad8(len))
  b.writeUInt16BE(25, 0)
  b.writeUInt16BE(b.length, 2)
  b.writeUInt32BE(oxm, 4)
  value.copy(b, 8)
  return b
}

export function encodeAction(a: OfAction): Buffer {
  if (a.kind === 'output') {
    const b = Buffer.alloc(16)
    b.writeUInt16BE(0, 0)
    b.writeUInt16BE(16, 2)
    b.writeUInt32BE(a.port >>> 0, 4)
    b.writeUInt16BE(0xffff, 8) // max_len: only for output to the controller
    return b
  }
  if (a.kind === 'set-tun-dst') return setField(OXM.tunIpv4Dst, ipv4Bytes(a.ip))
  const v = Buffer.alloc(8)
  v.writeBigUInt64BE(BigInt(a.id), 0)
  return setField(OXM.tunnelId, v)
}

/** PACKET_OUT of `frame` (a whole Ethernet frame) from the controller, through `actions`. */
export function encodePacketOut(xid: number, frame: Buffer, actions: readonly OfAction[], inPort = OFPP_CONTROLLER): Buffer {
  const acts = Buffer.concat(actions.map(encodeAction))
  const fixed = Buffer.alloc(16)
  fixed.writeUInt32BE(OFP_NO_BUFFER, 0)
  fixed.writeUInt32BE(inPort >>> 0, 4)
  fixed.writeUInt16BE(acts.length, 8)
  const len = 8 + 16 + acts.length + frame.length
  return Buffer.concat([header(OFPT.packetOut, len, xid), fixed, acts, frame])
}

export interface OfMessage {
  version: number
  type: number
  xid: number
  body: Buffer
}

/**
 * Splits a byte stream into messages. Peer input: a length below the header size is a broken
 * stream (returned as `error`; the caller drops the connection).
 */
export class OfFramer {
  private buf: Buffer = Buffer.alloc(0)

  push(chunk: Buffer): { messages: OfMessage[]; error?: string } {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk
    const messages: OfMessage[] = []
    while (this.buf.length >= 8) {
      const len = this.buf.readUInt16BE(2)
      if (len < 8) return { messages, error: `bad OpenFlow length ${len}` }
      if (this.buf.length < len) break
      messages.push({ version: this.buf[0], type: this.buf[1], xid: this.buf.readUInt32BE(4), body: this.buf.subarray(8, len) })
      this.buf = this.buf.subarray(len)
    }
    return { messages }
  }
}

export interface PacketIn {
  reason: number
  tableId: number
  cookie: bigint
  /** OXM fields of the match, by header without the mask bit (value only). */
  fields: Map<number, Buffer>
  data: Buffer
}

/** A PACKET_IN body (after the header); undefined when malformed. */
export function parsePacketIn(body: Buffer): PacketIn | undefined {
  if (body.length < 16 + 4) return undefined
  const matchLen = body.readUInt16BE(16 + 2)
  if (body.readUInt16BE(16) !== 1 || matchLen < 4) return undefined
  const matchEnd = 16 + matchLen
  const dataStart = matchEnd + pad8(matchLen) + 2
  if (dataStart > body.length) return undefined
  const fields = parseOxm(body.subarray(16 + 4, matchEnd))
  if (!fields) return undefined
  return { reason: body[6], tableId: body[7], cookie: body.readBigUInt64BE(8), fields, data: body.subarray(dataStart) }
}

function parseOxm(b: Buffer): Map<number, Buffer> | undefined {
  const out = new Map<number, Buffer>()
  let i = 0
  while (i < b.length) {
    if (i + 4 > b.length) return undefined
    const h = b.readUInt32BE(i)
    const len = h & 0xff
    if (i + 4 + len > b.length) return undefined
    const hasMask = (h & 0x100) !== 0
    const valueLen = hasMask ? len / 2 : len
    out.set((h & ~0x1ff | valueLen) >>> 0, b.subarray(i + 4, i + 4 + valueLen))
    i += 4 + len
  }
  return out
}

// ---- the connection ----

export interface OpenFlowConn {
  /** Connects (and reconnects after losing the switch) until close(). */
  start(): void
  /** False while not connected (the message is dropped: heartbeats are best effort). */
  packetOut(frame: Buffer, actions: readonly OfAction[]): boolean
  onPacketIn(fn: (p: PacketIn) => void): void
  /** Delete every flow with this cookie, at once (false while not connected). */
  deleteByCookie(cookie: number): boolean
  connected(): boolean
  close(): void
}

export interface OpenFlowDeps {
  clock: Clock
  logger?: Logger
  /** Default: net.createConnection to the unix socket. */
  connect?: (socketPath: string) => net.Socket
}

/** How long to wait before connecting again after the switch went away (it restarts, or is slow to create the bridge). */
const RECONNECT_MS = 1_000

export function createOpenFlowConn(socketPath: string, deps: OpenFlowDeps): OpenFlowConn {
  const log = (deps.logger ?? nullLogger).child('openflow')
  const connect = deps.connect ?? ((p: string) => net.createConnection(p))
  let sock: net.Socket | undefined
  let ready = false
  let closed = false
  let xid = 1
  let cancelRetry: (() => void) | undefined
  let failures = 0
  let switchErrors = 0
  const listeners: Array<(p: PacketIn) => void> = []

  function open(): void {
    if (closed) return
    const s = connect(socketPath)
    sock = s
    const framer = new OfFramer()
    s.on('connect', () => {
      s.write(encodeHello(xid++))
      s.write(encodeSetConfig(xid++))
      ready = true
      if (failures) log.info(`connected to ${socketPath}`)
      failures = 0
    })
    s.on('data', (chunk: Buffer) => {
      const r = framer.push(chunk)
      for (const m of r.messages) handle(s, m)
      if (r.error) { log.warn(`${socketPath}: ${r.error}; reconnecting`); s.destroy() }
    })
    s.on('error', (err) => {
      if (failures++ === 0) log.warn(`${socketPath}: ${err.message}`)
    })
    s.on('close', () => {
      ready = false
      if (sock === s) sock = undefined
      if (!closed) cancelRetry = deps.clock.setTimer(RECONNECT_MS, open)
    })
  }

  function handle(s: net.Socket, m: OfMessage): void {
    if (m.type === OFPT.echoRequest) s.write(encodeEchoReply(m.xid, m.body))
    else if (m.type === OFPT.error) {
      // a refused heartbeat would repeat ten times a second: the first few, then every 1000th
      if (switchErrors++ < 3 || switchErrors % 1000 === 0) {
        log.warn(`switch error #${switchErrors} (xid ${m.xid}): type ${m.body.length >= 4 ? `${m.body.readUInt16BE(0)} code ${m.body.readUInt16BE(2)}` : '?'}`)
      }
    }
    else if (m.type === OFPT.packetIn) {
      const p = parsePacketIn(m.body)
      if (p) for (const fn of listeners) fn(p)
    }
  }

  return {
    start() { if (!sock && !closed) open() },
    packetOut(frame, actions) {
      if (!sock || !ready) return false
      sock.write(encodePacketOut(xid++, frame, actions))
      return true
    },
    onPacketIn(fn) { listeners.push(fn) },
    deleteByCookie(cookie) {
      if (!sock || !ready) return false
      sock.write(encodeDeleteByCookie(xid++, cookie))
      return true
    },
    connected: () => ready,
    close() {
      closed = true
      cancelRetry?.()
      sock?.destroy()
      sock = undefined
      ready = false
    },
  }
}
