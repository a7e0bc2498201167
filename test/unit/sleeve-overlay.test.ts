import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { FakeClock, nullLogger } from '../../router/deps'
import type { MeshMessage, PeerConnection, PeerName } from '../../router/mesh'
import {
  SleeveLink, SleeveRoutes, createSleeveOverlay, decodeOverlayControl, deriveSleeveSecret, encodeOverlayControl, frameMtu, kxKeyPair,
  type OverlayMeshHost, type SleeveHandle, type MeshRouting,
} from '../../router/overlay'
import { decodeDatagram, encodeFrames, type SleeveDatagram } from '../../router/overlay/sleeve-frame'
import { sleeveCryptoReady, type SleeveCipher } from '../../router/overlay/sleeve-crypto'
import type { SleevePeer } from '../../router/overlay/sleeve-peers'
import { parseTrustedSubnets } from '../../router/trusted-subnets'

const A = 'aa:00:00:00:00:01' as PeerName
const B = 'bb:00:00:00:00:02' as PeerName
const C = 'cc:00:00:00:00:03' as PeerName
/** Virtual time per step of the probing test (the whole search must fit in 40 of them: 10 s). */
const PMTU_STEP = 250

test.before(async () => { await sleeveCryptoReady() })

test('SleeveLink: pending until a heartbeat and an ack arrive, stale after the timeout', () => {
  const l = new SleeveLink(B, 7n, 10_000)
  assert.equal(l.tick(), { sendHello: true, sendHeartbeat: false })
  assert.is(l.state(0), 'pending')
  assert.equal(l.onHello({ port: 6783, got: false }), { first: true, reply: true })
  assert.equal(l.onHello({ port: 9999, got: true }), { first: false, reply: false })
  assert.is(l.remote!.port, 6783, 'a repeated hello changes nothing')
  assert.equal(l.tick(), { sendHello: false, sendHeartbeat: true })
  l.onHeartbeat(1000)
  assert.is(l.state(1000), 'pending', 'one direction is not enough')
  l.onAck(1500)
  assert.is(l.state(1500), 'established')
  assert.is(l.state(11_000), 'established')
  assert.is(l.state(11_001), 'stale')
  l.onHeartbeat(12_000); l.onAck(12_000)
  assert.is(l.state(12_000), 'established')
})

test('overlay control: round trip, and garbage is refused as a value', () => {
  const pub = kxKeyPair().publicKey
  assert.equal(decodeOverlayControl(encodeOverlayControl({ t: 'hello', port: 6783, pub, got: true })), { t: 'hello', port: 6783, pub, got: true })
  assert.equal(decodeOverlayControl(encodeOverlayControl({ t: 'hello', port: 1, got: false })), { t: 'hello', port: 1, pub: undefined, got: false })
  assert.equal(decodeOverlayControl(encodeOverlayControl({ t: 'ack', uid: 0xffffffffffffffffn })), { t: 'ack', uid: 0xffffffffffffffffn })
  const enc = (s: string) => new TextEncoder().encode(s)
  for (const bad of ['', 'x', 'null', '{"t":"hello","port":0}', '{"t":"hello","port":70000}', '{"t":"hello","port":1,"pub":"AAAA"}',
    '{"t":"ack","uid":"-1"}', '{"t":"ack","uid":5}', '{"t":"other"}', '{"t":"pmtu","size":3}', '{"t":"pmtu","size":"9"}', '{"t":"pmtu","size":1e9}']) {
    assert.is(decodeOverlayControl(enc(bad)), undefined, bad)
  }
})

test('key agreement: both ends derive the same secret; a third key does not', () => {
  const d = kxKeyPair(), l = kxKeyPair(), x = kxKeyPair()
  const s1 = deriveSleeveSecret(d, l.publicKey, true)
  const s2 = deriveSleeveSecret(l, d.publicKey, false)
  assert.equal(s1, s2)
  assert.is(s1.length, 32)
  assert.not.equal(deriveSleeveSecret(x, l.publicKey, true), s1)
  assert.not.equal(deriveSleeveSecret(l, d.publicKey, true), s1, 'the roles are bound in')
})

