/**
 * fastdp's OpenFlow edge: message encoding (the bytes `ovs-ofctl ofp-print` decodes as the
 * intended PACKET_OUT and SET_CONFIG), stream framing, PACKET_IN parsing, and the heartbeat
 * sender/receiver on top of a fake connection (what it accepts as a heartbeat, and what not).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import {
  OFPT, OXM, OfFramer, encodeDeleteByCookie, encodePacketOut, encodeSetConfig, encodeHello, oxmHeader, parsePacketIn, type OfAction, type OpenFlowConn, type PacketIn,
} from '../../router/overlay/fastdp-openflow'
import {
  FastdpHealth, heartbeatFrame, openflowHeartbeats, FASTDP_FULL_HEARTBEAT_TIMEOUT_MS, FASTDP_HEARTBEAT_INTERVAL_MS, FASTDP_HEARTBEAT_TIMEOUT_MS,
} from '../../router/overlay/fastdp-health'
import { FLOW_COOKIE, tunnelKey } from '../../router/overlay/fastdp-flows'

test('PACKET_OUT: set tun_dst (NXM), set tun_id (OXM), output — as ovs-ofctl ofp-print reads it', () => {
  const frame = Buffer.alloc(60)
  frame.fill(0xff, 0, 6)
  frame.writeUInt16BE(0x88b5, 12)
  const m = encodePacketOut(7, frame, [{ kind: 'set-tun-dst', ip: '192.168.250.2' }, { kind: 'set-tun-id', id: 0x1002 }, { kind: 'output', port: 3 }])
  // `ovs-ofctl ofp-print` on these bytes: OFPT_PACKET_OUT (OF1.4) (xid=0x7): in_port=CONTROLLER
  // actions=set_field:192.168.250.2->tun_dst,set_field:0x1002->tun_id,output:3 data_len=60
  const head = '050d008400000007fffffffffffffffd00300000000000000019001000014004c0a8fa02000000000019001080004c0800000000000010020000001000000003ffff000000000000'
  assert.is(m.subarray(0, head.length / 2).toString('hex'), head)
  assert.is(m.length, 0x84)
  assert.ok(m.subarray(head.length / 2).equals(frame))
  assert.is(encodeSetConfig(3).toString('hex'), '0509000c000000030000ffff') // frags=normal miss_send_len=65535
  assert.is(encodeHello(1).toString('hex'), '0500000800000001')
  // OFPT_FLOW_MOD (OF1.4) (xid=0x9): DEL table:255 priority=0 cookie:0x7765616c/0xffffffffffffffff
  assert.is(encodeDeleteByCookie(9, 0x7765616c).toString('hex'),
    '050e003800000009000000007765616cffffffffffffffffff03000000000000ffffffffffffffffffffffff000000000001000400000000')
  assert.throws(() => encodePacketOut(1, frame, [{ kind: 'set-tun-dst', ip: '300.1.1.1' }]))
})

test('framer: messages split across chunks and several in one; a length below 8 is an error', () => {
  const f = new OfFramer()
  const a = encodeHello(1), b = encodeSetConfig(2)
  const all = Buffer.concat([a, b, a])
  assert.equal(f.push(all.subarray(0, 5)).messages, [])
  const r = f.push(all.subarray(5, 15))
  assert.is(r.messages.length, 1)
  assert.is(r.messages[0].type, OFPT.hello)
  const r2 = f.push(all.subarray(15))
  assert.equal(r2.messages.map((m) => [m.type, m.xid]), [[OFPT.setConfig, 2], [OFPT.hello, 1]])
  assert.ok(new OfFramer().push(Buffer.from('0500000400000001', 'hex')).error)
})

/** A PACKET_IN body as OVS sends it: match with in_port and tunnel_id, then the frame. */
function packetInBody(cookie: bigint, tunId: number | undefined, frame: Buffer): Buffer {
  const fields: Buffer[] = []
  const inPort = Buffer.alloc(8); inPort.writeUInt32BE(OXM.inPort, 0); inPort.writeUInt32BE(1, 4); fields.push(inPort)
  if (tunId !== undefined) { const t = Buffer.alloc(12); t.writeUInt32BE(OXM.tunnelId, 0); t.writeBigUInt64BE(BigInt(tunId), 4); fields.push(t) }
  const oxm = Buffer.concat(fields)
  const matchLen = 4 + oxm.length
  const match = Buffer.alloc(matchLen + ((8 - (matchLen % 8)) % 8))
  match.writeUInt16BE(1, 0); match.writeUInt16BE(matchLen, 2); oxm.copy(match, 4)
  const fixed = Buffer.alloc(16)
  fixed.writeUInt32BE(0xffffffff, 0); fixed.writeUInt16BE(frame.length, 4); fixed[6] = 1; fixed[7] = 0
  fixed.writeBigUInt64BE(cookie, 8)
  return Buffer.concat([fixed, match, Buffer.alloc(2), frame])
}

