// Every JS decoder of what a peer sends, fuzzed with fast-check: random bytes, and valid encodings
// mutated (bytes flipped, cut, spliced) so the input gets past the first checks. Each must return
// a value (a refusal is `{ok:false, reason}` or undefined) and never throw or hang: a throw other
// than a typed refusal (an Error with a string `code`) fails, and so does one input taking > 1 s.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fc from 'fast-check'
import { encode } from '@msgpack/msgpack'
import { seededRng, FakeClock, type Logger } from '../../router/deps'
import { parsePeerName, type LocalIdentity, type PeerName } from '../../router/mesh'
import { decodeEnvelope, encodeEnvelope } from '../../router/mesh/envelope'
import { FrameDecoder, encodeFrame } from '../../router/mesh/framing'
import { Handshake } from '../../router/mesh/handshake'
import { sodiumReady } from '../../router/mesh/crypto'
import { decodeTopologyMessage, encodeDigest, encodeUpdate } from '../../router/mesh/topology'
import { decodeGossip, decodeUnicast, encodeMsg } from '../../ipam/messages'
import { Ring } from '../../ipam/ring'
import { createIpam } from '../../ipam'
import { SimBus } from '../../ipam/testing'
import { decodeDatagram, decodeFrameList, encodeFrames, encodeHeartbeat, encodePieces, encodeProbe, encodeSuper } from '../../router/overlay/sleeve-frame'
import { decodeOverlayControl, encodeOverlayControl } from '../../router/overlay'
import { decodeDnsMsg, encodeDnsMsgs } from '../../dns/wire'

const RUNS = 3000
const SLOW_MS = 1000

/** Calls `fn`; a plain throw or a slow input fails, a typed refusal (Error with a `code`) passes. */
function total(what: string, fn: () => unknown): void {
  const t0 = performance.now()
  try {
    fn()
  } catch (err) {
    if (!(err instanceof Error && typeof (err as { code?: unknown }).code === 'string')) {
      throw new Error(`${what} threw instead of refusing: ${(err as Error)?.stack ?? String(err)}`)
    }
  }
  const ms = performance.now() - t0
  if (ms > SLOW_MS) throw new Error(`${what} took ${ms.toFixed(0)} ms on one input`)
}

/** Random bytes, or one of `valid` mutated: bytes flipped, cut short, extended, or two spliced. */
function peerBytes(valid: Uint8Array[]): fc.Arbitrary<Uint8Array> {
  const base = fc.constantFrom(...valid)
  return fc.oneof(
    fc.uint8Array({ maxLength: 1500 }),
    fc.tuple(base, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 })).map(([b, flips]) => {
      const out = Uint8Array.from(b)
      for (const [i, v] of flips) if (out.length) out[i % out.length] = v
      return out
    }),
    fc.tuple(base, fc.nat()).map(([b, n]) => b.slice(0, b.length ? n % b.length : 0)),
    fc.tuple(base, fc.uint8Array({ maxLength: 64 })).map(([b, extra]) => Uint8Array.from([...b, ...extra])),
    fc.tuple(base, base, fc.nat()).map(([a, b, n]) => Uint8Array.from([...a.slice(0, n % (a.length + 1)), ...b])),
  )
}

const name = (n: number) => parsePeerName(`aa:bb:cc:dd:ee:${n.toString(16).padStart(2, '0')}`) as PeerName
const te = new TextEncoder()

test.before(async () => { await sodiumReady() })

test('mesh envelope', () => {
  const valid = [
    encodeEnvelope({ type: 'heartbeat' }),
    encodeEnvelope({ type: 'gossip', channel: 'ipam', src: name(1), payload: Uint8Array.of(1, 2, 3) }),
    encodeEnvelope({ type: 'gossip-unicast', channel: 'dns', src: name(1), dst: name(2), payload: new Uint8Array(40) }),
    encodeEnvelope({ type: 'overlay', payload: te.encode('{"t":"fdp","ok":true}') }),
    encode({ v: 1, t: 'hello', x: [1, 2, { a: null }] }),
  ]
  fc.assert(fc.property(peerBytes(valid), (b) => total('decodeEnvelope', () => {
    const r = decodeEnvelope(b)
    assert.type(r.ok, 'boolean')
    if (!r.ok) assert.type(r.reason, 'string')
  })), { numRuns: RUNS })
})

