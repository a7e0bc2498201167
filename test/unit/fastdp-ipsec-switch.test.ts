/**
 * Encrypted fastdp in the overlay switch: with a password, fastdp only where kernel ESP protects
 * it (here and at the peer), else sleeve with the reason; the hello's ESP nonce and the
 * {t:'esp'} messages on the wire; the ESP probe; the ESP driver's ordering and rotation between
 * two ends on a virtual clock.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { FakeClock, nullLogger } from '../../router/deps'
import { ApiRouter } from '../../router/api'
import { chooseOverlay, wireOverlay } from '../../router/overlay-wiring'
import { decodeOverlayControl, encodeOverlayControl } from '../../router/overlay'
import { EspDriver } from '../../router/overlay/fastdp-esp'
import type { EspControl, EspEnd } from '../../router/overlay/fastdp-ipsec'
import { probeEsp, type Xfrm, type XfrmOp } from '../../router/net/xfrm'
import { NetCommandError } from '../../router/net'
import { parseDaemonArgs, type WeaverConfig } from '../../router/config'
import type { ContainerNet } from '../../router/container-net'
import type { NetHost } from '../../router/net'
import type { Allocator } from '../../ipam'

const ip = '192.168.250.2'
const esp = { secret: new Uint8Array(32), ours: new Uint8Array(32), theirs: new Uint8Array(32), localIp: '192.168.250.1' }

test('chooseOverlay with a password: fastdp needs ESP at both ends, else sleeve and why', () => {
  const here = { ready: true, encrypt: true }
  assert.equal(chooseOverlay(here, { ip, fastdp: true, esp }), { via: 'fastdp' })
  assert.equal(chooseOverlay(here, { ip, fastdp: true }), { via: 'sleeve', why: 'the peer offers fastdp without ESP encryption' })
  const noEspHere = { ready: false, encrypt: true, why: 'encrypted fastdp needs kernel ESP (no esp4 module here)' }
  assert.equal(chooseOverlay(noEspHere, { ip, fastdp: true, esp }), { via: 'sleeve', why: 'here: encrypted fastdp needs kernel ESP (no esp4 module here)' })
  assert.equal(chooseOverlay(here, { ip, fastdp: 'encrypted fastdp needs kernel ESP (no esp4 module here)' }),
    { via: 'sleeve', why: 'on the peer: encrypted fastdp needs kernel ESP (no esp4 module here)' })
  assert.equal(chooseOverlay(here, { ip, fastdp: undefined, esp }), { via: 'sleeve', why: 'peer without fastdp' })
  assert.is(chooseOverlay(here, { ip: 'fd00::2', fastdp: true, esp }).via, 'sleeve')
  // without a password ESP plays no part
  assert.equal(chooseOverlay({ ready: true }, { ip, fastdp: true }), { via: 'fastdp' })
  assert.equal(chooseOverlay({ ready: true, encrypt: false }, { ip, fastdp: true, esp }), { via: 'fastdp' })
})

test('hello: the ESP nonce round-trips, a wrong size is refused; esp messages validated', () => {
  const nonce = new Uint8Array(32).fill(5)
  const h = decodeOverlayControl(encodeOverlayControl({ t: 'hello', port: 6783, got: false, fastdp: true, esp: nonce }))
  assert.ok(h && h.t === 'hello' && h.esp)
  assert.equal(Buffer.from((h as { esp: Uint8Array }).esp), Buffer.from(nonce))
  const plain = decodeOverlayControl(encodeOverlayControl({ t: 'hello', port: 6783, got: false }))
  assert.ok(plain && !('esp' in plain), 'no password: no esp field')
  const enc = (o: unknown) => new TextEncoder().encode(JSON.stringify(o))
  assert.is(decodeOverlayControl(enc({ t: 'hello', port: 6783, got: false, esp: Buffer.alloc(16).toString('base64') })), undefined)
  assert.is(decodeOverlayControl(enc({ t: 'hello', port: 6783, got: false, esp: 7 })), undefined)
  assert.equal(decodeOverlayControl(encodeOverlayControl({ t: 'esp', sending: 4, accepting: 5 })), { t: 'esp', sending: 4, accepting: 5 })
  assert.is(decodeOverlayControl(enc({ t: 'esp', sending: -4, accepting: 5 })), undefined)
})

test('config: --esp-rotate / WEAVE_ESP_ROTATE in seconds, default 15 min', () => {
  assert.is(parseDaemonArgs([], {}).espRotateMs, 900_000)
  assert.is(parseDaemonArgs(['--esp-rotate', '5'], {}).espRotateMs, 5_000)
  assert.is(parseDaemonArgs([], { WEAVE_ESP_ROTATE: '7' }).espRotateMs, 7_000)
  assert.throws(() => parseDaemonArgs(['--esp-rotate', '0'], {}))
})

function wiring(cfg: Partial<WeaverConfig>, probeEspResult: string | undefined) {
  const config = {
    meshHost: '0.0.0.0', meshPort: 6783, mtu: 1376, password: undefined, dockerApi: 'unix:///nonexistent/x.sock',
    ovsdb: 'unix:/nonexistent/db.sock', noFastdp: false, ...cfg,
  } as unknown as WeaverConfig
  const probes: string[] = []
  const w = wireOverlay(config, {
    clock: new FakeClock(), logger: nullLogger, net: {} as NetHost, containerNet: {} as ContainerNet, allocator: { owned: () => [] } as unknown as Allocator,
    router: new ApiRouter(), kernelDatapath: () => true, probeOvsdb: async () => undefined,
    probeEsp: async () => { probes.push('esp'); return probeEspResult },
  })
  return { w, probes }
}

test('routerLink with a password: sleeve only, and why, where kernel ESP is missing', async () => {
  const no = wiring({ password: 'secret' }, 'no esp4 module here')
  assert.is(await no.w.routerLink(), 'pcap')
  assert.is(no.w.statusLines().find(([k]) => k === 'Fastdp')?.[1], 'off: encrypted fastdp needs kernel ESP (no esp4 module here)')
  assert.match(JSON.stringify(no.w.report()), /encrypted fastdp needs kernel ESP/)

  const yes = wiring({ password: 'secret' }, undefined)
  assert.is(await yes.w.routerLink(), 'ovs')
  assert.equal(yes.probes, ['esp'])

  const plain = wiring({}, 'no esp4 module here')
  assert.is(await plain.w.routerLink(), 'ovs', 'without a password fastdp needs no ESP')
  assert.equal(plain.probes, [], 'and nobody asks')
})

test('probeEsp: no module → why; the cipher refused → why; else one throw-away SA added and deleted', async () => {
  const failRun = async (argv: readonly string[]) => { throw new NetCommandError(argv, 1, 'modprobe: FATAL: Module esp4 not found') }
  assert.is(await probeEsp({ run: failRun, moduleLoaded: () => false, batch: async () => undefined }), 'no esp4 module here')
  const refused = await probeEsp({
    run: failRun, moduleLoaded: () => true,
    batch: async () => { throw new NetCommandError(['ip'], 2, 'Error: Requested AEAD algorithm not found.\nCommand failed -:1') },
  })
  assert.is(refused, 'ip xfrm cannot install rfc4106(gcm(aes)): Requested AEAD algorithm not found.')
  const lines: string[] = []
  assert.is(await probeEsp({ run: failRun, moduleLoaded: () => true, batch: async (l) => { lines.push(...l) } }), undefined)
  assert.is(lines.length, 2)
  assert.match(lines[0], /^xfrm state add src 127\.0\.0\.1 dst 127\.0\.0\.1 proto esp/)
  assert.match(lines[1], /^xfrm state delete src 127\.0\.0\.1 dst 127\.0\.0\.1 proto esp/)
})

// ---- the driver ----

function fakeXfrm(log: string[], opts: { fail?: (o: XfrmOp) => boolean; delay?: () => Promise<void> } = {}): Xfrm {
  return {
    async apply(ops, o = {}) {
      await opts.delay?.()
      let failed = 0
      for (const op of ops) {
        if (opts.fail?.(op)) {
          if (!o.bestEffort) throw new Error(`refused ${op.op}`)
          failed++
          continue
        }
        log.push(op.op === 'add-sa' ? `add-sa ${op.sa.src}>${op.sa.dst}` : op.op === 'del-sa' ? `del-sa ${op.src}>${op.dst}` : `${op.op}${'dir' in op ? ' ' + op.dir : ''}`)
      }
      return { failed }
    },
    async outBytes() { return undefined },
  }
}

const A: EspEnd = { name: 'aa:00:00:00:00:01', ip: '192.168.250.1', nonce: new Uint8Array(32).fill(1) }
const B: EspEnd = { name: 'aa:00:00:00:00:02', ip: '192.168.250.2', nonce: new Uint8Array(32).fill(2) }
const secret = new Uint8Array(32).fill(9)
const flush = () => new Promise((r) => setImmediate(r))

test('driver: the state goes to the peer only after the SAs are in; a failed setup leaves nothing and rejects', async () => {
  const log: string[] = []
  const sent: EspControl[] = []
  const d = new EspDriver({}, { clock: new FakeClock(), logger: nullLogger, xfrm: fakeXfrm(log), send: (_id, m) => { log.push('send'); sent.push(m) } })
  await d.add(2, { self: A, peer: B, secret })
  assert.equal(log, ['drop-plain', 'add-sa 192.168.250.2>192.168.250.1', 'add-sa 192.168.250.2>192.168.250.1', 'policy in', 'add-sa 192.168.250.1>192.168.250.2', 'policy out', 'send'])
  assert.equal(sent, [{ t: 'esp', sending: 0, accepting: 1 }])
  await d.stop()
  assert.ok(log.includes('del-policy out') && log.includes('allow-plain'))

  const log2: string[] = []
  const bad = new EspDriver({}, { clock: new FakeClock(), logger: nullLogger, xfrm: fakeXfrm(log2, { fail: (o) => o.op === 'policy' && o.dir === 'out' }), send: () => log2.push('send') })
  try {
    await bad.add(2, { self: A, peer: B, secret })
    assert.unreachable('should reject')
  } catch (err) {
    assert.match((err as Error).message, /refused policy/)
  }
  assert.not.ok(bad.has(2))
  assert.not.ok(log2.includes('send'))
  assert.ok(log2.includes('allow-plain') && log2.filter((l) => l.startsWith('del-sa')).length >= 3, 'what was made is taken down')
})

test('driver: a reconnect tears the old pair down before the new one is set up, even while the datapath is slow', async () => {
  const log: string[] = []
  const d = new EspDriver({}, { clock: new FakeClock(), logger: nullLogger, xfrm: fakeXfrm(log), send: () => undefined })
  await d.add(2, { self: A, peer: B, secret })
  log.length = 0
  let release!: () => void
  const datapathOut = new Promise<void>((r) => { release = r })
  const removed = d.remove(2, datapathOut)
  const added = d.add(2, { self: A, peer: B, secret: new Uint8Array(32).fill(3) })
  await flush()
  assert.equal(log, [], 'nothing happens until the datapath no longer tunnels to the peer')
  release()
  await removed
  await added
  assert.is(log[0], 'del-policy out', 'old policy goes first')
  assert.is(log.lastIndexOf('del-policy in') < log.indexOf('policy in'), true, 'the new pair is set up after')
  assert.is(log[log.length - 1], 'policy out')
  await d.stop()
})

test('driver: two ends on one virtual clock rotate their keys and keep each other\'s SAs', async () => {
  const clock = new FakeClock()
  const kernel = { a: new Map<number, boolean>(), b: new Map<number, boolean>() }
  const xf = (host: Map<number, boolean>): Xfrm => ({
    async apply(ops) {
      for (const o of ops) {
        if (o.op === 'add-sa') host.set(o.sa.spi, true)
        if (o.op === 'del-sa') host.delete(o.spi)
      }
      return { failed: 0 }
    },
    async outBytes() { return undefined },
  })
  // eslint-disable-next-line prefer-const -- db's send closes over da, and da's over db (assigned below)
  let db!: EspDriver
  const da = new EspDriver({ rotation: { intervalMs: 30_000, graceMs: 2_000 } }, { clock, logger: nullLogger, xfrm: xf(kernel.a), send: (_id, m) => { queueMicrotask(() => db.onControl(1, m)) } })
  db = new EspDriver({ rotation: { intervalMs: 30_000, graceMs: 2_000 } }, { clock, logger: nullLogger, xfrm: xf(kernel.b), send: (_id, m) => { queueMicrotask(() => da.onControl(2, m)) } })
  await Promise.all([da.add(2, { self: A, peer: B, secret }), db.add(1, { self: B, peer: A, secret })])
  for (let s = 0; s < 100; s++) {
    clock.advance(1_000)
    for (let i = 0; i < 5; i++) await flush()
  }
  const sa = da.status(2)!, sb = db.status(1)!
  assert.is(sa.rotations, 3)
  assert.is(sb.rotations, 3)
  assert.is(sa.sending, 3)
  assert.is(sb.peerSending, 3)
  assert.equal(sb.inbound, [3, 4])
  assert.is(kernel.a.size, 3, 'outbound 3, inbound 3 and 4: old ones deleted')
  await da.stop(); await db.stop()
  assert.is(kernel.a.size + kernel.b.size, 0)
  assert.is(clock.pending(), 0, 'stop leaves no timer')
})

test.run()
