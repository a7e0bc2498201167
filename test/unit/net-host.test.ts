/** createNetHost's decisions, checked against a scripted fake runner: which commands run, in which order. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createNetHost, createRunner, formatPsLine, inNetns, netnsPath, NetCommandError, Runner } from '../../router/net'

type Reply = string | { fail: string }
/** Replies by the first matching pattern on the joined argv; records every call. */
function fakeRunner(script: Array<[RegExp, Reply | ((argv: string) => Reply)]>): Runner & { calls: string[] } {
  const calls: string[] = []
  const run = async (argv: readonly string[]) => {
    const line = argv.join(' ')
    calls.push(line)
    for (const [re, r] of script) {
      if (!re.test(line)) continue
      const reply = typeof r === 'function' ? r(line) : r
      if (typeof reply === 'string') return { stdout: reply, stderr: '' }
      throw new NetCommandError(argv, 1, reply.fail)
    }
    return { stdout: '', stderr: '' }
  }
  return Object.assign(run, { calls })
}
const NODEV = { fail: 'Device "x" does not exist.' }
const link = (o: object) => JSON.stringify([o])
const bridgeJson = (mtu: number, kind = 'bridge') => link({ ifname: 'weave', address: '7a:00:00:00:00:01', mtu, flags: ['UP'], linkinfo: { info_kind: kind } })
const vethJson = (name: string, master?: string) => link({ ifname: name, address: 'aa:bb:cc:dd:ee:ff', mtu: 1376, flags: ['UP'], master, linkinfo: { info_kind: 'veth' } })
/** `ip -j -d link show` (no device) listing these links. */
const linkList = (...links: object[]) => JSON.stringify(links)
const BRIDGE_LINK = { ifname: 'weave', address: '7a:00:00:00:00:01', mtu: 1376, flags: ['UP'], linkinfo: { info_kind: 'bridge' } }
const mutating = (calls: string[]) => calls.filter((c) => / link add | -N | -A | -I | addr add | -D | -X /.test(c))

test('ensureBridge reuses a complete setup without changing anything but "up"', async () => {
  const run = fakeRunner([
    [/link show dev weave$/, bridgeJson(1376)],
    [/link show dev vethwe-bridge$/, vethJson('vethwe-bridge', 'weave')],
    [/link show dev vethwe-pcap$/, vethJson('vethwe-pcap')],
  ])
  const info = await createNetHost({ run, arping: 'none' }).ensureBridge()
  assert.equal(info, { name: 'weave', mtu: 1376, mac: '7a:00:00:00:00:01', created: false, captureDevice: 'vethwe-pcap' })
  assert.equal(mutating(run.calls), [])
  assert.ok(run.calls.includes('ip link set dev weave up'))
  assert.ok(run.calls.includes('sysctl -q -w net.ipv4.neigh.weave.base_reachable_time=5'))
})

test('ensureBridge creates bridge, pair, chains and jumps when nothing exists', async () => {
  let made = false
  const run = fakeRunner([
    [/link show dev weave$/, () => (made ? bridgeJson(1400) : NODEV)],
    [/link add name weave/, () => { made = true; return '' }],
    [/link show dev vethwe-/, NODEV],
    [/ -C | -S /, { fail: 'iptables: No chain/target/match by that name.' }],
  ])
  const info = await createNetHost({ run, arping: 'none' }).ensureBridge({ mtu: 1400, mac: '7a:00:00:00:00:01', controlPort: null })
  assert.is(info.created, true)
  const m = mutating(run.calls)
  assert.equal(m.slice(0, 2), [
    'ip link add name weave address 7a:00:00:00:00:01 mtu 1400 type bridge',
    'ip link add name vethwe-bridge mtu 1400 type veth peer name vethwe-pcap mtu 1400',
  ])
  assert.ok(m.includes('iptables -w 5 -t filter -N WEAVE-FORWARD'))
  assert.ok(m.includes('iptables -w 5 -t nat -N WEAVE'))
  assert.ok(m.includes('iptables -w 5 -t filter -I FORWARD 1 -j WEAVE-FORWARD'))
  assert.ok(m.includes('iptables -w 5 -t nat -I POSTROUTING 1 -j WEAVE'))
  assert.not.ok(m.some((c) => c.includes('WEAVE-INPUT')), 'no INPUT rule with controlPort null')
  // The chain WEAVE-FORWARD jumps to must exist before the rule that names it.
  assert.ok(m.indexOf('iptables -w 5 -t filter -N WEAVE-EXPOSE') < m.findIndex((c) => c.endsWith('-j WEAVE-EXPOSE')))
  assert.ok(run.calls.includes('ip link set dev vethwe-bridge master weave'))
})

