/** fastdp health: heartbeat counters in, per-peer verdicts out; the counting flows; the frame. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { FastdpHealth, heartbeatCounts, heartbeatFrame, FASTDP_HEARTBEAT_TIMEOUT_MS } from '../../router/overlay/fastdp-health'
import { computeFlows, tunnelKey, HEARTBEAT_ETHERTYPE, PRIORITY } from '../../router/overlay/fastdp-flows'
import type { FlowStat } from '../../router/overlay'

const T = FASTDP_HEARTBEAT_TIMEOUT_MS

test('verdict: waiting at first, ok only with both directions, down with the direction named, back when they return', () => {
  const h = new FastdpHealth()
  h.add(2, 0)
  assert.equal(h.verdict(2, 0), { ok: false, why: 'waiting for fastdp heartbeats' })
  h.onCounters(new Map([[2, 0]]), 1000) // first reading: a baseline, not a heartbeat
  assert.is(h.rxOk(2, 1000), false)
  h.onCounters(new Map([[2, 1]]), 2000)
  assert.is(h.rxOk(2, 2000), true)
  assert.is(h.verdict(2, 2000).ok, false, 'the peer has not confirmed ours yet')
  h.onRemote(2, true)
  assert.equal(h.verdict(2, 2000), { ok: true })
  // nothing new from the peer for longer than the timeout
  const v = h.verdict(2, 2000 + T + 1)
  assert.is(v.ok, false)
  assert.match((v as { why: string }).why, /do not get through from the peer \(/)
  h.onRemote(2, false)
  assert.match((h.verdict(2, 2000 + T + 1) as { why: string }).why, /from the peer and to the peer/)
  // heartbeats again, both ways
  h.onCounters(new Map([[2, 5]]), 2000 + T + 2)
  h.onRemote(2, true)
  assert.equal(h.verdict(2, 2000 + T + 2), { ok: true })
  // a peer that never answers stops "waiting" after the timeout
  h.add(3, 0)
  assert.match((h.verdict(3, T + 1) as { why: string }).why, /do not get through/)
  h.remove(3)
  assert.is(h.has(3), false)
})

test('counting flows: one per heartbeat peer, keyed sender→us, read back by heartbeatCounts', () => {
  const flows = computeFlows({
    self: 1, ports: { bridge: 2, vxlan: 1, router: 3 }, localMacs: [],
    peers: [{ shortId: 2, ip: '192.168.250.2', macs: [], heartbeat: true }, { shortId: 3, ip: '192.168.250.3', macs: [] }],
  })
  const hb = flows.filter((f) => f.priority === PRIORITY.heartbeat)
  assert.is(hb.length, 1)
  assert.is(hb[0].match, `in_port=1,tun_id=0x${tunnelKey(2, 1).toString(16)},dl_type=0x${HEARTBEAT_ETHERTYPE.toString(16)}`)
  assert.is(hb[0].actions, 'controller(max_len=64)', 'to the router as a packet-in (and counted)')
  const stats = [
    { priority: PRIORITY.heartbeat, match: `tun_id=0x2001,in_port=1,dl_type=0x88b5`, packets: 7 },
    { priority: PRIORITY.heartbeat, match: `tun_id=0x3002,in_port=1,dl_type=0x88b5`, packets: 9 }, // not for us
    { priority: PRIORITY.toBridge, match: `tun_id=0x1/0xfff,in_port=1`, packets: 100 },
  ] as unknown as FlowStat[]
  assert.equal([...heartbeatCounts(stats, 1)], [[2, 7]])
})

test('heartbeat frame: full size, broadcast, our ethertype, sender and receiver in the source MAC', () => {
  const f = heartbeatFrame(1390, 0x123, 0x45)
  assert.is(f.length, 1390)
  assert.is(f.subarray(0, 6).toString('hex'), 'ffffffffffff')
  assert.is(f.subarray(6, 12).toString('hex'), '020001230045')
  assert.is(f.readUInt16BE(12), HEARTBEAT_ETHERTYPE)
  assert.is(heartbeatFrame(10, 1, 2).length, 60, 'never below the Ethernet minimum')
})

test.run()