test('SleeveRoutes: names ↔ short IDs, data-plane next hops, only usable neighbours', () => {
  // A - B - C in a line; we are A.
  const mesh: MeshRouting = {
    selfName: () => A,
    shortIds: () => [[A, 1], [B, 2], [C, 3]],
    unicast: () => new Map([[A, A], [B, B], [C, B]]),
    broadcast: (src) => (src === A ? [B] : []),
  }
  let usable = new Set([2])
  const r = new SleeveRoutes(mesh, (h) => usable.has(h))
  assert.is(r.unicastNextHop(3), 2)
  assert.is(r.unicastNextHop(2), 2)
  assert.is(r.unicastNextHop(1), undefined, 'never to ourselves')
  assert.is(r.unicastNextHop(99), undefined)
  assert.equal([...r.broadcastNextHops(1)], [2])
  assert.equal([...r.broadcastNextHops(3)], [])
  usable = new Set()
  assert.is(r.unicastNextHop(3), undefined, 'no address for B yet')
  assert.equal([...r.broadcastNextHops(1)], [])
})

test('frameMtu: path MTU minus IP/UDP, sleeve header, frame length, Ethernet header (and sealing)', () => {
  assert.is(frameMtu(1500, false), 1500 - 28 - 8 - 2 - 14)
  assert.is(frameMtu(1500, true), 1500 - 28 - 8 - 2 - 14 - 24)
})

// ---- two overlays over fake connections and a fake UDP path ----

class FakeConn implements PeerConnection {
  other!: FakeConn
  private msgFns: ((m: MeshMessage) => void)[] = []
  private closeFns: ((r: string) => void)[] = []
  closed = false
  constructor(readonly remote: PeerConnection['remote'], readonly outbound: boolean, readonly remoteAddr: string, readonly connUid: bigint) {}
  readonly localAddr = ''
  readonly encrypted = true
  send(m: MeshMessage): void { if (!this.closed) for (const f of this.other.msgFns) f(m) }
  close(r: string): void { if (this.closed) return; this.closed = true; for (const f of this.closeFns) f(r) }
  onMessage(fn: (m: MeshMessage) => void): void { this.msgFns.push(fn) }
  onClose(fn: (r: string) => void): void { this.closeFns.push(fn) }
}

class FakeSleeve implements SleeveHandle {
  peers = new Map<number, SleevePeer>()
  onControl: (from: number, d: SleeveDatagram) => void = () => {}
  /** Delivers to the sleeve at "addr:port". */
  constructor(readonly self: number, readonly addr: string, readonly net: Map<string, FakeSleeve>, readonly lossy = { on: false }) {}
  setPeer(id: number, p: SleevePeer): void { this.peers.set(id, p) }
  removePeer(id: number): void { this.peers.delete(id) }
  pathMtu(id: number): number | undefined { return this.peers.has(id) ? 1500 : undefined }
  sendControl(id: number, plain: Uint8Array): boolean {
    const p = this.peers.get(id)
    if (!p) return false
    if (this.lossy.on) return true
    const dest = this.net.get(`${p.addr}:${p.port}`)!
    const back = [...dest.peers].find(([, q]) => `${q.addr}:${q.port}` === this.addr)
    if (!back) return true // unknown sender: dropped
    const bytes = p.cipher ? p.cipher.seal(plain) : plain
    const r = back[1].cipher ? back[1].cipher.open(bytes) : decodeDatagram(bytes)
    if (r.ok) dest.onControl(back[0], r.datagram)
    return true
  }
}

function fakeMesh(self: PeerName, short: number, conns: Map<PeerName, PeerConnection>, records: Array<[PeerName, number]>): OverlayMeshHost & { fire(): void; dataPath: Map<PeerName, { ok: boolean; why?: string }> } {
  const fns = new Set<() => void>()
  const dataPath = new Map<PeerName, { ok: boolean; why?: string }>()
  return {
    dataPath,
    setDataPath: (peer, ok, why) => { dataPath.set(peer, why === undefined ? { ok } : { ok, why }); return true },
    identity: { name: self, shortId: () => short },
    topology: { records: () => records.map(([name, shortId]) => ({ name, nickname: name.slice(0, 2), shortId })) },
    routes: { unicast: () => new Map(records.map(([n]) => [n, n] as [PeerName, PeerName])), broadcast: () => records.map(([n]) => n).filter((n) => n !== self) },
    view: { onPeersChanged: (fn) => { fns.add(fn); return () => fns.delete(fn) } },
    connections: () => conns,
    fire: () => { for (const f of fns) f() },
  }
}

