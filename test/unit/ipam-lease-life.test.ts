/**
 * Property test of lease lifetime (issue 13's duplicate address): containers are run, stopped,
 * restarted, started, removed and attached (`weave attach`, allocations and claims) in any order,
 * Docker's events (start/die/destroy) reach the daemon in order but late, and time passes across
 * IPAM's 30 s die grace. The daemon's side is what router/proxy-wiring does: die → containerDied,
 * start → containerStarted (+ the proxy's attach for its containers), destroy → release.
 *
 * Invariants after every step: no address is on the interfaces of two running containers, and
 * every address on a running container's interface is leased to it. The old code (the grace timer
 * in the proxy, cancelled only by the proxy's own attach) fails the first on the sequence
 * run plain c → weave attach → docker restart → weave attach → 31 s → run another.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { FakeClock, memoryLogger, seededRng } from '../../router/deps'
import type { PeerName } from '../../router/mesh'
import { createIpam, memoryStore, parseCidr, formatCidr, type Ipam, type Cidr } from '../../ipam'
import { soloGossipHost } from '../../ipam'

const SELF = '02:00:00:00:00:01' as PeerName
const SUBNETS = ['10.2.2.0/28', '10.2.3.0/28'].map((s) => parseCidr(s)!)
const GRACE_MS = 30_000

type Want = { kind: 'net'; subnet: number } | { kind: 'ip'; host: number }
interface Ctr {
  id: string
  /** Attached by the proxy on every start (WEAVE_CIDR), or only by `weave attach`. */
  proxy: boolean
  want: Want
  state: 'none' | 'running' | 'stopped' | 'removed'
  iface: Set<string>
}

type Op =
  | { k: 'run'; c: number }
  | { k: 'attach'; c: number }
  | { k: 'stop'; c: number }
  | { k: 'restart'; c: number }
  | { k: 'start'; c: number }
  | { k: 'remove'; c: number }
  | { k: 'deliver'; n: number }
  | { k: 'replay'; back: number }
  | { k: 'advance'; ms: number }

const N = 3
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ k: fc.constant('run' as const), c: fc.nat(N - 1) }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('attach' as const), c: fc.nat(N - 1) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('stop' as const), c: fc.nat(N - 1) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('restart' as const), c: fc.nat(N - 1) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('start' as const), c: fc.nat(N - 1) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('remove' as const), c: fc.nat(N - 1) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('deliver' as const), n: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('replay' as const), back: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('advance' as const), ms: fc.oneof(fc.integer({ min: 0, max: 5_000 }), fc.integer({ min: 25_000, max: 40_000 })) }) },
)
const ctrArb = fc.record({
  proxy: fc.boolean(),
  want: fc.oneof(
    fc.record({ kind: fc.constant('net' as const), subnet: fc.nat(1) }),
    fc.record({ kind: fc.constant('ip' as const), host: fc.integer({ min: 1, max: 4 }) }),
  ),
})

const turn = () => new Promise<void>((r) => setImmediate(r))
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await turn()
}

interface Run { ipam: Ipam; clock: FakeClock; ctrs: Ctr[]; events: Array<{ action: string; id: string }>; delivered: number }

/** The daemon's side of one Docker event (router/proxy-wiring's onEvent). */
async function onEvent(r: Run, e: { action: string; id: string }): Promise<void> {
  const a = r.ipam.allocator
  if (e.action === 'destroy') await a.release(e.id)
  else if (e.action === 'die') a.containerDied(e.id)
  else if (e.action === 'start') {
    a.containerStarted(e.id)
    const c = r.ctrs.find((x) => x.id === e.id)!
    if (c.proxy && c.state === 'running') await attach(r, c)
  }
}

/** Allocate or claim what `c` wants and put it on its interface (proxy start hook, weave attach). */
async function attach(r: Run, c: Ctr): Promise<void> {
  const a = r.ipam.allocator
  let got: Cidr
  try {
    if (c.want.kind === 'net') got = await a.allocate(c.id, SUBNETS[c.want.subnet])
    else {
      got = { ip: SUBNETS[1].ip + c.want.host, prefix: 28 }
      await a.claim(c.id, got)
    }
  } catch {
    return // e.g. the address is someone else's: nothing attached
  }
  if (c.state === 'running') c.iface.add(formatCidr(got))
}

