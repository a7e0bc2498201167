/**
 * Choosing the sleeve cipher per connection from the two hellos: AES-256-GCM only when both
 * ends offer it; ChaCha20-Poly1305 when one does not, or when the peer's hello predates the offer.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { FakeClock, nullLogger } from '../../router/deps'
import type { MeshMessage, PeerConnection, PeerName } from '../../router/mesh'
import { createSleeveOverlay, decodeOverlayControl, encodeOverlayControl, overlayConnectionLine, type OverlayMeshHost, type SleeveHandle } from '../../router/overlay'
import { encodeFrames, type SleeveDatagram } from '../../router/overlay/sleeve-frame'
import { chooseSleeveCipher, sleeveCiphers, sleeveCryptoReady, type SleeveCipherName } from '../../router/overlay/sleeve-crypto'
import { nativeCiphers } from '../../router/native'
import type { SleevePeer } from '../../router/overlay/sleeve-peers'
import { skipTest } from '../skip'

const A = 'aa:00:00:00:00:01' as PeerName
const B = 'bb:00:00:00:00:02' as PeerName
const AES: SleeveCipherName = 'aes-256-gcm'
const CHACHA: SleeveCipherName = 'chacha20-poly1305'
const hasAes = nativeCiphers().includes(AES)

test.before(async () => { await sleeveCryptoReady() })

test('chooseSleeveCipher: AES only when both offer it; ChaCha otherwise, also for a peer without an offer', () => {
  assert.is(chooseSleeveCipher([AES, CHACHA], [AES, CHACHA]), AES)
  assert.is(chooseSleeveCipher([AES, CHACHA], [CHACHA, AES]), AES, 'order does not matter: both ends must agree')
  assert.is(chooseSleeveCipher([CHACHA, AES], [AES, CHACHA]), AES)
  assert.is(chooseSleeveCipher([AES, CHACHA], [CHACHA]), CHACHA)
  assert.is(chooseSleeveCipher([CHACHA], [AES, CHACHA]), CHACHA)
  assert.is(chooseSleeveCipher([AES, CHACHA], undefined), CHACHA, 'old peer')
  assert.is(chooseSleeveCipher([AES, CHACHA], []), CHACHA)
  assert.is(chooseSleeveCipher([], [AES]), CHACHA)
})

test('sleeveCiphers: always ChaCha; AES first exactly when the native addon runs it', () => {
  const c = sleeveCiphers()
  assert.ok(c.includes(CHACHA))
  assert.is(c.includes(AES), hasAes)
  if (hasAes) assert.is(c[0], AES)
})

test('hello carries the offer; unknown names are dropped, a malformed offer refuses the hello, none stays none', () => {
  const enc = (o: unknown) => new TextEncoder().encode(JSON.stringify(o))
  const h = decodeOverlayControl(encodeOverlayControl({ t: 'hello', port: 6783, got: false, ciphers: [AES, CHACHA] }))
  assert.equal(h, { t: 'hello', port: 6783, pub: undefined, got: false, ciphers: [AES, CHACHA] })
  const old = decodeOverlayControl(enc({ t: 'hello', port: 6783, got: true }))
  assert.ok(old && old.t === 'hello' && !('ciphers' in old), 'an old hello has no offer')
  const odd = decodeOverlayControl(enc({ t: 'hello', port: 6783, got: true, ciphers: ['rot13', 7, CHACHA] }))
  assert.ok(odd && odd.t === 'hello')
  if (odd && odd.t === 'hello') assert.equal(odd.ciphers, [CHACHA])
  assert.is(decodeOverlayControl(enc({ t: 'hello', port: 6783, got: true, ciphers: 'aes-256-gcm' })), undefined)
})

// ---- two overlays over a fake mesh connection ----

class FakeConn implements PeerConnection {
  other!: FakeConn
  private msgFns: ((m: MeshMessage) => void)[] = []
  /** Rewrites what this end sends (plays an older peer). */
  rewrite: (m: MeshMessage) => MeshMessage = (m) => m
  constructor(readonly remote: PeerConnection['remote'], readonly outbound: boolean, readonly remoteAddr: string, readonly connUid: bigint) {}
  readonly localAddr = ''
  readonly encrypted = true
  send(m: MeshMessage): void { const r = this.rewrite(m); for (const f of this.other.msgFns) f(r) }
  close(): void {}
  onMessage(fn: (m: MeshMessage) => void): void { this.msgFns.push(fn) }
  onClose(): void {}
}

class FakeSleeve implements SleeveHandle {
  peers = new Map<number, SleevePeer>()
  onControl: (from: number, d: SleeveDatagram) => void = () => {}
  setPeer(id: number, p: SleevePeer): void { this.peers.set(id, p) }
  removePeer(id: number): void { this.peers.delete(id) }
  pathMtu(): number | undefined { return 1500 }
  sendControl(): boolean { return true }
}

