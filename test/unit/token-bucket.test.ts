import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fc from 'fast-check'
import { FakeClock } from '../../router/deps'
import { TokenBucket } from '../../router/mesh/token-bucket'

test('starts full, then refills one token per interval', () => {
  const clock = new FakeClock(1_000_000)
  const b = new TokenBucket(20, 50, () => clock.now())
  assert.is(b.available(), 20)
  for (let i = 0; i < 20; i++) assert.ok(b.take(), `token ${i}`)
  assert.not.ok(b.take())
  assert.is(b.waitMs(), 50)
  clock.advance(49)
  assert.not.ok(b.take())
  assert.is(b.waitMs(), 1)
  clock.advance(1)
  assert.ok(b.take())
  assert.not.ok(b.take())
})

test('never holds more than its capacity after a long idle time', () => {
  const clock = new FakeClock(0)
  const b = new TokenBucket(3, 10, () => clock.now())
  clock.advance(1_000_000)
  assert.is(b.available(), 3)
  assert.ok(b.take()); assert.ok(b.take()); assert.ok(b.take())
  assert.not.ok(b.take())
})

test('property: over any schedule, takes <= capacity + elapsed / interval', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 30 }), fc.integer({ min: 1, max: 100 }), fc.array(fc.integer({ min: 0, max: 200 }), { maxLength: 200 }), (cap, interval, steps) => {
    const clock = new FakeClock(0)
    const b = new TokenBucket(cap, interval, () => clock.now())
    let taken = 0
    for (const s of steps) {
      clock.advance(s)
      // Drain: waitMs() 0 must mean take() succeeds, and the loop must end.
      for (let guard = 0; b.waitMs() === 0; guard++) {
        if (!b.take() || guard > cap) return false
        taken++
      }
      if (b.take()) return false
    }
    return taken <= cap + Math.floor(clock.now() / interval)
  }), { numRuns: 300, seed: 5 })
})

test('rejects a nonsense configuration', () => {
  assert.throws(() => new TokenBucket(0, 50, () => 0))
  assert.throws(() => new TokenBucket(5, 0, () => 0))
})

test.run()