test('ensureBridge fixes the MTU of an existing bridge and refuses a non-bridge "weave"', async () => {
  const run = fakeRunner([[/link show dev weave$/, bridgeJson(1500)], [/link show dev vethwe-/, NODEV]])
  await createNetHost({ run, arping: 'none' }).ensureBridge({ routerLink: 'none' })
  assert.ok(run.calls.includes('ip link set dev weave mtu 1376'))
  assert.not.ok(run.calls.some((c) => c.includes('vethwe-pcap')))
  const bad = fakeRunner([[/link show dev weave$/, bridgeJson(1376, 'dummy')]])
  try {
    await createNetHost({ run: bad }).ensureBridge()
    assert.unreachable()
  } catch (e) {
    assert.match(String(e), 'weave exists and is a dummy')
  }
})

test('routerLink datapath replaces a pcap pair with vethwe-bridge ⇄ vethwe-datapath, offloads left on', async () => {
  let switched = false
  const run = fakeRunner([
    [/link show dev weave$/, bridgeJson(1376)],
    [/link show dev vethwe-pcap$/, () => (switched ? NODEV : vethJson('vethwe-pcap'))],
    [/link del dev vethwe-pcap$/, () => { switched = true; return '' }],
    [/link show dev vethwe-bridge$/, () => (switched ? NODEV : vethJson('vethwe-bridge', 'weave'))],
    [/link show dev vethwe-datapath$/, NODEV],
  ])
  const info = await createNetHost({ run, arping: 'none' }).ensureBridge({ routerLink: 'datapath' })
  assert.is(info.datapathPort, 'vethwe-datapath')
  assert.is(info.captureDevice, undefined)
  assert.ok(run.calls.includes('ip link del dev vethwe-pcap'))
  assert.ok(run.calls.includes('ip link add name vethwe-bridge mtu 1376 type veth peer name vethwe-datapath mtu 1376'))
  assert.ok(run.calls.includes('ip link set dev vethwe-bridge master weave'))
  assert.not.ok(run.calls.some((c) => c.startsWith('ethtool')))
})

test('ensureRules counts what it had to put back', async () => {
  const run = fakeRunner([[/-C FORWARD -j WEAVE-FORWARD|-S WEAVE-EXPOSE/, { fail: 'gone' }]])
  assert.is(await createNetHost({ run }).ensureRules(), 2)
  assert.ok(run.calls.includes('iptables -w 5 -t filter -I FORWARD 1 -j WEAVE-FORWARD'))
  assert.ok(run.calls.includes('iptables -w 5 -t filter -N WEAVE-EXPOSE'))
  assert.is(await createNetHost({ run: fakeRunner([]) }).ensureRules(), 0)
})

const ETHWE = (addrs: string[]) => link({ ifname: 'ethwe', address: '5e:00:00:00:00:07', addr_info: addrs.map((a) => ({ family: 'inet', local: a.split('/')[0], prefixlen: Number(a.split('/')[1]) })) })

