// The in-memory network at simulation size: hundreds of peers in one process on a FakeClock.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { FakeClock, nullLogger, seededRng } from '../../router/deps'
import { createMemoryNetwork, parsePeerName, type LocalIdentity, type PeerConnection, type PeerName } from '../../router/mesh'

function identity(n: number): LocalIdentity {
  const b = [(n >> 8) & 0xff, n & 0xff].map((x) => x.toString(16).padStart(2, '0'))
  return { name: parsePeerName(`02:00:00:00:${b[0]}:${b[1]}`) as PeerName, nickname: `p${n}`, uid: BigInt(n + 1), shortId: () => n & 0xfff, overlays: [] }
}

async function mesh(peers: number, degree: number, mode: 'direct' | 'bytes', seed: number) {
  const clock = new FakeClock()
  const rng = seededRng(seed)
  const net = createMemoryNetwork({ clock, rng, logger: nullLogger }, { mode, autoFlush: false })
  const addr = (i: number) => `10.1.${i >> 8}.${i & 0xff}:6783`
  const conns: PeerConnection[] = []
  const transports = []
  for (let i = 0; i < peers; i++) {
    const t = net.transport(addr(i), identity(i))
    await t.listen((c) => conns.push(c))
    transports.push(t)
  }
  const dials: Promise<PeerConnection>[] = []
  for (let i = 0; i < peers; i++) {
    for (let k = 1; k <= degree; k++) dials.push(transports[i].dial(addr((i + k * 7) % peers)))
  }
  net.flush()
  const outs = await Promise.all(dials)
  return { clock, net, conns, outs, addr, rng }
}

for (const mode of ['direct', 'bytes'] as const) {
  test(`${mode}: 300 peers, 900 links survive a 10 s jump of the clock, cut links die`, async () => {
    const seed = 1234
    const m = await mesh(300, 3, mode, seed)
    assert.is(m.outs.length, 900, `seed ${seed}`)
    assert.is(m.conns.length, 900)
    let received = 0
    for (const c of m.conns) c.onMessage(() => received++)
    const closed = new Set<PeerConnection>()
    for (const c of [...m.conns, ...m.outs]) c.onClose(() => closed.add(c))
    for (const c of m.outs) c.send({ type: 'gossip', channel: 'topology', src: c.remote.name, payload: new Uint8Array(16) })
    await Promise.resolve()
    m.net.flush()
    assert.is(received, 900)
    m.clock.advance(10_000)
    m.net.flush()
    assert.is(closed.size, 0, 'heartbeats keep every link up')
    // Partition peer 0 from everyone it talks to.
    for (const c of m.outs.slice(0, 3)) m.net.cut(m.addr(0), c.remoteAddr)
    m.clock.advance(6_000)
    m.net.flush()
    assert.is(closed.size, 6, 'both ends of the three cut links noticed')
  })
}

test.run()
