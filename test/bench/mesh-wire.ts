// Mesh connection layer throughput: gossip messages of 200 bytes through one in-memory
// connection in the simulator's direct mode (baseline: no encoding at all), then through the real
// framing + MessagePack (bytes mode), then with encryption, then over TCP on loopback (plain and
// encrypted). Prints one JSON object last: messages/s and the ratio to the baseline.
import { FakeClock, nullLogger, seededRng, systemClock, cryptoRng } from '../../router/deps'
import {
  createMemoryNetwork, createTcpTransport, derivePasswordKey, parsePeerName,
  type LocalIdentity, type PasswordKey, type PeerConnection, type PeerName,
} from '../../router/mesh'

const N = 50_000
const id = (n: number): LocalIdentity => ({ name: parsePeerName(`02:00:00:00:00:0${n}`) as PeerName, nickname: `b${n}`, uid: BigInt(n), shortId: () => n, overlays: [] })

async function memory(mode: 'direct' | 'bytes', password?: PasswordKey): Promise<number> {
  const net = createMemoryNetwork({ clock: new FakeClock(), rng: seededRng(1), logger: nullLogger }, { mode, autoFlush: false })
  const a = net.transport('10.0.0.1:6783', id(1), { password, heartbeats: false })
  const b = net.transport('10.0.0.2:6783', id(2), { password, heartbeats: false })
  let inb: PeerConnection | undefined
  await a.listen((c) => { inb = c })
  const p = b.dial('10.0.0.1:6783')
  net.flush()
  const out = await p
  let got = 0
  inb!.onMessage(() => got++)
  await Promise.resolve()
  const payload = new Uint8Array(200)
  const t0 = performance.now()
  for (let i = 0; i < N; i++) out.send({ type: 'gossip', channel: 'topology', src: id(2).name, payload })
  net.flush()
  const ms = performance.now() - t0
  if (got !== N) throw new Error(`delivered ${got} of ${N}`)
  return N / (ms / 1000)
}

async function tcp(password?: PasswordKey): Promise<number> {
  const deps = { clock: systemClock(), rng: cryptoRng(), logger: nullLogger }
  const a = createTcpTransport({ local: id(1), password, listenAddr: '127.0.0.1', listenPort: 0 }, deps)
  const b = createTcpTransport({ local: id(2), password, listenAddr: '127.0.0.1', listenPort: 0 }, deps)
  let got = 0
  let done: () => void = () => {}
  const finished = new Promise<void>((r) => { done = r })
  await a.listen((c) => c.onMessage(() => { if (++got === N) done() }))
  const out = await b.dial(`127.0.0.1:${a.address()!.port}`)
  const payload = new Uint8Array(200)
  const t0 = performance.now()
  for (let i = 0; i < N; i++) out.send({ type: 'gossip', channel: 'topology', src: id(2).name, payload })
  await finished
  const ms = performance.now() - t0
  await b.close(); await a.close()
  return N / (ms / 1000)
}

async function main() {
  const pw = await derivePasswordKey('bench')
  const r = {
    direct: await memory('direct'),
    bytes: await memory('bytes'),
    bytesEncrypted: await memory('bytes', pw),
    tcp: await tcp(),
    tcpEncrypted: await tcp(pw),
  }
  const round = (x: number) => Math.round(x)
  console.log(JSON.stringify({
    benchmark: 'mesh-wire', messages: N, payloadBytes: 200, unit: 'messages/s',
    baseline: { name: 'memory direct (no encoding)', value: round(r.direct) },
    results: Object.fromEntries(Object.entries(r).map(([k, v]) => [k, { value: round(v), ratio: Number((v / r.direct).toFixed(3)) }])),
  }))
}

main().catch((e) => { console.error(e); process.exit(1) })
