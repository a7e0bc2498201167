/**
 * Encrypted fastdp's pure parts: the key/SPI derivation (pinned against RFC 5869 computed by
 * hand), the rotation plan between two ends over a model of each host's xfrm tables (the
 * sender's SA is always installed at the receiver; rotations happen; old SAs go; stop leaves
 * nothing), peer input that is refused, and the `ip xfrm` lines.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fc from 'fast-check'
import { createHmac } from 'node:crypto'
import { DEFAULT_ESP_ROTATION, EspPeer, deriveSa, validateEspControl, type EspControl, type EspEnd, type EspRotation, type EspStep } from '../../router/overlay/fastdp-ipsec'
import { ESP_KEY_BYTES, parseStateBytes, plainDropRule, redact, xfrmLine, type XfrmOp } from '../../router/net/xfrm'

const bytes = (n: number, fill: number) => new Uint8Array(n).fill(fill)
const A: EspEnd = { name: 'aa:00:00:00:00:01', ip: '192.168.250.1', nonce: bytes(32, 1) }
const B: EspEnd = { name: 'aa:00:00:00:00:02', ip: '192.168.250.2', nonce: bytes(32, 2) }
const secret = bytes(32, 7)

/** RFC 5869 by hand: extract, then expand T(1) ‖ T(2) … */
function hkdf(ikm: Uint8Array, salt: Uint8Array, info: Buffer, len: number): Buffer {
  const prk = createHmac('sha256', salt).update(ikm).digest()
  const out: Buffer[] = []
  let t = Buffer.alloc(0)
  for (let i = 1; Buffer.concat(out).length < len; i++) {
    t = createHmac('sha256', prk).update(Buffer.concat([t, info, Buffer.from([i])])).digest()
    out.push(t)
  }
  return Buffer.concat(out).subarray(0, len)
}

test('deriveSa: HKDF-SHA256 as documented; 36-byte key, SPI ≥ 0x100 carrying the epoch', () => {
  const sa = deriveSa(secret, A, B, 3)
  const info = Buffer.concat([Buffer.from('weave-ts fastdp esp v1\0aa:00:00:00:00:01\0aa:00:00:00:00:02\0'), Buffer.from([0, 0, 0, 3])])
  const okm = hkdf(secret, Buffer.concat([A.nonce, B.nonce]), info, 40)
  assert.equal(Buffer.from(sa.key), okm.subarray(0, 36))
  assert.is(sa.key.length, ESP_KEY_BYTES)
  assert.is(sa.spi, ((okm.readUInt32BE(36) & 0xffffff00) | 3) >>> 0)
  assert.is(sa.src, A.ip)
  assert.is(sa.dst, B.ip)
  assert.ok(sa.spi >= 0x100)
})

test('deriveSa: both ends agree; directions, epochs and secrets all give different keys', () => {
  const ab = deriveSa(secret, A, B, 0)
  assert.equal(deriveSa(secret, { ...A }, { ...B }, 0), ab, 'deterministic')
  const ba = deriveSa(secret, B, A, 0)
  assert.not.equal(Buffer.from(ab.key), Buffer.from(ba.key))
  const ab1 = deriveSa(secret, A, B, 1)
  assert.not.equal(Buffer.from(ab.key), Buffer.from(ab1.key))
  assert.is.not(ab.spi, ab1.spi, 'consecutive epochs never share an SPI')
  assert.not.equal(Buffer.from(deriveSa(bytes(32, 8), A, B, 0).key), Buffer.from(ab.key))
  assert.not.equal(Buffer.from(deriveSa(secret, { ...A, nonce: bytes(32, 9) }, B, 0).key), Buffer.from(ab.key), 'a fresh nonce, a fresh key')
  assert.throws(() => deriveSa(bytes(31, 1), A, B, 0))
  assert.throws(() => deriveSa(secret, { ...A, nonce: bytes(8, 1) }, B, 0))
})