function fakeMesh(self: PeerName, short: number, conn: PeerConnection): OverlayMeshHost {
  const recs: Array<[PeerName, number]> = [[A, 1], [B, 2]]
  return {
    identity: { name: self, shortId: () => short },
    topology: { records: () => recs.map(([name, shortId]) => ({ name, nickname: name.slice(0, 2), shortId })) },
    routes: { unicast: () => new Map(recs.map(([n]) => [n, n] as [PeerName, PeerName])), broadcast: () => [] },
    view: { onPeersChanged: () => () => {} },
    connections: () => new Map([[self === A ? B : A, conn]]),
  }
}

/** Strips `ciphers` from hellos: what a peer from before the cipher choice sends. */
function asOldPeer(m: MeshMessage): MeshMessage {
  if (m.type !== 'overlay') return m
  const o = JSON.parse(new TextDecoder().decode(m.payload)) as Record<string, unknown>
  delete o.ciphers
  return { ...m, payload: new TextEncoder().encode(JSON.stringify(o)) }
}

async function connect(ciphersA: SleeveCipherName[], ciphersB: SleeveCipherName[], bIsOld = false) {
  const clock = new FakeClock(0)
  const sa = new FakeSleeve(), sb = new FakeSleeve()
  const ab = new FakeConn({ name: B, nickname: 'b', uid: 2n, shortId: 2, overlays: ['sleeve'] }, true, '10.0.0.2:6783', 5n)
  const ba = new FakeConn({ name: A, nickname: 'a', uid: 1n, shortId: 1, overlays: ['sleeve'] }, false, '10.0.0.1:40000', 5n)
  ab.other = ba; ba.other = ab
  if (bIsOld) ba.rewrite = asOldPeer
  const oa = createSleeveOverlay({ udpPort: 6783, encrypt: true, ciphers: ciphersA }, { clock, logger: nullLogger })
  const ob = createSleeveOverlay({ udpPort: 6783, encrypt: true, ciphers: ciphersB }, { clock, logger: nullLogger })
  await oa.attach(fakeMesh(A, 1, ab), sa)
  await ob.attach(fakeMesh(B, 2, ba), sb)
  const ca = sa.peers.get(2)?.cipher, cb = sb.peers.get(1)?.cipher
  assert.ok(ca && cb, 'both ends have a cipher')
  // what each seals the other opens: the two ends agree on cipher and keys
  const r1 = cb.open(ca.seal(encodeFrames({ src: 1, dst: 2 }, [new Uint8Array(64).fill(1)])))
  const r2 = ca.open(cb.seal(encodeFrames({ src: 2, dst: 1 }, [new Uint8Array(64).fill(2)])))
  assert.ok(r1.ok && r2.ok, 'both directions open')
  const out = { a: ca.name, b: cb.name, statusA: oa.connections()[0], lineA: overlayConnectionLine(oa.connections()[0]) }
  oa.detach(); ob.detach()
  return out
}

const bothAes = 'two overlays, both offering AES: AES-256-GCM at both ends, and status says so'
if (!hasAes) skipTest(bothAes, 'native AES-256-GCM unavailable here (the native addon was built without libcrypto)')
else test(bothAes, async () => {
  const r = await connect([AES, CHACHA], [AES, CHACHA])
  assert.equal([r.a, r.b], [AES, AES])
  assert.is(r.statusA.cipher, AES)
  assert.match(r.lineA, / encrypted aes-256-gcm /)
})

test('two overlays, one without AES: ChaCha20-Poly1305 at both ends', async () => {
  if (hasAes) {
    const r = await connect([AES, CHACHA], [CHACHA])
    assert.equal([r.a, r.b], [CHACHA, CHACHA])
    assert.match(r.lineA, / encrypted chacha20-poly1305 /)
    const s = await connect([CHACHA], [AES, CHACHA])
    assert.equal([s.a, s.b], [CHACHA, CHACHA])
  } else {
    const r = await connect([CHACHA], [CHACHA])
    assert.equal([r.a, r.b], [CHACHA, CHACHA])
  }
})

test('a peer whose hello has no offer (older version) gets ChaCha20-Poly1305 with the old key labels', async () => {
  // an old peer seals with ChaCha and the original key labels, and sends no offer
  const r = await connect(hasAes ? [AES, CHACHA] : [CHACHA], [CHACHA], true)
  assert.equal([r.a, r.b], [CHACHA, CHACHA])
  assert.match(r.lineA, / encrypted chacha20-poly1305 /)
})

test.run()
