/** Connection maker: backoff schedule, targets, discovery, limits, permanent failures. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { ConnectionMaker, nextTryLater, normalizeAddr, type Target } from '../../router/mesh/connection-maker'
import { seededRng } from '../../router/deps'

const world = (o: Partial<{ addrs: string[]; ips: string[]; count: number; discovered: string[] }> = {}) => ({
  connectedAddrs: new Set(o.addrs ?? []),
  connectedIps: new Set(o.ips ?? []),
  connectionCount: o.count ?? 0,
  discovered: o.discovered ?? [],
})
const dials = (effects: { kind: string; addr?: string }[]) => effects.filter((e) => e.kind === 'dial').map((e) => e.addr)

test('backoff: delay uniform in [i/2, 3i/2), interval ×1.5 up to 6 min', () => {
  const rng = seededRng(1)
  let t: Target = { addr: 'a:1', kind: 'direct', state: 'retrying', intervalMs: 2000, tryAfter: 0, lastAttempt: 0 }
  const intervals: number[] = []
  for (let i = 0; i < 20; i++) {
    const before = t.intervalMs
    t = nextTryLater(t, 1000, rng)
    assert.ok(t.tryAfter >= 1000 + before / 2 && t.tryAfter < 1000 + (before * 3) / 2, `try ${i}`)
    intervals.push(t.intervalMs)
  }
  assert.is(intervals[0], 3000)
  assert.is(intervals[1], 4500)
  assert.is(Math.max(...intervals), 360_000)
  // Jitter spreads: the extremes of the [0, 1) random source map to the ends of the window.
  const lo = nextTryLater({ ...t, intervalMs: 2000 }, 0, { next: () => 0, int: () => 0, bytes: (n) => new Uint8Array(n) })
  const hi = nextTryLater({ ...t, intervalMs: 2000 }, 0, { next: () => 0.999, int: () => 0, bytes: (n) => new Uint8Array(n) })
  assert.is(lo.tryAfter, 1000)
  assert.ok(hi.tryAfter > 2990 && hi.tryAfter < 3000)
})

test('addresses: default port, explicit port, IPv6, invalid', () => {
  assert.is(normalizeAddr('10.0.0.1'), '10.0.0.1:6783')
  assert.is(normalizeAddr('host.example:7000'), 'host.example:7000')
  assert.is(normalizeAddr('fe80::1'), '[fe80::1]:6783')
  assert.is(normalizeAddr('[fe80::1]:99'), '[fe80::1]:99')
  assert.is(normalizeAddr('a:b'), undefined)
  assert.is(normalizeAddr(''), undefined)
})

test('direct targets: first try immediate, retry after failure with backoff, reset after a long life', () => {
  const m = new ConnectionMaker({ port: 6783, connLimit: 0, discovery: false }, seededRng(2))
  const r = m.connect(['10.0.0.2'], false, 0)
  assert.equal(r.effects, [{ kind: 'persist', direct: ['10.0.0.2:6783'] }])
  assert.equal(dials(m.tick(0, world())), ['10.0.0.2:6783'])
  assert.equal(dials(m.tick(0, world())), [], 'no second dial while connecting')
  m.dialFailed('10.0.0.2:6783', undefined, 'refused', 0)
  const t = m.target('10.0.0.2:6783')!
  assert.is(t.state, 'retrying')
  assert.ok(t.tryAfter >= 1000 && t.tryAfter < 3000)
  assert.is(m.nextWake(0), t.tryAfter)
  assert.equal(dials(m.tick(t.tryAfter - 1, world())), [])
  assert.equal(dials(m.tick(t.tryAfter, world())), ['10.0.0.2:6783'])
  m.dialSucceeded('10.0.0.2:6783')
  m.connectionClosed('10.0.0.2:6783', 'heartbeat timeout', t.tryAfter + 120_000)
  assert.is(m.target('10.0.0.2:6783')!.state, 'waiting')
  assert.is(m.target('10.0.0.2:6783')!.intervalMs, 2000)
})

test('a permanent failure (self-connection) is never retried; connect again revives it', () => {
  const m = new ConnectionMaker({ port: 6783, connLimit: 0, discovery: false }, seededRng(2))
  m.connect(['10.0.0.1'], false, 0)
  m.tick(0, world())
  m.dialFailed('10.0.0.1:6783', { code: 'self-connection', message: 'self', permanent: true }, 'self', 0)
  assert.is(m.target('10.0.0.1:6783')!.state, 'failed')
  assert.is(m.nextWake(0), undefined)
  assert.equal(dials(m.tick(1e9, world())), [])
  m.connect(['10.0.0.1'], false, 5)
  assert.equal(dials(m.tick(5, world())), ['10.0.0.1:6783'])
})

test('discovery: dials discovered peers up to the limit; none with discovery off; forget and replace', () => {
  const m = new ConnectionMaker({ port: 6783, connLimit: 3, discovery: true }, seededRng(4))
  const d = dials(m.tick(0, world({ count: 1, discovered: ['a:1', 'b:1', 'c:1', 'd:1'] })))
  assert.is(d.length, 2, 'limit 3 with one connection')
  const off = new ConnectionMaker({ port: 6783, connLimit: 3, discovery: false }, seededRng(4))
  assert.equal(dials(off.tick(0, world({ discovered: ['a:1'] }))), [])
  m.connect(['x:1', 'y:1'], false, 0)
  m.connect(['z:1'], true, 0)
  assert.equal(m.directPeers(), ['z:1'])
  m.forget(['z:1'])
  assert.equal(m.directPeers(), [])
})

test('a direct target is skipped while its peer is connected to us inbound', () => {
  const m = new ConnectionMaker({ port: 6783, connLimit: 0, discovery: false }, seededRng(5))
  m.connect(['10.0.0.3'], false, 0)
  assert.equal(dials(m.tick(0, world({ ips: ['10.0.0.3'] }))), [])
  assert.equal(dials(m.tick(5000, world())), ['10.0.0.3:6783'])
})

test.run()