async function step(r: Run, o: Op): Promise<void> {
  const c = 'c' in o ? r.ctrs[o.c] : undefined
  const push = (action: string) => r.events.push({ action, id: c!.id })
  switch (o.k) {
    case 'run':
      if (c!.state !== 'none') return
      c!.state = 'running'
      push('start')
      if (c!.proxy) await attach(r, c!) // the proxy attaches before the start answer returns
      return
    case 'attach':
      if (c!.state === 'running') await attach(r, c!)
      return
    case 'stop':
      if (c!.state !== 'running') return
      c!.state = 'stopped'
      c!.iface.clear()
      push('die')
      return
    case 'restart':
    case 'start':
      if (o.k === 'restart' && c!.state !== 'running') return
      if (o.k === 'start' && c!.state !== 'stopped') return
      if (o.k === 'restart') push('die')
      c!.state = 'running'
      c!.iface.clear() // a new network namespace
      push('start')
      if (c!.proxy) await attach(r, c!)
      return
    case 'remove':
      if (c!.state === 'none' || c!.state === 'removed') return
      if (c!.state === 'running') push('die')
      c!.state = 'removed'
      c!.iface.clear()
      push('destroy')
      return
    case 'deliver':
      for (let i = 0; i < o.n && r.delivered < r.events.length; i++) await onEvent(r, r.events[r.delivered++])
      return
    case 'replay': {
      // The events stream reconnected asking for events since a moment ago: some come again.
      const from = Math.max(0, r.delivered - o.back)
      for (let i = from; i < r.delivered; i++) await onEvent(r, r.events[i])
      return
    }
    case 'advance':
      // The events stream is never half a minute late: what happened is delivered first.
      while (r.delivered < r.events.length) await onEvent(r, r.events[r.delivered++])
      await settle()
      r.clock.advance(o.ms)
      await settle()
  }
}

function check(r: Run, trail: string[]): void {
  const holder = new Map<string, string>()
  for (const c of r.ctrs) {
    if (c.state !== 'running') continue
    const leased = new Set(r.ipam.allocator.lookup(c.id).map(formatCidr))
    for (const a of c.iface) {
      const other = holder.get(a)
      assert.ok(other === undefined, `${a} on two running containers: ${other} and ${c.id}\n${trail.join('\n')}`)
      holder.set(a, c.id)
      assert.ok(leased.has(a), `${c.id} runs with ${a} but its lease is gone\n${trail.join('\n')}`)
    }
  }
}

async function scenario(specs: Array<{ proxy: boolean; want: Want }>, ops: Op[], isRunning: boolean): Promise<void> {
  const clock = new FakeClock(0)
  const ctrs: Ctr[] = specs.map((s, i) => ({ id: `c${i}`, proxy: s.proxy, want: s.want, state: 'none', iface: new Set() }))
  const ipam = createIpam(
    { range: '10.2.0.0/16', defaultSubnet: '10.2.2.0/24', init: `seed=${SELF}`, tickMs: 1000, releaseGraceMs: GRACE_MS },
    {
      clock, rng: seededRng(1), logger: memoryLogger('warn'), host: soloGossipHost(SELF, 'solo'), store: memoryStore(),
      ...(isRunning ? { isRunning: async (id: string) => ctrs.find((c) => c.id === id)?.state === 'running' } : {}),
    },
  )
  await ipam.start()
  const r: Run = { ipam, clock, ctrs, events: [], delivered: 0 }
  const trail: string[] = []
  try {
    for (const o of ops) {
      trail.push(JSON.stringify(o))
      await step(r, o)
      await settle()
      check(r, trail)
    }
  } finally {
    await ipam.stop()
  }
}

