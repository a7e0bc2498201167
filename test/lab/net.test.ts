/**
 * router/net for real, inside lab namespaces only: a "host" namespace runs the bridge and its
 * iptables; plain namespaces play containers. Nothing touches the root namespace.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import type { ChildProcess } from 'node:child_process'
import { createNetHost, createRunner, NetHost, hostVethName } from '../../router/net'
import { createLab, labUnavailableReason, waitFor, Lab, LabHost } from './index'
import { skipFile } from '../skip'

// h1 is the weave host (bridge, iptables); h2..h4 only play containers: their eth0 is not used.
let L: Lab
let H: LabHost, C1: LabHost, C2: LabHost, C3: LabHost
let sleeper: ChildProcess | undefined
let net: NetHost
let before: Awaited<ReturnType<typeof snapshot>>

const out = async (h: LabHost, argv: string[]) => (await h.exec(argv)).stdout
const ok = (p: Promise<unknown>) => p.then(() => true, () => false)
const ping = (h: LabHost, addr: string) => h.ping(addr, { timeoutS: 2 })

/** What is ours to leave behind: links, addresses, routes, iptables rules and non-builtin chains. */
async function snapshot(h: LabHost): Promise<{ links: string[]; addrs: string[]; routes: string[]; rules: string[] }> {
  // New links get IPv6 link-locals (and their routes) on their own once DAD ends: wait for that,
  // so the snapshot is not a moving target.
  await waitFor('IPv6 DAD', async () => (await out(h, ['ip', '-6', 'addr', 'show', 'tentative'])).trim() === '', 10_000)
  const links = JSON.parse(await out(h, ['ip', '-j', 'link', 'show'])).map((l: { ifname: string }) => l.ifname).sort()
  const addrs = (await out(h, ['ip', '-o', 'addr', 'show'])).split('\n').filter(Boolean)
    .map((l) => l.split(/\s+/).slice(1, 4).join(' ')).sort()
  const routes = (await out(h, ['ip', 'route', 'show', 'table', 'all'])).split('\n').filter(Boolean).sort()
  const builtin = new Set(['INPUT', 'OUTPUT', 'FORWARD', 'PREROUTING', 'POSTROUTING'])
  const rules = (await out(h, ['iptables-save'])).split('\n')
    .filter((l) => l.startsWith('-A ') || (l.startsWith(':') && !builtin.has(l.slice(1).split(' ')[0])))
    .map((l) => l.replace(/\s*\[\d+:\d+\]$/, '')).sort()
  return { links, addrs, routes, rules }
}

const iptablesSave = (h: LabHost) => out(h, ['iptables-save'])

async function ethwe(h: LabHost): Promise<{ mac: string; addrs: string[] } | undefined> {
  try {
    const [l] = JSON.parse(await out(h, ['ip', '-j', 'addr', 'show', 'dev', 'ethwe']))
    return { mac: l.address, addrs: l.addr_info.filter((a: { family: string }) => a.family === 'inet').map((a: { local: string; prefixlen: number }) => `${a.local}/${a.prefixlen}`) }
  } catch { return undefined }
}

async function hostLink(name: string): Promise<{ mtu: number; master?: string; kind?: string; up: boolean } | undefined> {
  try {
    const [l] = JSON.parse(await out(H, ['ip', '-j', '-d', 'link', 'show', 'dev', name]))
    return { mtu: l.mtu, master: l.master, kind: l.linkinfo?.info_kind, up: l.flags.includes('UP') }
  } catch { return undefined }
}

const lab = suite('net lab')