test('attach of a new container: pair, sysctls, rules in one go; ethwe up, route and addresses last; then ARP', async () => {
  let made = false
  const run = fakeRunner([
    [/nsenter --net=\/proc\/4242\/ns\/net -- ip -j addr show dev ethwe/, NODEV],
    [/'ip' '-j' 'addr' 'show' 'dev' 'ethwe'/, () => (made ? ETHWE(['10.32.0.7/12']) : NODEV)],
    [/'ip' 'link' 'add' 'name' 'ethwe'/, () => { made = true; return '' }],
    [/^ip -j -d link show$/, linkList(BRIDGE_LINK)],
  ])
  const r = await createNetHost({ run, hostNetns: 'hostns', arping: 'busybox' })
    .attach({ netns: { pid: 4242 }, containerId: '4242', addresses: ['10.32.0.7/12', '10.32.0.7/12'] })
  assert.equal(r, { mac: '5e:00:00:00:00:07', addresses: ['10.32.0.7/12'], added: ['10.32.0.7/12'], created: true })
  const ns = 'nsenter --net=/proc/4242/ns/net -- '
  const setup = run.calls.find((c) => c.startsWith(`${ns}sh -c 'ip' 'link' 'add'`))
  assert.ok(setup, run.calls.join('\n'))
  // One container-side script: the pair (host end straight into our namespace), then, in order,
  // sysctls, the multicast drop and the accept above it.
  const steps = setup.slice(`${ns}sh -c `.length).split(' && ')
  assert.equal(steps, [
    "'ip' 'link' 'add' 'name' 'ethwe' 'mtu' '1376' 'type' 'veth' 'peer' 'name' 'vethwepl4242' 'mtu' '1376' 'netns' 'hostns'",
    "'sysctl' '-q' '-e' '-w' 'net.ipv6.conf.ethwe.accept_ra=0' 'net.ipv4.neigh.ethwe.base_reachable_time=5' 'net.ipv4.neigh.ethwe.delay_first_probe_time=2' 'net.ipv4.neigh.ethwe.ucast_solicit=1'",
    "'iptables' '-w' '5' '-t' 'filter' '-A' 'INPUT' '-i' 'ethwe' '-d' '224.0.0.0/4' '-j' 'DROP'",
    "'iptables' '-w' '5' '-t' 'filter' '-I' 'INPUT' '1' '-i' 'ethwe' '-s' '10.32.0.0/12' '-d' '224.0.0.0/4' '-j' 'ACCEPT'",
  ])
  const want = [
    setup,
    "sh -c 'ip' 'link' 'set' 'dev' 'vethwepl4242' 'master' 'weave' && { 'ip' 'link' 'set' 'dev' 'vethwepl4242' 'type' 'bridge_slave' 'hairpin' 'on' >/dev/null 2>&1 || true; } && 'ip' 'link' 'set' 'dev' 'vethwepl4242' 'up'",
    // The address (once) last: weavewait starts the command once ethwe is up with an address.
    `${ns}sh -c 'ip' 'link' 'set' 'dev' 'ethwe' 'up' && 'ip' 'route' 'replace' '224.0.0.0/4' 'dev' 'ethwe' 'scope' 'link' && 'ip' 'addr' 'add' '10.32.0.7/12' 'dev' 'ethwe' && 'ip' '-j' 'addr' 'show' 'dev' 'ethwe'`,
    `${ns}busybox arping -U -c 1 -w 1 -I ethwe -s 10.32.0.7 10.32.0.7`,
  ]
  await new Promise((r) => setTimeout(r, 10)) // the ARP is sent without holding up the caller
  const idx = want.map((w) => run.calls.indexOf(w))
  assert.ok(idx.every((i) => i >= 0), `missing: ${want.filter((_, i) => idx[i] < 0).join('; ')}\n${run.calls.join('\n')}`)
  assert.equal([...idx].sort((a, b) => a - b), idx, 'in this order')
})

test('attach to an attached container only adds the missing address and re-enslaves a stray host end', async () => {
  const run = fakeRunner([
    [/addr show dev ethwe/, ETHWE(['10.32.0.7/12'])],
    [/link show dev vethweplabc$/, vethJson('vethweplabc', undefined)],
  ])
  const r = await createNetHost({ run, arping: 'none' }).attach({ netns: { name: 'c' }, containerId: 'abc', addresses: ['10.32.0.7/12', '10.36.0.1/16'] })
  assert.equal(r.added, ['10.36.0.1/16'])
  assert.is(r.created, false)
  assert.not.ok(run.calls.some((c) => c.includes('link add')))
  assert.equal(run.calls.filter((c) => c.includes('addr add')), ['nsenter --net=/var/run/netns/c -- ip addr add 10.36.0.1/16 dev ethwe'])
  assert.ok(run.calls.includes('ip link set dev vethweplabc master weave'))
})

