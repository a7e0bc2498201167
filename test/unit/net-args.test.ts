/** router/net's pure pieces: CIDR parsing, argv builders, `ip -j` and `iptables-save` parsing. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { CidrError, parseCidr, networkOf, ipToInt, formatCidr } from '../../router/net/cidr'
import { gratuitousArp, hostVethName, ip, isNoSuchDevice, parseAddrs, parseLinks } from '../../router/net/ip-args'
import { exposeRules, foreignJumpsToOurs, forwardRules, iptables, isOurChain, jumpRules, parseSave, savedHolds, tokenize } from '../../router/net/iptables'
import { linksToRemove } from '../../router/net/reset'
import { netnsRefPath } from '../../router/net/context'

test('parseCidr accepts a.b.c.d/n; rejects everything else, leading zeros too (ipv4/)', () => {
  assert.equal(parseCidr('10.32.0.5/12'), { ip: '10.32.0.5', prefix: 12 })
  assert.equal(parseCidr('10.32.0.5/0'), { ip: '10.32.0.5', prefix: 0 })
  for (const bad of ['010.032.000.005/0', '10.32.0.5/08', '10.32.0.5', '10.32.0.5/33', '256.1.1.1/8', '-1.2.3.4/8', '1.2.3/8', '1.2.3.4/', '1.2.3.4/x', '--help/8', '1.2.3.4/8 ', 'fe80::1/64']) {
    assert.throws(() => parseCidr(bad), (e: unknown) => e instanceof CidrError && e.code === 'BAD_CIDR', bad)
  }
})

test('networkOf clears host bits; property: the network contains the address and is a fixed point', () => {
  assert.is(networkOf(parseCidr('10.32.0.5/12')), '10.32.0.0/12')
  assert.is(networkOf(parseCidr('10.47.255.255/12')), '10.32.0.0/12')
  assert.is(networkOf(parseCidr('192.168.7.9/32')), '192.168.7.9/32')
  assert.is(networkOf(parseCidr('192.168.7.9/0')), '0.0.0.0/0')
  fc.assert(fc.property(fc.ipV4(), fc.integer({ min: 0, max: 32 }), (addr, prefix) => {
    const c = parseCidr(`${addr}/${prefix}`)
    const net = networkOf(c)
    assert.is(networkOf(parseCidr(net)), net)
    const n = parseCidr(net)
    const size = 2 ** (32 - prefix)
    const a = ipToInt(c.ip)!, base = ipToInt(n.ip)!
    assert.ok(a >= base && a < base + size)
    assert.is(formatCidr(parseCidr(formatCidr(c))), formatCidr(c))
  }))
})

test('hostVethName: vethwepl + 7 chars, never longer than IFNAMSIZ-1', () => {
  assert.is(hostVethName('4f2a9c0d11e2b3'), 'vethwepl4f2a9c0')
  assert.is(hostVethName('123'), 'vethwepl123')
  fc.assert(fc.property(fc.string({ minLength: 1 }).filter((s) => /[A-Za-z0-9]/.test(s)), (id) => {
    const n = hostVethName(id)
    assert.ok(n.length <= 15 && n.startsWith('vethwepl') && /^[A-Za-z0-9_.-]+$/.test(n))
  }))
  assert.throws(() => hostVethName('///'))
})

test('ip argv builders', () => {
  assert.equal(ip.addBridge('weave', 1376), ['ip', 'link', 'add', 'name', 'weave', 'mtu', '1376', 'type', 'bridge'])
  assert.equal(ip.addBridge('weave', 1376, '7a:00:00:00:00:01'), ['ip', 'link', 'add', 'name', 'weave', 'address', '7a:00:00:00:00:01', 'mtu', '1376', 'type', 'bridge'])
  assert.equal(ip.addVethPeerIn('ethwe', 'vethwepl123', 1376, 'host1'),
    ['ip', 'link', 'add', 'name', 'ethwe', 'mtu', '1376', 'type', 'veth', 'peer', 'name', 'vethwepl123', 'mtu', '1376', 'netns', 'host1'])
  assert.equal(ip.multicastRoute('ethwe'), ['ip', 'route', 'replace', '224.0.0.0/4', 'dev', 'ethwe', 'scope', 'link'])
  assert.equal(ip.addAddr('ethwe', parseCidr('10.32.0.1/12')), ['ip', 'addr', 'add', '10.32.0.1/12', 'dev', 'ethwe'])
  assert.equal(gratuitousArp('busybox', 'ethwe', parseCidr('10.32.0.1/12')), ['busybox', 'arping', '-U', '-c', '1', '-w', '1', '-I', 'ethwe', '-s', '10.32.0.1', '10.32.0.1'])
  assert.equal(gratuitousArp('arping', 'weave', parseCidr('10.32.0.9/12'))[0], 'arping')
})

test('netnsRefPath for pid, name and path; bad refs throw', () => {
  assert.is(netnsRefPath({ pid: 42 }), '/proc/42/ns/net')
  assert.is(netnsRefPath({ name: 'lab-h1' }), '/var/run/netns/lab-h1')
  assert.is(netnsRefPath({ path: '/run/docker/netns/abc' }), '/run/docker/netns/abc')
  assert.throws(() => netnsRefPath({ pid: 0 }))
  assert.throws(() => netnsRefPath({ name: '../etc' }))
  assert.throws(() => netnsRefPath({ path: 'relative' }))
})

test('parse ip -j link and addr output', () => {
  const links = parseLinks(JSON.stringify([
    { ifname: 'weave', address: '7a:1:2:3:4:5', mtu: 1376, flags: ['BROADCAST', 'UP'], linkinfo: { info_kind: 'bridge' } },
    { ifname: 'vethwe-bridge', address: 'aa', mtu: 1376, flags: ['BROADCAST'], master: 'weave', linkinfo: { info_kind: 'veth' } },
  ]))
  assert.equal(links, [
    { name: 'weave', mac: '7a:1:2:3:4:5', mtu: 1376, up: true, kind: 'bridge', master: undefined },
    { name: 'vethwe-bridge', mac: 'aa', mtu: 1376, up: false, kind: 'veth', master: 'weave' },
  ])
  const addrs = parseAddrs(JSON.stringify([{ ifname: 'ethwe', address: 'm', addr_info: [
    { family: 'inet', local: '10.32.0.1', prefixlen: 12 }, { family: 'inet6', local: 'fe80::1', prefixlen: 64 }] }]))
  assert.equal(addrs, [{ name: 'ethwe', mac: 'm', addresses: [{ ip: '10.32.0.1', prefix: 12 }] }])
  assert.equal(parseLinks(''), [])
  assert.ok(isNoSuchDevice('Device "ethwe" does not exist.'))
  assert.not.ok(isNoSuchDevice('RTNETLINK answers: Operation not permitted'))
})

test('iptables argv always waits for the lock and names the table', () => {
  const r = { table: 'nat' as const, chain: 'WEAVE', spec: ['-s', '10.32.0.0/12', '-j', 'RETURN'] }
  assert.equal(iptables.check(r), ['iptables', '-w', '5', '-t', 'nat', '-C', 'WEAVE', '-s', '10.32.0.0/12', '-j', 'RETURN'])
  assert.equal(iptables.insertFirst(r).slice(5, 8), ['-I', 'WEAVE', '1'])
  assert.equal(iptables.delete(r).slice(5, 7), ['-D', 'WEAVE'])
})

test('expose rules: accept plus three NAT rules on the subnet, or only the accept without masquerade', () => {
  const rules = exposeRules(parseCidr('10.32.0.254/12'), { masquerade: true })
  assert.equal(rules.map((r) => `${r.table} ${r.chain} ${r.spec.join(' ')}`), [
    'filter WEAVE-EXPOSE -d 10.32.0.0/12 -j ACCEPT',
    'nat WEAVE -s 10.32.0.0/12 -d 224.0.0.0/4 -j RETURN',
    'nat WEAVE ! -s 10.32.0.0/12 -d 10.32.0.0/12 -j MASQUERADE',
    'nat WEAVE -s 10.32.0.0/12 ! -d 10.32.0.0/12 -j MASQUERADE',
  ])
  assert.is(exposeRules(parseCidr('10.32.0.254/12'), { masquerade: false }).length, 1)
})

test('forward and jump rules: docker0 hop dropped first, every rule in a chain of ours', () => {
  const f = forwardRules('weave')
  assert.equal(f[0].spec, ['-i', 'docker0', '-o', 'weave', '-j', 'DROP'])
  assert.ok(f.every((r) => isOurChain(r.chain)))
  assert.equal(jumpRules({ controlPort: null }).map((r) => r.chain), ['FORWARD', 'POSTROUTING'])
  assert.equal(jumpRules({ controlPort: 6784 }).map((r) => r.chain), ['FORWARD', 'POSTROUTING', 'INPUT'])
  assert.ok(isOurChain('WEAVE') && isOurChain('WEAVE-EXPOSE'))
  assert.not.ok(isOurChain('WEAVER') || isOurChain('DOCKER') || isOurChain('FORWARD'))
})

test('savedHolds: every chain declared and every rule spelt the same, else false', () => {
  const rules = [...forwardRules('weave'), ...jumpRules({}).filter((r) => r.table === 'filter')]
  const lines = rules.map((r) => `-A ${r.chain} ${r.spec.join(' ')}`)
  const save = (ls: string[], chains = ':FORWARD DROP [0:0]\n:WEAVE-FORWARD - [0:0]\n:WEAVE-EXPOSE - [0:0]') => parseSave('filter', `*filter\n${chains}\n${ls.join('\n')}\nCOMMIT\n`)
  assert.ok(savedHolds(save(lines), ['WEAVE-FORWARD', 'WEAVE-EXPOSE'], rules))
  assert.not.ok(savedHolds(save(lines.slice(1)), ['WEAVE-FORWARD'], rules), 'a rule missing')
  assert.not.ok(savedHolds(save(lines, ':FORWARD DROP [0:0]\n:WEAVE-FORWARD - [0:0]'), ['WEAVE-FORWARD', 'WEAVE-EXPOSE'], rules), 'a chain missing')
  assert.not.ok(savedHolds(save(lines.map((l) => l.replace('-o weave -j DROP', '-o weave -j ACCEPT'))), [], rules), 'a rule changed')
  assert.not.ok(savedHolds(save(lines.map((l) => l.replace('-A WEAVE-FORWARD -i docker0', '-A FORWARD -i docker0'))), [], rules), 'a rule in another chain')
})

test('tokenize handles quotes; parseSave finds chains and the jumps into ours', () => {
  assert.equal(tokenize('-A FORWARD -m comment --comment "a b \\"c\\"" -j ACCEPT'), ['-A', 'FORWARD', '-m', 'comment', '--comment', 'a b "c"', '-j', 'ACCEPT'])
  assert.equal(tokenize('-A X --comment ""'), ['-A', 'X', '--comment', ''])
  const save = [
    '# Generated by iptables-save', '*filter', ':INPUT ACCEPT [0:0]', ':FORWARD DROP [3:180]', ':WEAVE-FORWARD - [0:0]', ':WEAVE-EXPOSE - [0:0]', ':DOCKER - [0:0]',
    '-A FORWARD -i other0 -j ACCEPT', '-A FORWARD -j WEAVE-FORWARD', '-A DOCKER -g WEAVE-EXPOSE', '-A WEAVE-FORWARD -o weave -j WEAVE-EXPOSE', 'COMMIT',
  ].join('\n')
  const s = parseSave('filter', save)
  assert.equal(s.chains, ['INPUT', 'FORWARD', 'WEAVE-FORWARD', 'WEAVE-EXPOSE', 'DOCKER'])
  assert.is(s.rules.length, 4)
  assert.equal(foreignJumpsToOurs(s).map((r) => [r.chain, ...r.spec]), [['FORWARD', '-j', 'WEAVE-FORWARD'], ['DOCKER', '-g', 'WEAVE-EXPOSE']])
})

test('reset removes the bridge and vethwe* links only', () => {
  assert.equal(linksToRemove(['lo', 'eth0', 'weave', 'vethwe-bridge', 'vethwe-pcap', 'vethwepl123', 'docker0', 'weaver0', 'datapath'], 'weave'),
    ['weave', 'vethwe-bridge', 'vethwe-pcap', 'vethwepl123'])
})

test.run()