test('validateEspControl: whole non-negative epochs only', () => {
  assert.equal(validateEspControl({ t: 'esp', sending: 2, accepting: 3 }), { t: 'esp', sending: 2, accepting: 3 })
  assert.is(validateEspControl({ t: 'esp', sending: -1, accepting: 3 }), undefined)
  assert.is(validateEspControl({ t: 'esp', sending: 1.5, accepting: 3 }), undefined)
  assert.is(validateEspControl({ t: 'esp', sending: '1', accepting: 3 }), undefined)
  assert.is(validateEspControl({ t: 'esp', sending: 1 }), undefined)
  assert.is(validateEspControl({ t: 'esp', sending: 2 ** 40, accepting: 0 }), undefined)
})

// ---- a model of two hosts' xfrm tables and the mesh connection between them ----

interface Host { sas: Map<string, string>; policies: Map<string, number | undefined>; drops: Set<string> }
const newHost = (): Host => ({ sas: new Map(), policies: new Map(), drops: new Set() })
const saKey = (src: string, dst: string, spi: number) => `${src}>${dst}#${spi}`

function applyOps(h: Host, ops: XfrmOp[]): void {
  for (const o of ops) {
    switch (o.op) {
      case 'add-sa': {
        const k = saKey(o.sa.src, o.sa.dst, o.sa.spi)
        assert.not.ok(h.sas.has(k), `SA ${k} added twice`)
        h.sas.set(k, Buffer.from(o.sa.key).toString('hex'))
        break
      }
      case 'del-sa': h.sas.delete(saKey(o.src, o.dst, o.spi)); break
      case 'policy': h.policies.set(`${o.dir} ${o.src}>${o.dst}:${o.port}`, o.spi); break
      case 'del-policy': h.policies.delete(`${o.dir} ${o.src}>${o.dst}:${o.port}`); break
      case 'drop-plain': h.drops.add(`${o.src}>${o.dst}`); break
      case 'allow-plain': h.drops.delete(`${o.src}>${o.dst}`); break
    }
  }
}

class Pair {
  now = 0
  readonly hosts = { a: newHost(), b: newHost() }
  readonly ends: { a: EspPeer; b: EspPeer }
  /** In flight, per direction (TCP keeps order). */
  readonly wire = { a: [] as EspControl[], b: [] as EspControl[] }
  constructor(rot: EspRotation) {
    this.ends = {
      a: new EspPeer({ self: A, peer: B, secret }, rot),
      b: new EspPeer({ self: B, peer: A, secret }, rot),
    }
  }
  private other(x: 'a' | 'b'): 'a' | 'b' { return x === 'a' ? 'b' : 'a' }
  run(x: 'a' | 'b', step: EspStep): void {
    applyOps(this.hosts[x], step.ops)
    if (step.send) this.wire[this.other(x)].push(step.send)
  }
  start(): void { this.run('a', this.ends.a.start(this.now)); this.run('b', this.ends.b.start(this.now)) }
  deliver(to: 'a' | 'b', drop = false): boolean {
    const m = this.wire[to].shift()
    if (!m) return false
    if (!drop) this.run(to, this.ends[to].onControl(m, this.now))
    return true
  }
  tick(dt: number): void {
    this.now += dt
    this.run('a', this.ends.a.tick(this.now))
    this.run('b', this.ends.b.tick(this.now))
  }
  /** The invariant: what x sends with is installed, with the same key, at the other end. */
  check(x: 'a' | 'b'): void {
    const [self, peer] = x === 'a' ? [A, B] : [B, A]
    const spi = this.hosts[x].policies.get(`out ${self.ip}>${peer.ip}:6784`)
    assert.ok(spi !== undefined, 'outbound policy present')
    const k = saKey(self.ip, peer.ip, spi)
    assert.ok(this.hosts[x].sas.has(k), 'the policy names an installed outbound SA')
    assert.is(this.hosts[this.other(x)].sas.get(k), this.hosts[x].sas.get(k), `${x}'s outbound SA ${k} is installed, same key, at the peer`)
  }
}