test('a failure after creating the pair removes it and reports the failing command', async () => {
  const run = fakeRunner([
    [/addr show dev ethwe/, NODEV],
    [/^ip -j -d link show$/, linkList(BRIDGE_LINK)],
    [/'ip' 'addr' 'add'/, { fail: 'RTNETLINK answers: Permission denied' }],
  ])
  try {
    await createNetHost({ run, arping: 'none' }).attach({ netns: { name: 'c' }, containerId: 'x1', addresses: ['10.32.0.9/12'] })
    assert.unreachable()
  } catch (e) {
    assert.instance(e, NetCommandError)
    assert.match(String((e as Error).message), "'ip' 'addr' 'add' '10.32.0.9/12' 'dev' 'ethwe'")
    assert.match(String((e as Error).message), 'Permission denied')
  }
  assert.ok(run.calls.includes('ip link del dev vethweplx1'), 'the pair goes (by its host end)')
})

test('detach of a vanished container touches nothing; attach refuses a host end that is taken', async () => {
  const run = fakeRunner([
    [/addr show dev ethwe/, { fail: 'nsenter: cannot open /proc/9/ns/net: No such file or directory' }],
    [/link show dev vethwepl9$/, vethJson('vethwepl9', 'weave')],
  ])
  const r = await createNetHost({ run }).detach({ netns: { pid: 9 }, containerId: '9' })
  assert.equal(r, { removed: [], remaining: [], interfaceGone: true })
  assert.equal(mutating(run.calls), [])
  assert.not.ok(run.calls.some((c) => c.includes('link del')))
  // Same 7-character prefix as a live container: refuse rather than take its interface.
  const run2 = fakeRunner([[/addr show dev ethwe/, NODEV], [/^ip -j -d link show$/, linkList(BRIDGE_LINK, { ifname: 'vethweplabcdefg', address: 'aa:bb:cc:dd:ee:ff', mtu: 1376, flags: ['UP'], master: 'weave', linkinfo: { info_kind: 'veth' } })]])
  await createNetHost({ run: run2 }).attach({ netns: { name: 'c' }, containerId: 'abcdefg222', addresses: [] })
    .then(() => assert.unreachable(), (e) => assert.is(e.code, 'HOST_VETH_EXISTS'))
  assert.not.ok(run2.calls.some((c) => c.includes('link del') || c.includes("'link' 'add'")))
})

test('hide keeps the subnet rules while another bridge address still exposes that subnet', async () => {
  const br = (addrs: string[]) => link({ ifname: 'weave', address: 'm', addr_info: addrs.map((a) => ({ family: 'inet', local: a.split('/')[0], prefixlen: Number(a.split('/')[1]) })) })
  const run = fakeRunner([[/addr show dev weave/, br(['10.32.0.254/12', '10.32.0.253/12'])]])
  const h = await createNetHost({ run }).hide('10.32.0.254/12')
  assert.equal(h, { address: '10.32.0.254/12', removedAddress: true, removedRules: 0 })
  assert.not.ok(run.calls.some((c) => c.includes('iptables')))
  // The last one goes with every rule, each deleted while -C still finds it.
  let left = 2
  const run2 = fakeRunner([[/addr show dev weave/, br(['10.32.0.254/12'])], [/-C WEAVE-EXPOSE/, () => (left-- > 0 ? '' : { fail: 'Bad rule' })], [/ -C /, { fail: 'Bad rule' }]])
  const h2 = await createNetHost({ run: run2 }).hide('10.32.0.254/12')
  assert.equal(h2.removedRules, 2)
  assert.equal(run2.calls.filter((c) => c.includes(' -D ')), Array(2).fill('iptables -w 5 -t filter -D WEAVE-EXPOSE -d 10.32.0.0/12 -j ACCEPT'))
})