async function pair(encrypt: boolean, trusts: { a?: (ip: string) => boolean; b?: (ip: string) => boolean } = {}) {
  const clock = new FakeClock(0)
  const net = new Map<string, FakeSleeve>()
  const lossy = { on: false }
  const sa = new FakeSleeve(1, '10.0.0.1:6783', net, lossy), sb = new FakeSleeve(2, '10.0.0.2:6783', net, lossy)
  net.set(sa.addr, sa); net.set(sb.addr, sb)
  const ab = new FakeConn({ name: B, nickname: 'b', uid: 2n, shortId: 2, overlays: ['sleeve'] }, true, '10.0.0.2:6783', 99n)
  const ba = new FakeConn({ name: A, nickname: 'a', uid: 1n, shortId: 1, overlays: ['sleeve'] }, false, '10.0.0.1:40000', 99n)
  ab.other = ba; ba.other = ab
  const recs: Array<[PeerName, number]> = [[A, 1], [B, 2]]
  const ma = fakeMesh(A, 1, new Map([[B, ab]]), recs), mb = fakeMesh(B, 2, new Map([[A, ba]]), recs)
  const oa = createSleeveOverlay({ udpPort: 6783, encrypt, trusts: trusts.a }, { clock, logger: nullLogger })
  const ob = createSleeveOverlay({ udpPort: 6783, encrypt, trusts: trusts.b }, { clock, logger: nullLogger })
  await oa.attach(ma, sa)
  await ob.attach(mb, sb)
  return { clock, sa, sb, oa, ob, ab, ba, ma, mb, lossy }
}

test('two overlays: hellos give each the other\'s UDP address (the port from the hello, not the TCP one), heartbeats establish', async () => {
  const { clock, sa, sb, oa, ob } = await pair(false)
  assert.equal(sb.peers.get(1), { addr: '10.0.0.1', port: 6783, cipher: undefined })
  assert.equal(sa.peers.get(2), { addr: '10.0.0.2', port: 6783, cipher: undefined })
  clock.advance(1000)
  const [c] = oa.connections()
  assert.is(c.state, 'established')
  assert.is(c.overlay, 'sleeve')
  assert.is(c.mtu, 1448)
  assert.is(c.encrypted, false)
  assert.is(ob.connections()[0].state, 'established')
  assert.ok(oa.stats.heartbeatsReceived > 0 && oa.stats.acksReceived > 0)
  oa.detach(); ob.detach()
  assert.is(sa.peers.size, 0)
})

test('with encryption: each side gets a cipher, and what one seals the other opens', async () => {
  const { clock, sa, sb, oa, ob } = await pair(true)
  const ca = sa.peers.get(2)!.cipher as SleeveCipher, cb = sb.peers.get(1)!.cipher as SleeveCipher
  assert.ok(ca && cb)
  const frame = new Uint8Array(60).fill(7)
  const r = cb.open(ca.seal(encodeFrames({ src: 1, dst: 2 }, [frame])))
  assert.ok(r.ok && r.datagram.kind === 'frames' && r.datagram.frames[0][0] === 7)
  clock.advance(2000)
  assert.is(oa.connections()[0].state, 'established')
  assert.is(oa.connections()[0].encrypted, true)
  assert.is(oa.connections()[0].mtu, 1424)
  oa.detach(); ob.detach()
})

test('--trusted-subnets: mutual trust → no cipher at either end; one-sided trust → both encrypted', async () => {
  const subnet = parseTrustedSubnets('10.0.0.0/24')
  const both = await pair(true, { a: subnet.trusts, b: subnet.trusts })
  assert.is(both.sa.peers.get(2)!.cipher, undefined)
  assert.is(both.sb.peers.get(1)!.cipher, undefined)
  both.clock.advance(1000)
  const [c] = both.oa.connections()
  assert.is(c.state, 'established', 'heartbeats in clear get through')
  assert.is(c.encrypted, false)
  assert.is(c.trusted, true)
  assert.is(c.mtu, 1448, 'no sealing overhead')
  both.oa.detach(); both.ob.detach()
  // b trusts a, a does not trust b: encrypted both ways (Weave needs trust from both ends)
  const one = await pair(true, { b: subnet.trusts })
  assert.ok(one.sa.peers.get(2)!.cipher && one.sb.peers.get(1)!.cipher)
  one.clock.advance(2000)
  assert.is(one.oa.connections()[0].state, 'established')
  assert.is(one.ob.connections()[0].encrypted, true)
  assert.is(one.ob.connections()[0].trusted, undefined)
  one.oa.detach(); one.ob.detach()
  // an address outside the subnets is not trusted
  const other = await pair(true, { a: parseTrustedSubnets('10.0.1.0/24').trusts, b: subnet.trusts })
  assert.ok(other.sa.peers.get(2)!.cipher && other.sb.peers.get(1)!.cipher)
  other.oa.detach(); other.ob.detach()
})