const fast: EspRotation = { intervalMs: 60_000, maxBytes: Infinity, graceMs: 5_000, announceMs: 10_000 }

test('plan: start installs the plaintext drop, inbound 0+1 and policies; outbound policy last', () => {
  const p = new EspPeer({ self: A, peer: B, secret }, fast)
  const s = p.start(0)
  assert.equal(s.ops.map((o) => o.op), ['drop-plain', 'add-sa', 'add-sa', 'policy', 'add-sa', 'policy'])
  const last = s.ops[5] as Extract<XfrmOp, { op: 'policy' }>
  assert.is(last.dir, 'out')
  assert.is(last.spi, deriveSa(secret, A, B, 0).spi)
  assert.equal(s.send, { t: 'esp', sending: 0, accepting: 1 })
  assert.equal(p.start(1).ops, [], 'start is once')
})

test('plan: rotations every interval, no gap at the receiver, old SAs gone after the grace', () => {
  const pr = new Pair(fast)
  pr.start()
  while (pr.deliver('a') || pr.deliver('b')) { /* settle */ }
  pr.check('a'); pr.check('b')
  for (let i = 0; i < 3 * 60 + 10; i++) { // three rotations, then past the grace
    pr.tick(1_000)
    pr.check('a'); pr.check('b')
    while (pr.deliver('a') || pr.deliver('b')) { pr.check('a'); pr.check('b') }
  }
  assert.is(pr.ends.a.status().rotations, 3)
  assert.is(pr.ends.b.status().rotations, 3)
  assert.is(pr.ends.b.status().peerSending, 3)
  assert.equal(pr.ends.a.status().inbound, [3, 4], 'inbound: the epoch in use and the next')
  // per host: inbound 3 and 4, outbound 3 (old ones deleted after the grace)
  assert.is(pr.hosts.a.sas.size, 3)
  assert.is(pr.hosts.b.sas.size, 3)
  pr.run('a', pr.ends.a.stop())
  pr.run('b', pr.ends.b.stop())
  for (const h of [pr.hosts.a, pr.hosts.b]) {
    assert.is(h.sas.size, 0, 'stop deletes every SA')
    assert.is(h.policies.size, 0)
    assert.is(h.drops.size, 0)
  }
})

test('plan: no rotation until the peer accepts the next epoch; a lost message heals by the announce', () => {
  const pr = new Pair(fast)
  pr.start()
  pr.deliver('a', true) // B's first state is lost (it came before anyone listened)
  pr.deliver('b')
  pr.tick(61_000)
  assert.is(pr.ends.a.status().sending, 0, 'A has not heard that B accepts epoch 1')
  pr.check('a')
  pr.tick(1_000) // B's announce (every 10 s) is due by now
  while (pr.deliver('a') || pr.deliver('b')) { /* settle */ }
  pr.tick(1_000)
  assert.is(pr.ends.a.status().sending, 1, 'rotated once it heard')
  pr.check('a')
})

test('plan: byte-based rotation', () => {
  const p = new EspPeer({ self: A, peer: B, secret }, { ...fast, maxBytes: 1000 })
  p.start(0)
  p.onControl({ t: 'esp', sending: 0, accepting: 1 }, 0)
  assert.is(p.tick(1, 999).ops.length, 0)
  const s = p.tick(2, 1000)
  assert.equal(s.ops.map((o) => o.op), ['add-sa', 'policy'])
  assert.equal(s.send, { t: 'esp', sending: 1, accepting: 1 })
})

test('plan: peer input naming epochs we never accepted is counted and changes nothing', () => {
  const p = new EspPeer({ self: A, peer: B, secret }, fast)
  p.start(0)
  assert.equal(p.onControl({ t: 'esp', sending: 5, accepting: 0 }, 0).ops, [])
  assert.equal(p.onControl({ t: 'esp', sending: 0, accepting: 9 }, 0).ops, [])
  assert.is(p.status().badControl, 2)
  assert.is(p.status().peerSending, 0)
  assert.equal(p.tick(61_000).ops, [], 'accepting 9 did not let us rotate')
})