test('resetHost deletes our links, the jumps into our chains, then flushes and deletes the chains', async () => {
  const run = fakeRunner([
    [/^ip -j -d link show$/, JSON.stringify(['lo', 'eth0', 'weave', 'vethwe-bridge', 'vethwe-pcap', 'vethwepl1'].map((n) => ({ ifname: n })))],
    [/link del dev vethwe-pcap/, NODEV],
    [/iptables-save -t filter/, '*filter\n:FORWARD ACCEPT [0:0]\n:WEAVE-FORWARD - [0:0]\n:WEAVE-EXPOSE - [0:0]\n-A FORWARD -j WEAVE-FORWARD\n-A FORWARD -i x -j ACCEPT\n-A WEAVE-FORWARD -o weave -j WEAVE-EXPOSE\nCOMMIT\n'],
    [/iptables-save -t nat/, '*nat\n:POSTROUTING ACCEPT [0:0]\n:WEAVE - [0:0]\n-A POSTROUTING -j WEAVE\nCOMMIT\n'],
  ])
  const r = await createNetHost({ run }).resetHost()
  assert.equal(r, { links: ['weave', 'vethwe-bridge', 'vethwepl1'], iptablesJumps: 2, iptablesChains: 3 })
  assert.ok(run.calls.includes('nft delete table ip weave_traffic'), 'the kernel vxlan path\'s counter table goes too')
  assert.equal(run.calls.filter((c) => c.startsWith('iptables ')), [
    'iptables -w 5 -t filter -D FORWARD -j WEAVE-FORWARD',
    'iptables -w 5 -t filter -F WEAVE-FORWARD',
    'iptables -w 5 -t filter -F WEAVE-EXPOSE',
    'iptables -w 5 -t filter -X WEAVE-FORWARD',
    'iptables -w 5 -t filter -X WEAVE-EXPOSE',
    'iptables -w 5 -t nat -D POSTROUTING -j WEAVE',
    'iptables -w 5 -t nat -F WEAVE',
    'iptables -w 5 -t nat -X WEAVE',
  ])
})

test('the real runner names the command and its stderr on failure, and a missing binary', async () => {
  const run = createRunner()
  assert.equal((await run([process.execPath, '-e', 'process.stdout.write("hi")'])).stdout, 'hi')
  try {
    await run([process.execPath, '-e', 'console.error("boom"); process.exit(3)'])
    assert.unreachable()
  } catch (e) {
    assert.instance(e, NetCommandError)
    const err = e as NetCommandError
    assert.is(err.exitCode, 3)
    assert.match(err.message, 'exit 3')
    assert.match(err.message, 'boom')
    assert.match(err.message, process.execPath)
  }
  await run(['/nonexistent/weave-no-such-tool']).then(() => assert.unreachable(), (e) => {
    assert.instance(e, NetCommandError)
    assert.match(String(e.message), 'ENOENT')
  })
})

test('commands for another namespace go through nsenter; construction does no I/O', async () => {
  assert.equal(inNetns(netnsPath('lab-h1'), ['iptables', '-S']), ['nsenter', '--net=/var/run/netns/lab-h1', '--', 'iptables', '-S'])
  const calls: string[][] = []
  const host = createNetHost({ run: async (a) => { calls.push([...a]); return { stdout: '[]', stderr: '' } } })
  assert.is(calls.length, 0)
  await host.listAttached([])
  assert.equal(calls, [['ip', '-j', 'addr', 'show', 'dev', 'weave']])
})

test('operations run one at a time, in call order, and a failure does not block the next', async () => {
  const log: string[] = []
  let release!: () => void
  const gate = new Promise<void>((r) => { release = r })
  const run: Runner = async (argv) => {
    const line = argv.join(' ')
    if (line.includes('dev weave') && !log.some((l) => l.includes('dev weave'))) {
      log.push(`start ${line}`)
      await gate
      throw new NetCommandError(argv, 1, 'boom')
    }
    log.push(line)
    return { stdout: '[]', stderr: '' }
  }
  const host = createNetHost({ run })
  const first = host.expose('10.32.0.254/12')
  const second = host.listAttached([])
  await new Promise((r) => setImmediate(r))
  assert.equal(log, ['start ip -j addr show dev weave'], 'second waits for first')
  release()
  await first.then(() => assert.unreachable(), (e) => assert.instance(e, NetCommandError))
  assert.equal(await second, [])
  assert.equal(log.slice(1), ['ip -j addr show dev weave'])
})

test('weave ps line', () => {
  assert.is(formatPsLine({ id: 'weave:expose', mac: '7a:00:00:00:00:01', addresses: ['10.32.0.254/12', '10.40.0.1/24'] }),
    'weave:expose 7a:00:00:00:00:01 10.32.0.254/12 10.40.0.1/24')
})

test.run()
