/** The datapath's relay tag on the router port: tagged frames are taken apart by sender and untagged. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { splitRelayTagged } from '../../router/overlay/sleeve-bridge'
import { RELAY_TAG_TPID } from '../../router/overlay/fastdp-flows'

function frame(type: number, body: number[]): Uint8Array {
  const f = new Uint8Array(14 + body.length)
  f.fill(0xaa, 0, 6); f.fill(0xbb, 6, 12)
  f[12] = type >> 8; f[13] = type & 255
  f.set(body, 14)
  return f
}

test('tagged frames go by sender, untagged; others stay as they are (same array when none is tagged)', () => {
  const plain = frame(0x0800, [1, 2, 3, 4])
  const vlan = frame(0x8100, [0, 5, 8, 0, 9, 9]) // a container's own 802.1Q frame: not ours to touch
  const none = [plain, vlan]
  assert.is(splitRelayTagged(none).local, none)
  const tagged = frame(RELAY_TAG_TPID, [0x1a, 0xbc, 0x08, 0x00, 7, 7]) // TCI 0x1abc: present bit + VLAN ID 0xabc
  const r = splitRelayTagged([plain, tagged, vlan])
  assert.equal(r.local, [plain, vlan])
  assert.equal([...r.relayed.keys()], [0xabc])
  const u = r.relayed.get(0xabc)![0]
  assert.is(u.length, tagged.length - 4)
  assert.equal([...u.subarray(12)], [0x08, 0x00, 7, 7], 'the inner ethertype follows the MACs')
  assert.equal([...u.subarray(0, 12)], [...tagged.subarray(0, 12)])
})

test.run()
