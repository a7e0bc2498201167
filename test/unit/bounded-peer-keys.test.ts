// Values a peer chooses (its claimed name, a gossip channel, a source MAC) must not grow memory:
// each structure keyed by them is flooded with 20k-200k distinct keys (many times its cap), and
// the heap after a full GC must stay within a few MiB of where it started (unbounded, each flood
// retains more than the limit), the log within a bounded number of lines.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as v8 from 'node:v8'
import * as vm from 'node:vm'
import { BoundedMap, LogOnce, seededRng, type Logger } from '../../router/deps'
import { GossipChannels } from '../../router/mesh/gossip-channel'
import type { PeerName } from '../../router/mesh'
import { MacTable } from '../../router/overlay/mac-table'
import { createIpam } from '../../ipam'
import { SimBus } from '../../ipam/testing'
import { HeapClock } from '../sim/mesh-harness'

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void
const FLOOD = 200_000
const MIB = 1 << 20

/** Heap growth (bytes) that `fn` leaves behind after full collections. */
async function retained(fn: () => void | Promise<void>): Promise<number> {
  gc(); gc()
  const before = process.memoryUsage().heapUsed
  await fn()
  gc(); gc()
  return process.memoryUsage().heapUsed - before
}

/** A logger that only counts warnings (keeping lines would itself grow memory). */
function countingLogger(): Logger & { warns: number } {
  const l = { warns: 0, debug() {}, info() {}, warn() { l.warns++ }, error() {}, child: () => l }
  return l
}

const hex2 = (n: number) => (n & 255).toString(16).padStart(2, '0')
const peerName = (i: number) => `02:00:${hex2(i >>> 24)}:${hex2(i >>> 16)}:${hex2(i >>> 8)}:${hex2(i)}` as PeerName

test('BoundedMap keeps the newest `cap` entries and counts the rest', () => {
  const m = new BoundedMap<string, number>(3)
  for (let i = 0; i < 10; i++) m.set(`k${i}`, i)
  assert.equal([...m.keys()], ['k7', 'k8', 'k9'])
  assert.is(m.evicted, 7)
  m.set('k7', 70) // setting again makes it the newest
  m.set('x', 0)
  assert.equal([...m.keys()], ['k9', 'k7', 'x'])
  const big = new BoundedMap<number, number>(16) // full: the oldest eighth goes at once
  for (let i = 0; i < 17; i++) big.set(i, i)
  assert.equal([...big.keys()], [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16])
  assert.throws(() => new BoundedMap(0))
})

test('LogOnce: once per key; a flood of new keys keeps cap keys and logs ~1 line in 1000', async () => {
  const lines: string[] = []
  const once = new LogOnce((m) => lines.push(m), 100)
  assert.ok(once.once('a', 'first a'))
  assert.not.ok(once.once('a', 'again a'))
  const grew = await retained(() => { for (let i = 0; i < FLOOD; i++) once.once(`bad-gossip:${peerName(i)}:reason-${i % 7}`, `bad from ${i}`) })
  assert.ok(once.size <= 100, `${once.size} keys`)
  assert.ok(lines.length <= 100 + FLOOD / 1000 + 1, `${lines.length} lines`)
  assert.match(lines[lines.length - 1], /distinct such messages: \d+ not logged/)
  assert.ok(grew < 4 * MIB, `retained ${(grew / MIB).toFixed(1)} MiB`)
})

// JSON.parse throwing costs ~40 µs each: 20k senders (20 times the cap) keep this under a second.
// The log is the discriminator here: a Set per key logs every one of the 40k (sender, kind) pairs.
test('ipam: bad messages from 20k claimed senders: bounded log, bounded heap', async () => {
  const SENDERS = 20_000
  const bus = new SimBus(32)
  const log = countingLogger()
  const A = peerName(0xffff)
  const ipam = createIpam({ range: '10.32.0.0/16', init: `seed=${A}` }, { clock: bus.clock, rng: seededRng(1), logger: log, host: bus.addPeer(A) })
  await ipam.start()
  try {
    const junk = Uint8Array.of(0xc1, 0xff, 0x00) // not MessagePack
    const grew = await retained(() => {
      for (let i = 0; i < SENDERS; i++) {
        ipam.allocator.onGossipUnicast(peerName(i), junk)
        ipam.allocator.onGossipBroadcast(peerName(i), junk)
      }
    })
    assert.ok(log.warns <= 1024 + (2 * SENDERS) / 1000, `${log.warns} warnings for ${2 * SENDERS} distinct (sender, kind) pairs`)
    assert.ok(log.warns >= 1024, 'the first ones are logged')
    assert.ok(grew < 4 * MIB, `retained ${(grew / MIB).toFixed(1)} MiB`)
  } finally { await ipam.stop() }
})

// 50k channels: unbounded, each surrogate (object, Map, remembered update) retains > 300 bytes
test('gossip: messages on 50k invented channel names keep a bounded set of surrogates', async () => {
  const CHANNELS = 50_000
  const clock = new HeapClock()
  const log = countingLogger()
  const self = peerName(1), peer = peerName(2)
  const ch = new GossipChannels({
    self, clock, rng: seededRng(1), logger: log,
    nextHop: () => peer, broadcastChildren: () => [], neighbours: () => [peer], peerCount: () => 2,
    send: () => true,
  })
  const grew = await retained(() => {
    for (let i = 0; i < CHANNELS; i++) ch.handle(peer, { type: 'gossip', channel: `chan-${i}-${'x'.repeat(20)}`, src: peer, payload: Uint8Array.of(i & 255, i >> 8 & 255, i >> 16 & 255) })
    clock.advanceTo(clock.now() + 1000) // flush whatever the surrogates queued for relaying
  })
  assert.ok(grew < 8 * MIB, `retained ${(grew / MIB).toFixed(1)} MiB`)
  assert.ok(log.warns >= 1 && log.warns <= 1 + CHANNELS / 1000, `${log.warns} warnings about invented channels`)
})

test('sleeve MAC learning: frames from 200k random source MACs keep the table at its cap', async () => {
  const t = new MacTable<number>({ now: () => 0 }, 0, 600_000, 10_000)
  const grew = await retained(() => { for (let i = 0; i < FLOOD; i++) t.learnRemote(0x020000000000 + i, 7) })
  assert.ok(t.size <= 10_000 && t.size >= 10_000 - 10_000 / 8, `${t.size} entries`)
  assert.is(t.evicted, FLOOD - t.size)
  assert.is(t.lookup(0x020000000000 + FLOOD - 1), 7, 'the newest is known')
  assert.is(t.lookup(0x020000000000), undefined, 'the oldest went first')
  assert.ok(grew < 4 * MIB, `retained ${(grew / MIB).toFixed(1)} MiB`)
})

test.run()