test('mesh framing: any chunking of any bytes', () => {
  const valid = [encodeFrame(Uint8Array.of(1, 2, 3)), encodeFrame(new Uint8Array(300)), Uint8Array.of(0, 0, 0, 0), Uint8Array.of(255, 255, 255, 255)]
  fc.assert(fc.property(fc.array(peerBytes(valid), { maxLength: 6 }), (chunks) => total('FrameDecoder.push', () => {
    const d = new FrameDecoder(1 << 16)
    for (const c of chunks) {
      const r = d.push(c)
      if (!r.ok) { assert.ok(['too-large', 'empty-frame'].includes(r.reason)); break }
    }
    assert.ok(d.pendingBytes <= chunks.reduce((a, c) => a + c.length, 0))
  })), { numRuns: RUNS })
})

test('mesh handshake: any bytes after our opening, with and without a password', () => {
  const local: LocalIdentity = { name: name(1), nickname: 'h1', uid: 1n, shortId: () => 1, overlays: ['sleeve'] }
  const peer = new Handshake({ local: { ...local, name: name(2), uid: 2n }, outbound: true, rng: seededRng(9) }).start().send
  const valid = [...peer, Uint8Array.from(peer.flatMap((b) => [...b]))]
  fc.assert(fc.property(fc.array(peerBytes(valid), { maxLength: 5 }), fc.boolean(), (chunks, outbound) => total('Handshake.receive', () => {
    const h = new Handshake({ local, outbound, rng: seededRng(3) })
    h.start()
    for (const c of chunks) {
      const step = h.receive(c)
      assert.ok(Array.isArray(step.send))
      if (step.failed) { assert.type(step.failed.code, 'string'); break }
    }
  })), { numRuns: RUNS / 3 })
})

test('topology gossip (updates and digests)', () => {
  const rec = { name: name(1), nickname: 'h1', uid: 7n, version: 3, shortId: 1, conns: new Map([[name(2), { seq: 1, present: true, outbound: true, established: true, addr: '10.0.0.2:6783' }]]) }
  const valid = [
    encodeUpdate([{ rec, base: 0 }] as Parameters<typeof encodeUpdate>[0]),
    encodeDigest([{ name: name(1), uid: 7n, version: 3 }, { name: name(2), uid: 8n, version: 1 }]),
    encodeDigest([], true),
  ]
  fc.assert(fc.property(peerBytes(valid), (b) => total('decodeTopologyMessage', () => {
    const r = decodeTopologyMessage(b)
    if (!r.ok) assert.type(r.reason, 'string')
  })), { numRuns: RUNS })
})

