/**
 * The container's multicast isolation rules as the native attach hands them to iptables-restore:
 * the same rules, in the same order, as the process path's `iptables -A` / `-I 1` calls.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { multicastRulesRestore } from '../../router/net/attach'
import { parseCidr } from '../../router/net/cidr'

test('one drop, then one accept per subnet inserted above it; duplicates of a subnet once', () => {
  const text = multicastRulesRestore(['10.32.0.7/12', '10.32.5.1/12', '10.40.0.1/24'].map(parseCidr))
  assert.is(text, [
    '*filter',
    '-A INPUT -i ethwe -d 224.0.0.0/4 -j DROP',
    '-I INPUT 1 -i ethwe -s 10.32.0.0/12 -d 224.0.0.0/4 -j ACCEPT',
    '-I INPUT 1 -i ethwe -s 10.40.0.0/24 -d 224.0.0.0/4 -j ACCEPT',
    'COMMIT',
    '',
  ].join('\n'))
})

test('the delete input removes exactly those rules', () => {
  assert.is(multicastRulesRestore([parseCidr('10.32.0.7/12')], 'delete'), [
    '*filter',
    '-D INPUT -i ethwe -d 224.0.0.0/4 -j DROP',
    '-D INPUT -i ethwe -s 10.32.0.0/12 -d 224.0.0.0/4 -j ACCEPT',
    'COMMIT',
    '',
  ].join('\n'))
})

test.run()
