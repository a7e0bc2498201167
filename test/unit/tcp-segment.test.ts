/** Software TCP segmentation of a GSO super-frame: what a NIC's TSO would put on the wire. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { segmentTcp4 } from '../../router/overlay/tcp-segment'
import { ipChecksum } from '../../router/overlay/too-big'

function superFrame(payload: number, flags: number): Uint8Array {
  const f = new Uint8Array(14 + 20 + 20 + payload)
  const v = new DataView(f.buffer)
  f.fill(2, 0, 12); v.setUint16(12, 0x0800)
  f[14] = 0x45; v.setUint16(16, 40 + payload); v.setUint16(18, 0x1234); f[22] = 64; f[23] = 6
  f.set([10, 32, 0, 1, 10, 32, 0, 2], 26)
  v.setUint16(34, 5555); v.setUint16(36, 80); v.setUint32(38, 0xfffffc00); f[46] = 0x50; f[47] = flags
  for (let i = 0; i < payload; i++) f[54 + i] = i & 255
  return f
}
const gso = (size: number, type = 1) => new Uint8Array([0, type, 54, 0, size & 255, size >> 8, 34, 0, 16, 0])

/** A TCP checksum that verifies sums to 0 over pseudo-header + segment. */
function tcpOk(f: Uint8Array): boolean {
  let sum = 0
  for (let i = 26; i < 34; i += 2) sum += (f[i] << 8) | f[i + 1]
  sum += 6 + (f.length - 34)
  for (let i = 34; i + 1 < f.length; i += 2) sum += (f[i] << 8) | f[i + 1]
  if ((f.length - 34) % 2) sum += f[f.length - 1] << 8
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  return sum === 0xffff
}

test('a 3001-byte TCP super-frame in 1000-byte segments: lengths, IDs, sequence (wrapping), flags, checksums', () => {
  const r = segmentTcp4(superFrame(3001, 0x18 | 0x80 | 0x01), gso(1000))
  assert.ok(r.ok)
  if (!r.ok) return
  assert.equal(r.frames.map((f) => f.length), [1054, 1054, 1054, 55])
  const dv = (f: Uint8Array) => new DataView(f.buffer, f.byteOffset)
  assert.equal(r.frames.map((f) => dv(f).getUint16(16)), [1040, 1040, 1040, 41], 'IP total length')
  assert.equal(r.frames.map((f) => dv(f).getUint16(18)), [0x1234, 0x1235, 0x1236, 0x1237], 'IP ID + 1 each')
  assert.equal(r.frames.map((f) => dv(f).getUint32(38)), [0xfffffc00, 0xffffffe8, 1000 - 24, 2000 - 24].map((x) => x >>> 0), 'sequence numbers')
  assert.equal(r.frames.map((f) => f[47]), [0x10 | 0x80, 0x10, 0x10, 0x18 | 0x01], 'CWR first only; PSH and FIN last only')
  for (const f of r.frames) {
    assert.is(ipChecksum(f, 14, 34), 0, 'IP header checksum verifies')
    assert.ok(tcpOk(f), 'TCP checksum verifies')
  }
  assert.equal([...r.frames[1].subarray(54, 58)], [1000 & 255, 1001 & 255, 1002 & 255, 1003 & 255], 'payload in order')
})

test('not TCP over IPv4: refused as a value', () => {
  assert.equal(segmentTcp4(superFrame(3000, 0x10), gso(1000, 4)), { ok: false, reason: 'not-tcpv4' })
  const udp = superFrame(3000, 0x10); udp[23] = 17
  assert.equal(segmentTcp4(udp, gso(1000)), { ok: false, reason: 'not-tcpv4' })
})

test.run()