test('parseTrustedSubnets: CIDR list, network-normalised; v4-mapped addresses; a bad entry is named', () => {
  const t = parseTrustedSubnets(' 192.168.48.7/24, 10.0.0.0/8 ')
  assert.equal(t.cidrs, ['192.168.48.0/24', '10.0.0.0/8'])
  assert.ok(t.trusts('192.168.48.200') && t.trusts('::ffff:10.9.9.9') && !t.trusts('192.168.49.1') && !t.trusts('fe80::1'))
  assert.equal(parseTrustedSubnets('').cidrs, [])
  assert.not.ok(parseTrustedSubnets(undefined).trusts('10.0.0.1'))
  assert.throws(() => parseTrustedSubnets('10.0.0.0/8,bogus'), /"bogus" is not a subnet/)
})

test('lost heartbeats make the path stale; a closed connection removes the peer from the sleeve', async () => {
  const { clock, sa, oa, ob, ab, ma } = await pair(false)
  clock.advance(1000)
  assert.is(oa.connections()[0].state, 'established')
  const lossy = (sa as unknown as { lossy: { on: boolean } }).lossy
  lossy.on = true
  clock.advance(12_000)
  assert.is(oa.connections()[0].state, 'stale')
  lossy.on = false
  clock.advance(1000)
  assert.is(oa.connections()[0].state, 'established')
  ma.connections().delete(B)
  ab.close('test')
  assert.is(sa.peers.has(2), false)
  assert.equal(oa.connections(), [])
  oa.detach(); ob.detach()
  assert.is(clock.pending(), 0, 'no timer left behind')
})

test('the data-path verdict goes to the mesh: up with the heartbeats, down (with why) when they stop, up while fastdp carries the peer', async () => {
  const { clock, sa, oa, ob, ma, mb } = await pair(false)
  clock.advance(1000)
  assert.equal(ma.dataPath.get(B), { ok: true })
  assert.equal(mb.dataPath.get(A), { ok: true })
  const lossy = (sa as unknown as { lossy: { on: boolean } }).lossy
  lossy.on = true
  clock.advance(12_000)
  assert.equal(ma.dataPath.get(B), { ok: false, why: 'no UDP heartbeat gets through either way' })
  assert.equal(mb.dataPath.get(A), { ok: false, why: 'no UDP heartbeat gets through either way' })
  oa.setVia(2, 'fastdp')
  assert.equal(ma.dataPath.get(B), { ok: true }, 'fastdp is healthy: the connection carries data')
  oa.setVia(2, 'sleeve', 'fastdp heartbeats lost')
  assert.equal(ma.dataPath.get(B)?.ok, false)
  lossy.on = false
  clock.advance(2000)
  assert.equal(ma.dataPath.get(B), { ok: true })
  oa.detach(); ob.detach()
})

test('path-MTU probing: a path that silently drops datagrams over 700 bytes gives the sleeve 700 within seconds; acks go over the connection', async () => {
  const { clock, sa, sb, oa, ob } = await pair(false)
  // the kernel says 1500 (no ICMP ever came back); the path carries IP packets up to 700 bytes
  const probed = new Map<FakeSleeve, number | undefined>()
  for (const s of [sa, sb]) {
    const send = s.sendControl.bind(s)
    Object.assign(s, {
      kernelPathMtu: (id: number) => (s.peers.has(id) ? 1500 : undefined),
      setProbedMtu: (_id: number, mtu: number | undefined) => { probed.set(s, mtu) },
      sendControl: (id: number, plain: Uint8Array) => (plain.length + 28 > 700 ? true : send(id, plain)),
    })
  }
  for (let i = 0; i < 40 && (probed.get(sa) !== 700 || probed.get(sb) !== 700); i++) clock.advance(PMTU_STEP)
  assert.is(probed.get(sa), 700, 'A → B')
  assert.is(probed.get(sb), 700, 'B → A')
  oa.detach(); ob.detach()
  assert.is(clock.pending(), 0, 'no probe timer left behind')
})

test.run()
