import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fc from 'fast-check'
import { FakeClock } from '../../router/deps'
import { MacTable, macAt, formatMac, isGroupMac } from '../../router/overlay/mac-table'

const SELF = 1
const A = 0x020000000001
const B = 0x020000000002

test('macAt reads 48 bits exactly; formatMac and isGroupMac agree with the bytes', () => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 6, maxLength: 6 }), (b) => {
    const mac = macAt(b, 0)
    assert.is(formatMac(mac), Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':'))
    assert.is(isGroupMac(mac), (b[0] & 1) === 1)
  }))
  assert.ok(isGroupMac(macAt(new Uint8Array(6).fill(0xff), 0)))
})

test('local and remote learning; lookup finds the owner', () => {
  const clock = new FakeClock()
  const t = new MacTable<number>(clock, SELF, 1000)
  assert.is(t.lookup(A), undefined)
  assert.is(t.learnLocal(A), 'new')
  assert.is(t.learnLocal(A), 'refreshed')
  assert.is(t.learnRemote(B, 7), 'new')
  assert.is(t.lookup(A), SELF)
  assert.is(t.lookup(B), 7)
})

test('a captured frame from a MAC another peer owns is a conflict and changes nothing', () => {
  const clock = new FakeClock()
  const t = new MacTable<number>(clock, SELF, 1000)
  t.learnRemote(A, 7)
  assert.is(t.learnLocal(A), 'conflict')
  assert.is(t.lookup(A), 7)
})

test('remote learning always wins and reports a move', () => {
  const clock = new FakeClock()
  const t = new MacTable<number>(clock, SELF, 1000)
  t.learnLocal(A)
  assert.is(t.learnRemote(A, 7), 'moved')
  assert.is(t.learnRemote(A, 8), 'moved')
  assert.is(t.learnRemote(A, 8), 'refreshed')
  assert.is(t.lookup(A), 8)
})

test('entries expire on the injected clock; refreshing keeps them alive; sweep removes the stale', () => {
  const clock = new FakeClock()
  const t = new MacTable<number>(clock, SELF, 1000)
  t.learnRemote(A, 7)
  t.learnRemote(B, 8)
  clock.advance(600)
  t.learnRemote(B, 8) // refreshed at 600
  clock.advance(500) // now 1100: A is 1100 old, B 500
  assert.is(t.lookup(A), undefined, 'A expired')
  assert.is(t.lookup(B), 8)
  assert.is(t.learnLocal(A), 'new', 'an expired foreign entry does not block local learning')
  clock.advance(1001)
  assert.is(t.sweep(), 2)
  assert.is(t.size, 0)
})

test('forgetPeer drops exactly that peer\'s MACs', () => {
  const t = new MacTable<number>(new FakeClock(), SELF)
  t.learnRemote(A, 7)
  t.learnRemote(B, 8)
  assert.is(t.forgetPeer(7), 1)
  assert.is(t.lookup(A), undefined)
  assert.is(t.lookup(B), 8)
  assert.equal(t.dump(), [{ mac: '02:00:00:00:00:02', owner: 8, ageMs: 0 }])
})

test.run()
