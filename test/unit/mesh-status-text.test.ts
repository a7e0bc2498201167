/** Weave-like status text rendered from the mesh's status model. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { connectionsText, peersText, statusLines, targetsText } from '../../router/mesh/status-text'
import type { MeshStatus } from '../../router/mesh/mesh-router'

const s: MeshStatus = {
  name: 'ce:31:7a:0b:44:02', nickname: 'host1', uid: '1', shortId: 5, version: 4, port: 6783,
  encryption: true, discovery: true, connLimit: 200, targets: ['10.0.0.2:6783', '10.0.0.9:6783'],
  connections: [
    { direction: 'outbound', addr: '10.0.0.2:6783', state: 'established', encrypted: true, peer: 'aa:00:00:00:00:02', nickname: 'host2' },
    { direction: 'outbound', addr: '10.0.0.9:6783', state: 'retrying', error: 'password-mismatch: password mismatch', retryAt: 0 },
    { direction: 'inbound', addr: '10.0.0.7:51000', state: 'failed', error: 'password-mismatch: bad' },
  ],
  peers: [
    { name: 'ce:31:7a:0b:44:02', nickname: 'host1', uid: '1', shortId: 5, version: 4, reachable: true,
      connections: [{ peer: 'aa:00:00:00:00:02', nickname: 'host2', addr: '10.0.0.2:6783', outbound: true, established: true }] },
    { name: 'aa:00:00:00:00:02', nickname: 'host2', uid: '2', shortId: 6, version: 3, reachable: true,
      connections: [{ peer: 'ce:31:7a:0b:44:02', nickname: 'host1', addr: '10.0.0.1:40000', outbound: false, established: true }] },
  ],
  unicastRoutes: {}, stats: { gossipMessagesSent: 0, gossipBytesSent: 0, connectionsAdded: 1, connectionsClosed: 0 },
}

test('summary lines: name, encryption, discovery, targets, connections by state, peers', () => {
  const m = new Map(statusLines(s))
  assert.is(m.get('Name'), 'ce:31:7a:0b:44:02(host1)')
  assert.is(m.get('Encryption'), 'enabled')
  assert.is(m.get('PeerDiscovery'), 'enabled')
  assert.is(m.get('Targets'), '2')
  assert.is(m.get('Connections'), '3 (1 established, 1 retrying, 1 failed)')
  assert.is(m.get('Peers'), '2 (with 2 established connections)')
  assert.is(m.get('TrustedSubnets'), 'none')
  assert.is(new Map(statusLines({ ...s, trustedSubnets: ['10.0.0.0/24', '192.168.0.0/16'] })).get('TrustedSubnets'), '10.0.0.0/24, 192.168.0.0/16')
})

test('connections: direction, address, state, encryption and peer, or why it failed', () => {
  const t = connectionsText(s)
  assert.match(t, /^-> 10\.0\.0\.2:6783\s+established encrypted aa:00:00:00:00:02\(host2\)$/m)
  assert.match(t, /^-> 10\.0\.0\.9:6783\s+retrying\s+password-mismatch: password mismatch, retry: /m)
  assert.match(t, /^<- 10\.0\.0\.7:51000\s+failed\s+password-mismatch: bad$/m)
  // a mutually trusted peer's data is in clear although the mesh has a password (Weave's word)
  assert.match(connectionsText(s, undefined, (p) => p === 'aa:00:00:00:00:02'), /^-> 10\.0\.0\.2:6783\s+established unencrypted aa:00/m)
})

test('peers and targets', () => {
  const t = peersText(s)
  assert.match(t, /^ce:31:7a:0b:44:02\(host1\)$/m)
  assert.match(t, /^\s+-> 10\.0\.0\.2:6783\s+aa:00:00:00:00:02\(host2\)\s+established$/m)
  assert.is(targetsText(s), '10.0.0.2:6783\n10.0.0.9:6783\n')
})

test.run()