test('PACKET_IN: cookie, match fields (masked ones by value), data; malformed is undefined', () => {
  const frame = heartbeatFrame(64, 2, 1)
  const p = parsePacketIn(packetInBody(BigInt(FLOW_COOKIE), tunnelKey(2, 1), frame))!
  assert.is(p.cookie, BigInt(FLOW_COOKIE))
  assert.is(p.reason, 1)
  assert.is(p.fields.get(OXM.inPort)!.readUInt32BE(0), 1)
  assert.is(Number(p.fields.get(OXM.tunnelId)!.readBigUInt64BE(0)), tunnelKey(2, 1))
  assert.ok(p.data.equals(frame))
  assert.is(parsePacketIn(Buffer.alloc(10)), undefined)
  const bad = packetInBody(1n, undefined, frame)
  bad.writeUInt16BE(200, 18) // match longer than the message
  assert.is(parsePacketIn(bad), undefined)
  assert.is(oxmHeader(0x8000, 38, 8, true) & 0xff, 8)
})

function fakeConn(): OpenFlowConn & { sent: Array<{ frame: Buffer; actions: readonly OfAction[] }>; emit(p: PacketIn): void; up: boolean } {
  const fns: Array<(p: PacketIn) => void> = []
  const c = {
    sent: [] as Array<{ frame: Buffer; actions: readonly OfAction[] }>,
    up: true,
    start() {},
    packetOut(frame: Buffer, actions: readonly OfAction[]) { if (!c.up) return false; c.sent.push({ frame, actions }); return true },
    onPacketIn(fn: (p: PacketIn) => void) { fns.push(fn) },
    deleteByCookie: () => c.up,
    connected: () => c.up,
    close() { c.up = false },
    emit(p: PacketIn) { for (const fn of fns) fn(p) },
  }
  return c
}

test('openflow heartbeats: full-size frames into the tunnel keyed us→peer; only genuine heartbeats to us count', async () => {
  const conn = fakeConn()
  const hb = openflowHeartbeats(conn, { self: 1, ports: () => ({ bridge: 2, vxlan: 5, router: 3 }), frameBytes: 1390, cookie: FLOW_COOKIE })
  await hb.send({ shortId: 2, ip: '192.168.250.2' })
  assert.is(conn.sent.length, 1)
  assert.is(conn.sent[0].frame.length, 1390)
  assert.equal(conn.sent[0].actions, [{ kind: 'set-tun-dst', ip: '192.168.250.2' }, { kind: 'set-tun-id', id: tunnelKey(1, 2) }, { kind: 'output', port: 5 }])
  conn.up = false
  await hb.send({ shortId: 2, ip: '192.168.250.2' }).then(() => assert.unreachable('not connected'), (e: Error) => assert.match(e.message, /no OpenFlow connection/))
  const got: number[] = []
  hb.onReceive!((src) => got.push(src))
  const pin = (cookie: number, tun: number | undefined, frame: Buffer) => conn.emit(parsePacketIn(packetInBody(BigInt(cookie), tun, frame))!)
  pin(FLOW_COOKIE, tunnelKey(2, 1), heartbeatFrame(64, 2, 1))
  pin(FLOW_COOKIE, undefined, heartbeatFrame(64, 3, 1)) // no key in the match: the frame says who
  pin(0x1234, tunnelKey(2, 1), heartbeatFrame(64, 2, 1)) // not our flow
  pin(FLOW_COOKIE, tunnelKey(2, 1), heartbeatFrame(64, 2, 9)) // for someone else
  pin(FLOW_COOKIE, tunnelKey(4, 1), heartbeatFrame(64, 2, 1)) // key and frame disagree
  const other = heartbeatFrame(64, 2, 1); other.writeUInt16BE(0x0800, 12)
  pin(FLOW_COOKIE, tunnelKey(2, 1), other) // not a heartbeat
  assert.equal(got, [2, 3])
})

