/** Leases of containers removed while the router was down are found at start (proxy-wiring's pruneGone). */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { containersGone } from '../../router/proxy-wiring'

const id = (c: string) => c.repeat(64)

test('only Docker container ids that no longer exist are released; namespaces, expose and live ones stay', () => {
  const existing = new Set([id('a'), id('b')])
  const owned = [id('a'), id('c'), id('c'), 'ns0123456789abcd', 'weave:expose', id('b'), id('d'), 'ABC']
  assert.equal(containersGone(owned, existing), [id('c'), id('d')])
  assert.equal(containersGone([], existing), [])
})

test.run()