test('plan (property): any timing and message delay keeps the sender\'s SA installed at the receiver', () => {
  const action = fc.oneof(
    fc.record({ k: fc.constant('tick' as const), dt: fc.integer({ min: 1, max: 40_000 }) }),
    fc.record({ k: fc.constant('deliver' as const), to: fc.constantFrom('a' as const, 'b' as const) }),
  )
  fc.assert(fc.property(fc.array(action, { maxLength: 200 }), (acts) => {
    const pr = new Pair({ intervalMs: 20_000, maxBytes: Infinity, graceMs: 3_000, announceMs: 7_000 })
    pr.start()
    for (const a of acts) {
      if (a.k === 'tick') pr.tick(a.dt)
      else pr.deliver(a.to)
      pr.check('a'); pr.check('b')
    }
    // and SAs do not pile up: per host at most outbound + one replaced + inbound (≤ 3 epochs)
    assert.ok(pr.hosts.a.sas.size <= 6 && pr.hosts.b.sas.size <= 6, `SAs: ${pr.hosts.a.sas.size}, ${pr.hosts.b.sas.size}`)
  }), { numRuns: 300 })
})

test('xfrm lines: transport ESP with our reqid, the policy pins the SPI, keys redacted', () => {
  const sa = deriveSa(secret, A, B, 0)
  const line = xfrmLine({ op: 'add-sa', sa })!
  assert.match(line, /^xfrm state add src 192\.168\.250\.1 dst 192\.168\.250\.2 proto esp spi 0x[0-9a-f]{8} reqid 22506 mode transport replay-window 32 aead rfc4106\(gcm\(aes\)\) 0x[0-9a-f]{72} 128$/)
  assert.not.match(redact(line), /[0-9a-f]{72}/)
  assert.is(xfrmLine({ op: 'policy', dir: 'out', src: A.ip, dst: B.ip, port: 6784, spi: 0x1234 }),
    'xfrm policy update src 192.168.250.1/32 dst 192.168.250.2/32 proto udp dport 6784 dir out priority 2975 tmpl src 192.168.250.1 dst 192.168.250.2 proto esp spi 0x00001234 reqid 22506 mode transport')
  assert.is(xfrmLine({ op: 'del-policy', dir: 'in', src: B.ip, dst: A.ip, port: 6784 }), 'xfrm policy delete src 192.168.250.2/32 dst 192.168.250.1/32 proto udp dport 6784 dir in')
  assert.is(xfrmLine({ op: 'drop-plain', src: B.ip, dst: A.ip, port: 6784 }), undefined)
  assert.equal(plainDropRule({ src: B.ip, dst: A.ip, port: 6784 }).spec.slice(-7), ['-m', 'policy', '--dir', 'in', '--pol', 'none', '-j', 'DROP'].slice(-7))
  assert.throws(() => xfrmLine({ op: 'add-sa', sa: { ...sa, key: bytes(32, 0) } }))
})

test('parseStateBytes: the current lifetime bytes of `ip -s xfrm state get`', () => {
  const text = `src 192.168.250.1 dst 192.168.250.2\n\tproto esp spi 0x5ec31d00 reqid 22506 mode transport\n\treplay-window 0 seq 0x00000000 flag  (0x00000000)\n\tlifetime config:\n\t  limit: soft (INF)(bytes), hard (INF)(bytes)\n\tlifetime current:\n\t  123456(bytes), 99(packets)\n\t  add 2026-11-23 19:00:00 use 2026-11-23 19:00:01\n`
  assert.is(parseStateBytes(text), 123456)
  assert.is(parseStateBytes('nothing'), undefined)
})

test('defaults: rotation well inside GCM limits', () => {
  assert.ok(DEFAULT_ESP_ROTATION.maxBytes / 64 < 2 ** 32, 'even 64-byte packets stay below 2^32 per SA')
  assert.ok(DEFAULT_ESP_ROTATION.graceMs < DEFAULT_ESP_ROTATION.intervalMs)
})

test.run()