test('the issue 13 sequence: restart + weave attach + 31 s, then a new container', async () => {
  const plain = { proxy: false, want: { kind: 'net', subnet: 1 } as Want }
  await scenario([plain, plain], [
    { k: 'run', c: 0 }, { k: 'attach', c: 0 }, { k: 'deliver', n: 1 },
    { k: 'restart', c: 0 }, { k: 'deliver', n: 2 }, { k: 'attach', c: 0 },
    { k: 'advance', ms: 31_000 },
    { k: 'run', c: 1 }, { k: 'attach', c: 1 },
  ], false)
})

test('a container that died and did not come back loses its leases after the grace, not before', async () => {
  const clock = new FakeClock(0)
  const ipam = createIpam(
    { range: '10.2.0.0/16', init: `seed=${SELF}`, releaseGraceMs: GRACE_MS },
    { clock, rng: seededRng(1), logger: memoryLogger('warn'), host: soloGossipHost(SELF, 'solo'), store: memoryStore() },
  )
  await ipam.start()
  const a = ipam.allocator
  const first = formatCidr(await a.allocate('dead'))
  a.containerDied('dead')
  clock.advance(GRACE_MS - 2000)
  await settle()
  assert.is(a.lookup('dead').map(formatCidr).join(), first, 'kept during the grace')
  clock.advance(3000)
  await settle()
  assert.is(a.lookup('dead').length, 0, 'released after the grace')
  assert.is(a.dyingCount(), 0)
  await ipam.stop()
})

test('Docker says it runs after all: the leases stay', async () => {
  const clock = new FakeClock(0)
  const ipam = createIpam(
    { range: '10.2.0.0/16', init: `seed=${SELF}`, releaseGraceMs: GRACE_MS },
    { clock, rng: seededRng(1), logger: memoryLogger('warn'), host: soloGossipHost(SELF, 'solo'), store: memoryStore(), isRunning: async () => true },
  )
  await ipam.start()
  const a = ipam.allocator
  await a.allocate('alive')
  a.containerDied('alive')
  clock.advance(GRACE_MS + 2000)
  await settle()
  assert.is(a.lookup('alive').length, 1)
  assert.is(a.dyingCount(), 0)
  await ipam.stop()
})

test('start-up GC: gone → released, stopped → the grace, running and non-Docker holders kept; no Docker → all kept', async () => {
  const store = memoryStore()
  const mk = (states?: (ids: string[]) => Promise<Map<string, 'running' | 'stopped' | 'gone'> | undefined>, clock = new FakeClock(0)) =>
    createIpam(
      { range: '10.2.0.0/16', init: `seed=${SELF}`, releaseGraceMs: GRACE_MS },
      { clock, rng: seededRng(1), logger: memoryLogger('warn'), host: soloGossipHost(SELF, 'solo'), store, containerStates: states },
    )
  const first = mk()
  await first.start()
  for (const id of ['gone', 'stopped', 'running', 'weave:expose']) await first.allocator.allocate(id)
  await first.stop()
  // Docker cannot be asked: everything is kept.
  const blind = mk(async () => undefined)
  await blind.start()
  await settle()
  assert.is(blind.allocator.owned().length, 4)
  await blind.stop()
  const clock = new FakeClock(0)
  const asked: string[][] = []
  const states = new Map([['gone', 'gone'], ['stopped', 'stopped'], ['running', 'running']] as const)
  const again = mk(async (ids) => { asked.push(ids); return new Map(ids.filter((i) => states.has(i as never)).map((i) => [i, states.get(i as never)!])) }, clock)
  await again.start()
  await settle()
  const held = () => again.allocator.owned().map((o) => o.containerid).sort()
  assert.equal(held(), ['running', 'stopped', 'weave:expose'])
  assert.is(again.allocator.dyingCount(), 1, 'the stopped container is in its grace')
  clock.advance(GRACE_MS + 2000)
  await settle()
  assert.equal(held(), ['running', 'weave:expose'])
  await again.stop()
})

for (const isRunning of [false, true]) {
  test(`property: never one address for two running containers (${isRunning ? 'with' : 'without'} Docker's liveness check)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(ctrArb, { minLength: N, maxLength: N }), fc.array(opArb, { maxLength: 40, size: 'max' }), (specs, ops) => scenario(specs, ops, isRunning)),
      { numRuns: isRunning ? 200 : 500 },
    )
  })
}

test.run()
