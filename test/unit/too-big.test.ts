import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fc from 'fast-check'
import { handleTooBig, ipChecksum } from '../../router/overlay/too-big'

const MAC_A = [2, 0, 0, 0, 0, 0xa]
const MAC_B = [2, 0, 0, 0, 0, 0xb]
const IP_A = [10, 40, 0, 1]
const IP_B = [10, 40, 0, 2]

/** An Ethernet frame A → B carrying IPv4 with `payload`. */
function ipv4Frame(payload: Uint8Array, opts: { df?: boolean; proto?: number; id?: number; mf?: boolean; offset8?: number } = {}): Uint8Array {
  const f = new Uint8Array(14 + 20 + payload.length)
  f.set(MAC_B, 0); f.set(MAC_A, 6); f[12] = 8; f[13] = 0
  const ip = 14
  f[ip] = 0x45
  f[ip + 2] = (20 + payload.length) >> 8; f[ip + 3] = (20 + payload.length) & 255
  f[ip + 4] = (opts.id ?? 0x1234) >> 8; f[ip + 5] = (opts.id ?? 0x1234) & 255
  const flags = (opts.df ? 0x4000 : 0) | (opts.mf ? 0x2000 : 0) | (opts.offset8 ?? 0)
  f[ip + 6] = flags >> 8; f[ip + 7] = flags & 255
  f[ip + 8] = 64; f[ip + 9] = opts.proto ?? 17
  f.set(IP_A, ip + 12); f.set(IP_B, ip + 16)
  const c = ipChecksum(f, ip, ip + 20); f[ip + 10] = c >> 8; f[ip + 11] = c & 255
  f.set(payload, 34)
  return f
}
const u16 = (b: Uint8Array, at: number) => (b[at] << 8) | b[at + 1]

test('DF set: ICMP fragmentation-needed back to the sender, with valid checksums and the MTU', () => {
  const payload = new Uint8Array(1600).map((_, i) => i & 255)
  const frame = ipv4Frame(payload, { df: true })
  const r = handleTooBig(frame, 1414)
  assert.is(r.kind, 'icmp')
  if (r.kind !== 'icmp') return
  const o = r.reply
  assert.equal([...o.subarray(0, 6)], MAC_A, 'to the sender')
  assert.equal([...o.subarray(6, 12)], MAC_B)
  assert.equal([...o.subarray(26, 30)], IP_B, 'from the original destination')
  assert.equal([...o.subarray(30, 34)], IP_A, 'to the original source')
  assert.is(ipChecksum(o, 14, 34), 0, 'IP header checksum valid')
  assert.is(o[34], 3); assert.is(o[35], 4)
  assert.is(u16(o, 40), 1400, 'next-hop MTU = largest IP packet that fits')
  assert.is(ipChecksum(o, 34, o.length), 0, 'ICMP checksum valid')
  assert.equal([...o.subarray(42)], [...frame.subarray(14, 14 + 28)], 'quotes the IP header and 8 bytes')
})

test('no ICMP error about an ICMP error; non-IPv4 and options are dropped', () => {
  const icmpErr = new Uint8Array(1500); icmpErr[0] = 3
  assert.equal(handleTooBig(ipv4Frame(icmpErr, { df: true, proto: 1 }), 1000), { kind: 'drop', reason: 'icmp-error' })
  const echo = new Uint8Array(1500); echo[0] = 8
  assert.is(handleTooBig(ipv4Frame(echo, { df: true, proto: 1 }), 1000).kind, 'icmp', 'an echo request does get one')
  const arp = new Uint8Array(2000); arp[12] = 8; arp[13] = 6
  assert.equal(handleTooBig(arp, 1000), { kind: 'drop', reason: 'not-ipv4' })
  const opt = ipv4Frame(new Uint8Array(1500)); opt[14] = 0x46
  assert.equal(handleTooBig(opt, 1000), { kind: 'drop', reason: 'ip-options' })
  const bad = ipv4Frame(new Uint8Array(1500)); bad[16] = 0xff; bad[17] = 0xff
  assert.equal(handleTooBig(bad, 1000), { kind: 'drop', reason: 'bad-header' })
})

test('DF clear: fragments fit, carry valid headers, and reassemble to the original', () => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 9000 }), fc.integer({ min: 62, max: 1500 }), (payload, maxFrame) => {
    const frame = ipv4Frame(payload)
    const r = handleTooBig(frame, maxFrame)
    assert.is(r.kind, 'fragments')
    if (r.kind !== 'fragments') return
    const joined = new Uint8Array(payload.length)
    let covered = 0
    r.frames.forEach((f, i) => {
      assert.ok(f.length <= maxFrame, 'fits')
      assert.is(ipChecksum(f, 14, 34), 0, 'header checksum')
      assert.equal([...f.subarray(0, 14)], [...frame.subarray(0, 14)], 'same Ethernet header')
      assert.is(u16(f, 18), 0x1234, 'same IP id')
      const flags = u16(f, 20)
      const last = i === r.frames.length - 1
      assert.is((flags & 0x2000) !== 0, !last, 'MF on all but the last')
      assert.is(u16(f, 16), f.length - 14, 'total length')
      const off = (flags & 0x1fff) * 8
      joined.set(f.subarray(34), off)
      covered += f.length - 34
      if (!last) assert.is((f.length - 34) % 8, 0, 'non-last pieces are multiples of 8')
    })
    assert.is(covered, payload.length)
    assert.ok(Buffer.from(joined).equals(Buffer.from(payload)))
  }), { numRuns: 300 })
})

test('re-fragmenting a fragment keeps its offset and its MF flag', () => {
  const frame = ipv4Frame(new Uint8Array(2000), { mf: true, offset8: 100 })
  const r = handleTooBig(frame, 1014)
  if (r.kind !== 'fragments') throw new Error(r.kind)
  assert.is(u16(r.frames[0], 20) & 0x1fff, 100)
  for (const f of r.frames) assert.ok(u16(f, 20) & 0x2000, 'MF stays set: more of the original follows')
})

test.run()