test('fast timings: a direction is dead a few heartbeats after the last; one lost heartbeat is nothing', () => {
  const I = FASTDP_HEARTBEAT_INTERVAL_MS, T = FASTDP_HEARTBEAT_TIMEOUT_MS
  assert.ok(I <= 250 && T <= 3 * 250 && T >= 3 * I, `fast enough to lose only a few packets, slow enough to tolerate a loss (${I}/${T} ms)`)
  const h = new FastdpHealth(T)
  h.add(2, 0)
  let now = 0
  for (; now <= 1000; now += I) if (now !== 500) h.onHeartbeat(2, now) // one lost at 500
  h.onRemote(2, true)
  assert.equal(h.verdict(2, now), { ok: true })
  for (let i = 0; i < 60; i++, now += I) h.onHeartbeat(2, now) // steady again: the lost one is forgotten
  const last = now - I
  assert.equal(h.verdict(2, last + T), { ok: true })
  const v = h.verdict(2, last + T + 1)
  assert.is(v.ok, false)
  assert.match((v as { why: string }).why, /do not get through from the peer/)
  h.onHeartbeat(2, last + T + 50)
  assert.equal(h.verdict(2, last + T + 50), { ok: true }, 'back at the first heartbeat')
})

test('jitter: a peer whose heartbeats come unevenly gets a longer timeout; an outage does not count as jitter', () => {
  const T = FASTDP_HEARTBEAT_TIMEOUT_MS
  const h = new FastdpHealth(T)
  h.add(2, 0)
  h.onRemote(2, true)
  let now = 0
  for (let i = 0; i < 20; i++, now += 100) h.onHeartbeat(2, now)
  const last = now - 100
  assert.is(h.rxOk(2, last + T + 1), false, 'steady 100 ms: the configured timeout')
  // a loaded peer: heartbeats 400 ms apart now and then
  now = last
  for (let i = 0; i < 5; i++) { now += 400; h.onHeartbeat(2, now) }
  assert.ok(h.rxOk(2, now + 2.5 * 400 - 10), '2.5 of its gaps tolerated')
  assert.is(h.rxOk(2, now + 2.5 * 400 + 10), false)
  // a 5 s outage ends: not jitter, so the timeout does not grow to 15 s
  const g = new FastdpHealth(T)
  g.add(3, 0)
  g.onHeartbeat(3, 0)
  g.onHeartbeat(3, 100)
  g.onHeartbeat(3, 5100)
  assert.is(g.rxOk(3, 5100 + T + 1), false)
})

test('full-size heartbeats one in ten, flagged; small ones keep a peer alive only while full-size ones also arrive', async () => {
  const conn = fakeConn()
  const hb = openflowHeartbeats(conn, { self: 1, ports: () => ({ bridge: 2, vxlan: 5 }), frameBytes: 1390, cookie: FLOW_COOKIE })
  for (let i = 0; i < 20; i++) await hb.send({ shortId: 2, ip: '192.168.250.2' })
  assert.equal(conn.sent.map((x) => x.frame.length), [1390, ...Array(9).fill(60), 1390, ...Array(9).fill(60)])
  const got: Array<[number, boolean]> = []
  hb.onReceive!((src, full) => got.push([src, full]))
  for (const f of [heartbeatFrame(1390, 2, 1, true), heartbeatFrame(60, 2, 1, false)]) {
    conn.emit(parsePacketIn(packetInBody(BigInt(FLOW_COOKIE), tunnelKey(2, 1), f.subarray(0, 64)))!) // packet-ins carry 64 bytes
  }
  assert.equal(got, [[2, true], [2, false]])

  const T = FASTDP_HEARTBEAT_TIMEOUT_MS, F = FASTDP_FULL_HEARTBEAT_TIMEOUT_MS
  const h = new FastdpHealth(T, F)
  h.add(2, 0)
  h.onRemote(2, true)
  let now = 0
  for (; now < 2000; now += 100) h.onHeartbeat(2, now, now % 1000 === 0)
  assert.equal(h.verdict(2, now), { ok: true })
  // from now on only small ones get through (the last full-size one came at 1000): fine until
  // the full-size timeout, then the MTU is named
  for (; now <= 1000 + F; now += 100) h.onHeartbeat(2, now, false)
  assert.equal(h.verdict(2, 1000 + F), { ok: true })
  h.onHeartbeat(2, 1000 + F + 100, false)
  const v = h.verdict(2, 1000 + F + 100)
  assert.is(v.ok, false)
  assert.match((v as { why: string }).why, /full-size fastdp heartbeats do not get through from the peer, small ones do \(the path MTU/)
})

test.run()