const why = labUnavailableReason()
if (why) {
  skipFile('net lab', why, lab)
} else {
  lab.before(async () => {
    L = await createLab({ hosts: 4 })
    ;[H, C1, C2, C3] = L.hosts
    // Someone else's rule in the host: reset must leave it alone.
    await H.exec(['iptables', '-w', '5', '-A', 'FORWARD', '-i', 'other0', '-j', 'ACCEPT'])
    before = await snapshot(H)
    net = createNetHost({ netns: H.ns })
  })
  lab.after(async () => { await L?.teardown() })

  lab('bridge is created, then reused with its MTU fixed; rules are not duplicated', async () => {
    const a = await net.ensureBridge({ mtu: 1376 })
    assert.is(a.created, true)
    assert.is(a.captureDevice, 'vethwe-pcap')
    const br = await hostLink('weave')
    assert.equal({ kind: br?.kind, mtu: br?.mtu, up: br?.up }, { kind: 'bridge', mtu: 1376, up: true })
    assert.is((await hostLink('vethwe-bridge'))?.master, 'weave')
    assert.ok((await hostLink('vethwe-pcap'))?.up)
    const b = await net.ensureBridge({ mtu: 1400 })
    assert.is(b.created, false)
    assert.is(b.mac, a.mac)
    assert.is((await hostLink('weave'))?.mtu, 1400)
    await net.ensureBridge({ mtu: 1376 })
    assert.is((await hostLink('weave'))?.mtu, 1376)
    // fastdp's pair replaces sleeve's, and back.
    const d = await net.ensureBridge({ routerLink: 'datapath' })
    assert.is(d.datapathPort, 'vethwe-datapath')
    assert.is(await hostLink('vethwe-pcap'), undefined)
    assert.is((await hostLink('vethwe-bridge'))?.master, 'weave')
    assert.is((await hostLink('vethwe-datapath'))?.kind, 'veth')
    await net.ensureBridge()
    assert.is(await hostLink('vethwe-datapath'), undefined)
    assert.ok((await hostLink('vethwe-pcap'))?.up)
    // A firewall reload wipes our rules; ensureRules puts them back.
    assert.is(await net.ensureRules(), 0)
    // With all in place the periodic re-check reads them with one iptables-save per table: real
    // iptables prints every rule exactly as we write it (else it would run `iptables -C` each).
    const ran: string[] = []
    const real = createRunner({ netns: H.ns })
    const watched = createNetHost({ netns: H.ns, run: (argv) => { ran.push(argv.join(' ')); return real(argv) } })
    assert.is(await watched.ensureRules(), 0)
    assert.equal(ran.map((a) => a.replace(/^nsenter \S+ -- /, '')), ['iptables-save -t filter', 'iptables-save -t nat'])
    await H.exec(['iptables', '-w', '5', '-F', 'WEAVE-FORWARD'])
    await H.exec(['iptables', '-w', '5', '-D', 'FORWARD', '-j', 'WEAVE-FORWARD'])
    assert.is(await net.ensureRules(), 6)
    const save = await iptablesSave(H)
    assert.is(save.split('\n').filter((l) => l === '-A FORWARD -j WEAVE-FORWARD').length, 1)
    assert.is(save.split('\n').filter((l) => l === '-A POSTROUTING -j WEAVE').length, 1)
    assert.ok(save.includes('-A WEAVE-FORWARD -i docker0 -o weave -j DROP'))
    assert.is(save.split('\n').filter((l) => l.startsWith('-A WEAVE-FORWARD')).length, 5)
  })

  lab('two namespaces get ethwe, ping each other through the bridge, then detach', async () => {
    sleeper = C2.spawn(['sleep', '600'], { stdio: 'ignore' })
    const pid = sleeper.pid!
    try {
      // The gratuitous ARP shows on the bridge: sender and target are both the new address.
      const dump = H.spawn(['tcpdump', '-l', '-n', '-i', 'weave', '-c', '1', 'arp and arp[14:4] = arp[24:4]'], { stdio: ['ignore', 'pipe', 'ignore'] })
      let seen = ''
      dump.stdout!.on('data', (d) => { seen += d })
      const dumpDone = new Promise((r) => dump.on('exit', r))
      await waitFor('tcpdump listening', async () => (await out(H, ['cat', '/proc/net/packet'])).split('\n').length > 2, 5_000)
      const a = await net.attach({ netns: { name: C1.ns }, containerId: 'c1aaaaaaaaaaaa', addresses: ['10.32.0.1/12'] })
      await Promise.race([dumpDone, new Promise((r) => setTimeout(r, 3000))])
      dump.kill()
      assert.match(seen, /ARP, Request who-has 10\.32\.0\.1 (\(ff:ff:ff:ff:ff:ff\) )?tell 10\.32\.0\.1/, `gratuitous ARP on the bridge: ${seen}`)
      // Another container whose id shares the 7-character prefix must not take C1's interface.
      await net.attach({ netns: { pid }, containerId: 'c1aaaaaZZZ', addresses: ['10.32.0.2/12'] })
        .then(() => assert.unreachable(), (e) => assert.is(e.code, 'HOST_VETH_EXISTS'))
      assert.is(await ethwe(C2), undefined)
      const b = await net.attach({ netns: { pid }, containerId: String(pid), addresses: ['10.32.0.2/12'] })
      assert.is(a.created, true)
      assert.equal(a.added, ['10.32.0.1/12'])
      const e1 = await ethwe(C1)
      assert.equal(e1, { mac: a.mac, addrs: ['10.32.0.1/12'] })
      assert.equal((await ethwe(C2))?.addrs, ['10.32.0.2/12'])
      assert.is((await hostLink(hostVethName('c1aaaaaaaaaaaa')))?.master, 'weave')
      assert.is((await hostLink('vethwepl' + String(pid).slice(0, 7)))?.master, 'weave')
      assert.match(await out(C1, ['ip', 'route', 'show', '224.0.0.0/4']), 'dev ethwe')
      assert.is((await hostLink(hostVethName('c1aaaaaaaaaaaa')))?.mtu, 1376)
      assert.ok(await ping(C1, '10.32.0.2'), 'C1 pings C2 over ethwe')
      assert.ok(await ping(C2, '10.32.0.1'), 'C2 pings C1 over ethwe')

      // Idempotent: attaching again only adds what is missing.
      const again = await net.attach({ netns: { name: C1.ns }, containerId: 'c1aaaaaaaaaaaa', addresses: ['10.32.0.1/12', '10.40.0.1/24'] })
      assert.is(again.created, false)
      assert.is(again.mac, a.mac)
      assert.equal(again.added, ['10.40.0.1/24'])
      assert.equal((await ethwe(C1))?.addrs.sort(), ['10.32.0.1/12', '10.40.0.1/24'])
      const mc = (await out(C1, ['iptables', '-S', 'INPUT'])).split('\n').filter((l) => l.includes('224.0.0.0/4'))
      assert.equal(mc, [
        '-A INPUT -s 10.40.0.0/24 -d 224.0.0.0/4 -i ethwe -j ACCEPT',
        '-A INPUT -s 10.32.0.0/12 -d 224.0.0.0/4 -i ethwe -j ACCEPT',
        '-A INPUT -d 224.0.0.0/4 -i ethwe -j DROP',
      ])

      const ps = await net.listAttached([{ id: 'c1', netns: { name: C1.ns } }, { id: 'c2', netns: { pid } }, { id: 'c3', netns: { path: `/var/run/netns/${C3.ns}` } }])
      // the bridge's own line first (Weave's weave:expose, here with nothing exposed)
      assert.equal(ps.map((p) => [p.id, p.id === 'weave:expose' ? p.addresses : p.mac]), [['weave:expose', []], ['c1', a.mac], ['c2', b.mac]])

      // Detach one address, then the rest: the interface goes with the last one.
      const d1 = await net.detach({ netns: { name: C1.ns }, containerId: 'c1aaaaaaaaaaaa', addresses: ['10.40.0.1/24'] })
      assert.equal(d1, { removed: ['10.40.0.1/24'], remaining: ['10.32.0.1/12'], interfaceGone: false })
      const d2 = await net.detach({ netns: { name: C1.ns }, containerId: 'c1aaaaaaaaaaaa' })
      assert.is(d2.interfaceGone, true)
      assert.is(await ethwe(C1), undefined)
      assert.is(await hostLink(hostVethName('c1aaaaaaaaaaaa')), undefined)
      assert.not.match(await out(C1, ['iptables-save']), 'ethwe', 'multicast rules go with ethwe')
      assert.not.ok(await ping(C2, '10.32.0.1'), 'no path after detach')
      await net.detach({ netns: { pid }, containerId: String(pid) })
      assert.is(await ethwe(C2), undefined)
      // Detaching again is harmless.
      assert.equal(await net.detach({ netns: { pid }, containerId: String(pid) }), { removed: [], remaining: [], interfaceGone: true })
    } finally {
      sleeper?.kill('SIGKILL')
    }
  })

  lab('attach by path; expose gives the host a route in with masquerading, hide takes all of it back', async () => {
    await net.attach({ netns: { path: `/var/run/netns/${C3.ns}` }, containerId: 'c3', addresses: ['10.32.0.3/12'] })
    assert.not.ok(await ping(H, '10.32.0.3'), 'host cannot reach the subnet before expose')
    const beforeExpose = await snapshot(H)
    const ex = await net.expose('10.32.0.254/12')
    assert.equal(ex, { address: '10.32.0.254/12', addedAddress: true, addedRules: 4 })
    assert.equal(await net.expose('10.32.0.254/12'), { address: '10.32.0.254/12', addedAddress: false, addedRules: 0 })
    assert.ok(await ping(H, '10.32.0.3'), 'host reaches the container after expose')
    const save = await iptablesSave(H)
    assert.ok(save.includes('-A WEAVE -s 10.32.0.0/12 ! -d 10.32.0.0/12 -j MASQUERADE'), save)
    assert.ok(save.includes('-A WEAVE ! -s 10.32.0.0/12 -d 10.32.0.0/12 -j MASQUERADE'), save)
    assert.ok(save.includes('-A WEAVE-EXPOSE -d 10.32.0.0/12 -j ACCEPT'), save)
    const ps = await net.listAttached([{ id: 'c3', netns: { name: C3.ns } }])
    // Weave's order: the bridge's line first
    assert.equal(ps.map((p) => [p.id, p.addresses]), [['weave:expose', ['10.32.0.254/12']], ['c3', ['10.32.0.3/12']]])
    // Masquerading: the container reaches another lab host (h2's underlay address, which has no
    // route back to 10.32.0.0/12) through the host. Forwarding is the host's job, as with Docker.
    await C3.exec(['ip', 'link', 'set', 'dev', 'eth0', 'down']) // C3 is a lab host too: only ethwe may carry this
    assert.not.ok(await ping(C3, C1.underlayIp), 'no path before forwarding')
    await H.exec(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'])
    await C3.exec(['ip', 'route', 'replace', 'default', 'via', '10.32.0.254', 'dev', 'ethwe'])
    assert.ok(await ping(C3, C1.underlayIp), 'container reaches beyond the host, masqueraded')
    const h = await net.hide('10.32.0.254/12')
    assert.equal(h, { address: '10.32.0.254/12', removedAddress: true, removedRules: 4 })
    assert.equal(await snapshot(H), beforeExpose)
    assert.not.ok(await ping(H, '10.32.0.3'), 'host cannot reach the subnet after hide')
    // Without the masquerade rules (expose --without-masquerade) the replies have no way back.
    await net.expose('10.32.0.254/12', { masquerade: false })
    await C3.exec(['ip', 'route', 'replace', 'default', 'via', '10.32.0.254', 'dev', 'ethwe'])
    assert.ok(await ping(H, '10.32.0.3'), 'host still reaches the container')
    assert.not.ok(await ping(C3, C1.underlayIp), 'no masquerade, no way back')
    assert.equal(await net.hide('10.32.0.254/12'), { address: '10.32.0.254/12', removedAddress: true, removedRules: 1 })
    assert.equal(await snapshot(H), beforeExpose)
  })

  lab('without the native addon (the process path) attach makes the same ethwe', async () => {
    const viaIp = createNetHost({ netns: H.ns, native: false })
    const r = await viaIp.attach({ netns: { name: C2.ns }, containerId: 'c2proc', addresses: ['10.32.0.5/12'] })
    try {
      assert.is(r.created, true)
      assert.equal(await ethwe(C2), { mac: r.mac, addrs: ['10.32.0.5/12'] })
      assert.is((await hostLink(hostVethName('c2proc')))?.master, 'weave')
      assert.match(await out(C2, ['ip', 'route', 'show', '224.0.0.0/4']), 'dev ethwe')
      const mc = (await out(C2, ['iptables', '-S', 'INPUT'])).split('\n').filter((l) => l.includes('224.0.0.0/4'))
      assert.equal(mc, ['-A INPUT -s 10.32.0.0/12 -d 224.0.0.0/4 -i ethwe -j ACCEPT', '-A INPUT -d 224.0.0.0/4 -i ethwe -j DROP'])
      assert.ok(await ping(C2, '10.32.0.3'), 'reaches the natively attached C3')
    } finally {
      await viaIp.detach({ netns: { name: C2.ns }, containerId: 'c2proc' })
    }
    assert.is(await ethwe(C2), undefined)
  })

  lab('resetHost leaves nothing of ours (and keeps other rules)', async () => {
    await net.expose('10.32.0.254/12')
    assert.ok(await ethwe(C3), 'C3 still attached before reset')
    const r = await net.resetHost()
    assert.ok(r.links.includes('weave'))
    assert.ok(r.iptablesChains >= 4)
    assert.is(await ethwe(C3), undefined, 'a container loses ethwe with its host end')
    const after = await snapshot(H)
    assert.equal(after, before)
    assert.ok(after.rules.includes('-A FORWARD -i other0 -j ACCEPT'))
    // Twice is fine.
    assert.equal(await net.resetHost(), { links: [], iptablesJumps: 0, iptablesChains: 0 })
  })
}

lab.run()

// Docker containers: the CLI resolves a container to its pid through the Docker API; from there
// attach is the same call. One lab host runs dockerd (no docker0: --bridge=none).
const docker = suite('net lab: docker containers')
const whyDocker = labUnavailableReason({ docker: true })
if (whyDocker) {
  skipFile('net lab: docker containers', whyDocker, docker)
} else {
  docker('two Docker containers attached by pid ping each other over ethwe; reset leaves nothing', async () => {
    const D = await createLab({ hosts: 1, docker: true })
    try {
      const h = D.hosts[0]
      const dnet = createNetHost({ netns: h.ns })
      await dnet.ensureBridge()
      const ids: string[] = []
      for (const [i, name] of ['dc1', 'dc2'].entries()) {
        const id = (await h.docker(['run', '-d', '--name', name, 'busybox:latest', 'sleep', '600'])).stdout.trim()
        const pid = Number((await h.docker(['inspect', '-f', '{{.State.Pid}}', id])).stdout.trim())
        assert.ok(pid > 0)
        const r = await dnet.attach({ netns: { pid }, containerId: id, addresses: [`10.32.1.${i + 1}/12`] })
        assert.is(r.created, true)
        assert.match((await h.docker(['exec', name, 'ip', 'addr', 'show', 'ethwe'])).stdout, `10.32.1.${i + 1}/12`)
        ids.push(id)
      }
      assert.is((await h.exec(['ip', '-j', '-d', 'link', 'show', 'dev', hostVethName(ids[0])]).then((r) => JSON.parse(r.stdout)[0].master)), 'weave')
      assert.ok(await ok(h.docker(['exec', 'dc1', 'ping', '-c', '1', '-W', '2', '10.32.1.2'])), 'dc1 pings dc2')
      const r = await dnet.resetHost()
      assert.ok(r.links.includes(hostVethName(ids[0])))
      assert.not.ok(await ok(h.docker(['exec', 'dc1', 'ip', 'link', 'show', 'ethwe'])), 'ethwe gone after reset')
      assert.not.ok((await h.exec(['iptables-save'])).stdout.includes('WEAVE'))
    } finally {
      await D.teardown()
    }
  })
}
docker.run()
