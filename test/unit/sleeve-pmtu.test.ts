/** Sleeve path-MTU search: converges on the path's real figure from any kernel figure, pure (virtual time). */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { PmtuSearch, PMTU_FLOOR } from '../../router/overlay/sleeve-pmtu'

/** Runs a search against a path that carries datagrams up to `pathMtu` bytes; acks come back after `rttMs`. */
function converge(s: PmtuSearch, kernelMtu: number, pathMtu: number, start = 0, rttMs = 5): { at: number; probes: number } {
  let now = start, probes = 0
  const acks: Array<{ at: number; size: number }> = []
  for (let i = 0; i < 10_000; i++) {
    for (const a of acks.splice(0).filter((x) => { if (x.at <= now) return true; acks.push(x); return false })) s.onAck(a.size, now)
    const p = s.tick(kernelMtu, now)
    if (p !== undefined) {
      probes++
      if (p <= pathMtu) acks.push({ at: now + rttMs, size: p })
    }
    if (!s.searching) return { at: now, probes } // ended (or never needed: a ceiling at the floor)
    now += 10
  }
  throw new Error('no convergence')
}

test('a path that carries what the kernel says: one probe, and the kernel stays in charge', () => {
  const s = new PmtuSearch()
  const r = converge(s, 1500, 1500)
  assert.is(r.probes, 1)
  assert.is(s.usable(), undefined)
})

test('a path that silently drops datagrams over 700 bytes: the search finds 700 within a few seconds', () => {
  const s = new PmtuSearch()
  const r = converge(s, 1500, 700)
  assert.is(s.usable(), 700)
  assert.ok(r.at < 5_000, `took ${r.at} ms`)
})

test('usable during the search: once the kernel figure failed, the largest size known to pass', () => {
  const s = new PmtuSearch({ timeoutMs: 100, tries: 1 })
  assert.is(s.tick(1500, 0), 1500)
  assert.is(s.usable(), undefined, 'nothing known yet')
  const next = s.tick(1500, 100)
  assert.is(next, Math.floor((552 + 1501) / 2), 'binary search after the ceiling timed out')
  assert.is(s.usable(), PMTU_FLOOR, 'the floor passes by definition')
  s.onAck(next!, 120)
  assert.is(s.usable(), next)
})

test('re-checked after the interval and when the kernel figure changes; the old result holds meanwhile', () => {
  const s = new PmtuSearch({ recheckMs: 60_000 })
  const r = converge(s, 1500, 900)
  assert.is(s.usable(), 900)
  assert.is(s.tick(1500, r.at + 1_000), undefined, 'quiet until the re-check')
  assert.is(s.tick(1500, r.at + 60_000), 1500, 're-check starts at the kernel figure')
  assert.is(s.usable(), 900, 'the last result stays in use during the re-check')
  converge(s, 1400, 1200, r.at + 60_010)
  assert.is(s.usable(), 1200, 'a new kernel figure restarts the search')
})

test('property: for any kernel figure and path, the result is the largest size that passes (never above either)', () => {
  fc.assert(fc.property(fc.integer({ min: 300, max: 9000 }), fc.integer({ min: 552, max: 9000 }), fc.integer({ min: 0, max: 200 }), (kernel, path, rtt) => {
    const s = new PmtuSearch({ timeoutMs: 250 })
    converge(s, kernel, path, 0, rtt)
    const ceiling = Math.max(PMTU_FLOOR, kernel)
    const want = Math.min(ceiling, Math.max(PMTU_FLOOR, path))
    const got = s.usable() ?? ceiling
    // an ack slower than the timeout makes the result smaller (safe), never larger
    return rtt < 250 ? got === want : got <= want
  }), { numRuns: 300 })
})

test.run()
