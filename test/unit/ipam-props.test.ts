/**
 * Property tests (fast-check) of IPAM's safety: for random sequences of allocations, releases,
 * donations, merges in any order and partitions with later heals among 2-10 peers, no address is
 * held by two live leases, no address is believed owned by two peers, ring invariants hold, and
 * after healing every peer has the same ring (every address owned by exactly one peer). Peers may
 * also die for good and be removed by rmpeer from any live peer, concurrently too.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { memoryLogger, seededRng } from '../../router/deps'
import { Ring } from '../../ipam/ring'
import { largestAlignedBlock } from '../../ipam/address'
import { type Ipam, createIpam, memoryStore } from '../../ipam'
import { SimBus, settle, simPeerName } from '../../ipam/testing'

function overlaps(a: { start: number; end: number }[], b: { start: number; end: number }[]): boolean {
  return a.some((x) => b.some((y) => x.start < y.end && y.start < x.end))
}

test('ring replicas: donations and merges in any order keep ownership exclusive and converge', () => {
  const op = fc.oneof(
    fc.record({ k: fc.constant('donate' as const), i: fc.nat(), j: fc.nat(), at: fc.nat(), size: fc.integer({ min: 1, max: 64 }) }),
    fc.record({ k: fc.constant('merge' as const), i: fc.nat(), j: fc.nat() }),
    fc.record({ k: fc.constant('lease' as const), i: fc.nat(), at: fc.nat() }),
    fc.record({ k: fc.constant('free' as const), i: fc.nat() }),
  )
  fc.assert(
    fc.property(fc.integer({ min: 2, max: 10 }), fc.array(op, { maxLength: 80 }), (n, ops) => {
      const names = Array.from({ length: n }, (_, i) => simPeerName(i + 1))
      const base = new Ring(0, 1024)
      base.claimForPeers(names)
      const reps = names.map(() => base.clone())
      const leases = names.map(() => new Set<number>())
      const hasLeases = (i: number) => (r: { start: number; end: number }) => [...leases[i]].some((a) => a >= r.start && a < r.end)
      for (const o of ops) {
        const i = o.i % n
        const me = names[i]
        if (o.k === 'donate') {
          const owned = reps[i].ownedBy(me)
          if (!owned.length) continue
          const r = owned[o.at % owned.length]
          const b = largestAlignedBlock(r, o.size)
          if (!b || hasLeases(i)(b)) continue
          reps[i].grant(me, b, names[o.j % n], () => 1)
        } else if (o.k === 'merge') {
          reps[i].merge(reps[o.j % n], me, hasLeases(i))
        } else if (o.k === 'lease') {
          const owned = reps[i].ownedBy(me)
          if (!owned.length) continue
          const r = owned[o.at % owned.length]
          leases[i].add(r.start + (o.at % (r.end - r.start)))
        } else {
          reps[i].reportFree(me, (r) => r.end - r.start - [...leases[i]].filter((a) => a >= r.start && a < r.end).length)
        }
        for (let x = 0; x < n; x++) {
          assert.is(reps[x].check(), undefined)
          for (const a of leases[x]) assert.is(reps[x].owner(a), names[x], 'lease outside believed ownership')
          for (let y = x + 1; y < n; y++) assert.not.ok(overlaps(reps[x].ownedBy(names[x]), reps[y].ownedBy(names[y])), 'two owners')
        }
      }
      // Heal: everyone merges everyone until nothing changes; then all agree.
      for (let round = 0; round < n + 2; round++) for (let x = 0; x < n; x++) for (let y = 0; y < n; y++) reps[x].merge(reps[y], names[x], hasLeases(x))
      const w = JSON.stringify(reps[0].toWire())
      for (const r of reps) assert.is(JSON.stringify(r.toWire()), w)
    }),
    { numRuns: 300 },
  )
})

test('allocators over a partitioning mesh: no address leased twice, ownership exclusive, rings converge', async () => {
  const cmd = fc.oneof(
    { weight: 5, arbitrary: fc.record({ k: fc.constant('alloc' as const), p: fc.nat(), id: fc.nat(60) }) },
    { weight: 2, arbitrary: fc.record({ k: fc.constant('burst' as const), p: fc.nat(2), n: fc.integer({ min: 5, max: 30 }), id: fc.nat(60) }) },
    { weight: 2, arbitrary: fc.record({ k: fc.constant('release' as const), p: fc.nat(), id: fc.nat(60) }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('partition' as const), mask: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('heal' as const) }) },
    { weight: 2, arbitrary: fc.record({ k: fc.constant('run' as const), ms: fc.integer({ min: 1, max: 3000 }) }) },
    { weight: 2, arbitrary: fc.record({ k: fc.constant('kill' as const), p: fc.nat() }) },
    { weight: 3, arbitrary: fc.record({ k: fc.constant('rmpeer' as const), p: fc.nat(), q: fc.nat() }) },
    { weight: 3, arbitrary: fc.record({ k: fc.constant('kill-rmpeer' as const), p: fc.nat(), q: fc.nat(), twice: fc.boolean() }) },
  )
  let donations = 0
  let leased = 0
  let removals = 0
  const rmErrors = new Map<string, number>()
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 2, max: 10 }), fc.boolean(), fc.integer({ min: 1, max: 1e6 }), fc.array(cmd, { maxLength: 60 }), async (n, seeded, seed, cmds) => {
      const bus = new SimBus(seed)
      const names = Array.from({ length: n }, (_, i) => simPeerName(i + 1))
      const init = seeded ? `seed=${names.join(',')}` : `consensus=${n}`
      const nodes: Ipam[] = []
      const logs: Array<ReturnType<typeof memoryLogger>> = []
      for (let i = 0; i < n; i++) {
        const ipam = createIpam(
          { range: '10.70.0.0/26', init, requestTimeoutMs: 5000 },
          { clock: bus.clock, rng: seededRng(seed + i), logger: logs[logs.push(memoryLogger('debug')) - 1], host: bus.addPeer(names[i]), store: memoryStore() },
        )
        await ipam.start()
        nodes.push(ipam)
      }
      const dead = new Set<number>()
      const live = () => [...Array(n).keys()].filter((i) => !dead.has(i))
      const check = () => {
        const holder = new Map<number, string>()
        for (const x of live()) {
          const a = nodes[x].allocator
          assert.is(a.ring.check(), undefined)
          assert.is(a.space.check(), undefined)
          for (const [addr] of a.space.leases()) {
            assert.is(a.ring.owner(addr), names[x], `seed ${seed}: lease outside own ranges`)
            assert.not.ok(holder.has(addr), `seed ${seed}: address ${addr} leased by ${holder.get(addr)} and ${names[x]}`)
            holder.set(addr, names[x])
          }
          for (const y of live()) {
            if (y <= x) continue
            assert.not.ok(overlaps(a.ring.ownedBy(names[x]), nodes[y].allocator.ring.ownedBy(names[y])), `seed ${seed}: two owners`)
          }
        }
      }
      for (const c of cmds) {
        if (c.k === 'alloc') nodes[c.p % n].allocator.allocate(`c${c.id}`).catch(() => {})
        else if (c.k === 'burst') {
          for (let k = 0; k < c.n; k++) nodes[c.p % n].allocator.allocate(`b${c.id + k}`).catch(() => {})
        } else if (c.k === 'release') void nodes[c.p % n].allocator.release(`c${c.id}`)
        else if (c.k === 'partition') bus.partition([names.filter((_, i) => (c.mask >> i) & 1)])
        else if (c.k === 'heal') bus.heal()
        else if (c.k === 'kill') {
          const x = c.p % n
          if (!dead.has(x) && live().length > 2) {
            dead.add(x)
            await nodes[x].stop()
            bus.stopPeer(names[x])
          }
        } else if (c.k === 'rmpeer' || c.k === 'kill-rmpeer') {
          if (c.k === 'kill-rmpeer') {
            const x = c.q % n
            if (!dead.has(x) && live().length > 2) {
              dead.add(x)
              await nodes[x].stop()
              bus.stopPeer(names[x])
            }
          }
          const takers = live()
          const gone = [...dead]
          // Sometimes two live peers try the same removal at once.
          if (gone.length && c.k === 'kill-rmpeer' && c.twice) {
            const q = gone[c.q % gone.length]
            const also = gone.filter((g) => g !== q).map((g) => names[g])
            nodes[takers[(c.p + 1) % takers.length]].allocator.removePeer(names[q], also).then(() => { removals++ }, () => {})
          }
          if (gone.length) {
            const q = gone[c.q % gone.length]
            const also = gone.filter((g) => g !== q).map((g) => names[g])
            nodes[takers[c.p % takers.length]].allocator.removePeer(names[q], also).then(() => { removals++ }, (e: Error) => { rmErrors.set(e.message.replace(/[0-9a-f:]{17}/g, 'P').replace(/\d+/g, 'N'), (rmErrors.get(e.message.replace(/[0-9a-f:]{17}/g, 'P').replace(/\d+/g, 'N')) ?? 0) + 1) })
          }
        } else await bus.run(c.ms)
        // Check before any message moves (a double takeover shows only until gossip resolves it)...
        await settle()
        check()
        // ...and after.
        await bus.run(10)
        check()
      }
      bus.heal()
      await bus.run(8000)
      check()
      const w = JSON.stringify(nodes[live()[0]].allocator.ring.toWire())
      for (const x of live()) assert.is(JSON.stringify(nodes[x].allocator.ring.toWire()), w, `seed ${seed}: rings differ after heal`)
      donations += logs.reduce((k, l) => k + l.lines.filter((line) => line.includes('donating')).length, 0)
      for (const x of live()) {
        leased += nodes[x].allocator.space.leaseCount()
        await nodes[x].stop()
      }
    }),
    { numRuns: 40 },
  )
  // The property is only worth something if the runs exercised donations and leases.
  assert.ok(donations > 0 && leased > 0 && removals > 0, `runs exercised ${donations} donations, ${leased} leases, ${removals} removals`)
  if (process.env.IPAM_PROPS_DEBUG) console.log(rmErrors)
  console.log(`    allocator property: ${donations} donations, ${leased} leases at the ends of the runs, ${removals} rmpeers`)
})

test.run()