test('ipam messages, ring wire, and the allocator handling them', async () => {
  const ringWire = JSON.parse(new TextDecoder().decode(encodeMsg({ v: 1, t: 'ring', ring: { start: 0, end: 256, entries: [] } as never }))) as unknown
  const valid = [
    encodeMsg({ v: 1, want: true, hello: true }),
    encodeMsg({ v: 1, t: 'req', start: 10, end: 20 }),
    encodeMsg({ v: 1, t: 'rmpeer-vote', peer: name(3), ok: false, reason: 'no' }),
    te.encode(JSON.stringify(ringWire)),
    te.encode('{"v":1,"paxos":{"aa:bb:cc:dd:ee:01":{"version":1}},"ring":{"start":0,"end":4}}'),
  ]
  const bus = new SimBus(8)
  const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => quiet }
  const ipam = createIpam({ range: '10.32.0.0/24', init: `seed=${name(1)}` }, { clock: bus.clock, rng: seededRng(1), logger: quiet, host: bus.addPeer(name(1)) })
  await ipam.start()
  try {
    fc.assert(fc.property(peerBytes(valid), (b) => total('ipam decode + handle', () => {
      const g = decodeGossip(b), u = decodeUnicast(b)
      if (!g.ok) assert.type(g.reason, 'string')
      if (!u.ok) assert.type(u.reason, 'string')
      ipam.allocator.onGossipBroadcast(name(2), b)
      ipam.allocator.onGossipUnicast(name(2), b)
      ipam.allocator.onGossip(b)
    })), { numRuns: RUNS })
    fc.assert(fc.property(fc.jsonValue(), (w) => total('Ring.fromWire', () => {
      const r = Ring.fromWire(w)
      if (!r.ok) assert.type(r.reason, 'string')
    })), { numRuns: RUNS })
    // structured ipam messages with wrong field types, through the allocator
    fc.assert(fc.property(fc.record({ v: fc.constantFrom(1, 2), t: fc.constantFrom('req', 'denied', 'ring', 'handoff', 'handoff-ack', 'rmpeer-ask', 'rmpeer-vote', 'x'),
      start: fc.jsonValue(), end: fc.jsonValue(), ring: fc.jsonValue(), peer: fc.jsonValue(), ok: fc.jsonValue(), paxos: fc.jsonValue() }, { requiredKeys: ['v'] }),
    (m) => total('allocator on a structured message', () => {
      const b = te.encode(JSON.stringify(m))
      ipam.allocator.onGossipUnicast(name(2), b)
      ipam.allocator.onGossipBroadcast(name(2), b)
    })), { numRuns: RUNS })
  } finally { await ipam.stop() }
})

test('sleeve datagrams, frame lists, pieces', () => {
  const h = { src: 1, dst: 2 }
  const frame = Uint8Array.from({ length: 100 }, (_, i) => i)
  const valid = [
    encodeFrames(h, [frame, frame.subarray(0, 60)]), encodeHeartbeat(h, 42n), encodeProbe(h, 200),
    encodeSuper(h, new Uint8Array(3000), new Uint8Array(10)),
    encodePieces(h, 9, encodeFrames(h, [new Uint8Array(3000)]), 1400).data.subarray(0, 1420),
  ]
  fc.assert(fc.property(peerBytes(valid), fc.integer({ min: 0, max: 70 }), (b, count) => total('decodeDatagram', () => {
    const r = decodeDatagram(b)
    if (!r.ok) assert.type(r.reason, 'string')
    const l = decodeFrameList(b, count)
    if (!l.ok) assert.type(l.reason, 'string')
  })), { numRuns: RUNS })
})

test('overlay control (hello, ack, fdp, pmtu, esp) from the peer', () => {
  const valid = [
    encodeOverlayControl({ t: 'hello', port: 6784, pub: new Uint8Array(32), got: true, ciphers: ['aes-256-gcm'] }),
    encodeOverlayControl({ t: 'ack', uid: 123n }), encodeOverlayControl({ t: 'fdp', ok: false }), encodeOverlayControl({ t: 'pmtu', size: 1400 }),
  ]
  fc.assert(fc.property(peerBytes(valid), (b) => total('decodeOverlayControl', () => { decodeOverlayControl(b) })), { numRuns: RUNS })
  fc.assert(fc.property(fc.record({ t: fc.constantFrom('hello', 'ack', 'fdp', 'pmtu', 'esp'), port: fc.jsonValue(), pub: fc.jsonValue(), got: fc.jsonValue(),
    fastdp: fc.jsonValue(), ciphers: fc.jsonValue(), esp: fc.jsonValue(), uid: fc.jsonValue(), ok: fc.jsonValue(), size: fc.jsonValue() }, { requiredKeys: ['t'] }),
  (m) => total('decodeOverlayControl(structured)', () => { decodeOverlayControl(te.encode(JSON.stringify(m))) })), { numRuns: RUNS })
})

test('dns gossip', () => {
  const clock = new FakeClock(1000)
  const valid = encodeDnsMsgs([{ hostname: 'a.weave.local', origin: name(1), containerId: 'c1', address: '10.32.0.5', version: 1, tombstone: 0 }] as never, clock.now())
  fc.assert(fc.property(peerBytes(valid), (b) => total('decodeDnsMsg', () => {
    const r = decodeDnsMsg(b)
    if (!r.ok) assert.type(r.reason, 'string')
  })), { numRuns: RUNS })
})

test.run()
