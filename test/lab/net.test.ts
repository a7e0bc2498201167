/**
 * router/net for real, inside lab namespaces only: a "host" namespace runs the bridge and its
 * iptables; plain namespaces play containers. Nothing touches the root namespace.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile, spawn, ChildProcess } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { createNetHost, NetHost, hostVethName } from '../../router/net'

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
const P = `wnet${process.pid}`
const H = `${P}-h`
const C1 = `${P}-c1`
const C2 = `${P}-c2`
const C3 = `${P}-c3`
const ALL = [H, C1, C2, C3]

function sh(argv: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${argv.join(' ')}: ${stderr || err.message}`))
      else resolve(stdout)
    })
  })
}
const inNs = (ns: string, argv: string[]) => sh(['nsenter', `--net=/var/run/netns/${ns}`, '--', ...argv])
const ok = (p: Promise<unknown>) => p.then(() => true, () => false)
const ping = (ns: string, addr: string) => ok(inNs(ns, ['busybox', 'ping', '-c', '1', '-W', '2', addr]))

/** What is ours to leave behind: links, addresses, routes, iptables rules and non-builtin chains. */
async function snapshot(ns: string): Promise<{ links: string[]; addrs: string[]; routes: string[]; rules: string[] }> {
  const links = JSON.parse(await inNs(ns, ['ip', '-j', 'link', 'show'])).map((l: { ifname: string }) => l.ifname).sort()
  const addrs = (await inNs(ns, ['ip', '-o', 'addr', 'show'])).split('\n').filter(Boolean)
    .map((l) => l.split(/\s+/).slice(1, 4).join(' ')).sort()
  const routes = (await inNs(ns, ['ip', 'route', 'show', 'table', 'all'])).split('\n').filter(Boolean).sort()
  const builtin = new Set(['INPUT', 'OUTPUT', 'FORWARD', 'PREROUTING', 'POSTROUTING'])
  const rules = (await inNs(ns, ['iptables-save'])).split('\n')
    .filter((l) => l.startsWith('-A ') || (l.startsWith(':') && !builtin.has(l.slice(1).split(' ')[0])))
    .map((l) => l.replace(/\s*\[\d+:\d+\]$/, '')).sort()
  return { links, addrs, routes, rules }
}

async function iptablesSave(ns: string): Promise<string> {
  return inNs(ns, ['iptables-save'])
}

async function ethwe(ns: string): Promise<{ mac: string; addrs: string[] } | undefined> {
  try {
    const [l] = JSON.parse(await inNs(ns, ['ip', '-j', 'addr', 'show', 'dev', 'ethwe']))
    return { mac: l.address, addrs: l.addr_info.filter((a: { family: string }) => a.family === 'inet').map((a: { local: string; prefixlen: number }) => `${a.local}/${a.prefixlen}`) }
  } catch { return undefined }
}

async function hostLink(name: string): Promise<{ mtu: number; master?: string; kind?: string; up: boolean } | undefined> {
  try {
    const [l] = JSON.parse(await inNs(H, ['ip', '-j', '-d', 'link', 'show', 'dev', name]))
    return { mtu: l.mtu, master: l.master, kind: l.linkinfo?.info_kind, up: l.flags.includes('UP') }
  } catch { return undefined }
}

/** Namespaces left by an earlier run of this test that was killed (its pid is gone). */
async function sweepStale(): Promise<void> {
  let names: string[] = []
  try { names = readdirSync('/var/run/netns') } catch { return }
  for (const n of names) {
    const m = /^wnet(\d+)-/.exec(n)
    if (!m || Number(m[1]) === process.pid) continue
    try { process.kill(Number(m[1]), 0); continue } catch { /* dead: ours to sweep */ }
    await ok(sh(['ip', 'netns', 'del', n]))
  }
}

let sleeper: ChildProcess | undefined
let net: NetHost
let before: Awaited<ReturnType<typeof snapshot>>

async function teardown(): Promise<void> {
  if (sleeper && sleeper.exitCode === null) sleeper.kill('SIGKILL')
  for (const ns of ALL) await ok(sh(['ip', 'netns', 'del', ns]))
}

const lab = suite('net lab')

if (!isRoot) {
  lab('skipped', () => { console.log('test/lab/net: skipped, needs root (network namespaces, iptables)') })
} else {
  lab.before(async () => {
    await sweepStale()
    process.once('SIGINT', () => { void teardown().finally(() => process.exit(130)) })
    for (const ns of ALL) {
      await sh(['ip', 'netns', 'add', ns])
      await inNs(ns, ['ip', 'link', 'set', 'lo', 'up'])
    }
    // Someone else's rule in the host: reset must leave it alone.
    await inNs(H, ['iptables', '-w', '5', '-A', 'FORWARD', '-i', 'other0', '-j', 'ACCEPT'])
    before = await snapshot(H)
    net = createNetHost({ netns: H })
  })
  lab.after(teardown)

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
    const save = await iptablesSave(H)
    assert.is(save.split('\n').filter((l) => l === '-A FORWARD -j WEAVE-FORWARD').length, 1)
    assert.is(save.split('\n').filter((l) => l === '-A POSTROUTING -j WEAVE').length, 1)
    assert.ok(save.includes('-A WEAVE-FORWARD -i docker0 -o weave -j DROP'))
    assert.is(save.split('\n').filter((l) => l.startsWith('-A WEAVE-FORWARD')).length, 5)
  })

  lab('two namespaces get ethwe, ping each other through the bridge, then detach', async () => {
    sleeper = spawn('nsenter', [`--net=/var/run/netns/${C2}`, '--', 'sleep', '600'], { stdio: 'ignore' })
    const pid = sleeper.pid!
    try {
      const a = await net.attach({ netns: { name: C1 }, containerId: 'c1aaaaaaaaaaaa', addresses: ['10.32.0.1/12'] })
      const b = await net.attach({ netns: { pid }, containerId: String(pid), addresses: ['10.32.0.2/12'] })
      assert.is(a.created, true)
      assert.equal(a.added, ['10.32.0.1/12'])
      const e1 = await ethwe(C1)
      assert.equal(e1, { mac: a.mac, addrs: ['10.32.0.1/12'] })
      assert.equal((await ethwe(C2))?.addrs, ['10.32.0.2/12'])
      assert.is((await hostLink(hostVethName('c1aaaaaaaaaaaa')))?.master, 'weave')
      assert.is((await hostLink('vethwepl' + String(pid).slice(0, 7)))?.master, 'weave')
      assert.match(await inNs(C1, ['ip', 'route', 'show', '224.0.0.0/4']), 'dev ethwe')
      assert.is((await hostLink(hostVethName('c1aaaaaaaaaaaa')))?.mtu, 1376)
      assert.ok(await ping(C1, '10.32.0.2'), 'C1 pings C2 over ethwe')
      assert.ok(await ping(C2, '10.32.0.1'), 'C2 pings C1 over ethwe')

      // Idempotent: attaching again only adds what is missing.
      const again = await net.attach({ netns: { name: C1 }, containerId: 'c1aaaaaaaaaaaa', addresses: ['10.32.0.1/12', '10.40.0.1/24'] })
      assert.is(again.created, false)
      assert.is(again.mac, a.mac)
      assert.equal(again.added, ['10.40.0.1/24'])
      assert.equal((await ethwe(C1))?.addrs.sort(), ['10.32.0.1/12', '10.40.0.1/24'])

      const ps = await net.listAttached([{ id: 'c1', netns: { name: C1 } }, { id: 'c2', netns: { pid } }, { id: 'c3', netns: { path: `/var/run/netns/${C3}` } }])
      assert.equal(ps.map((p) => [p.id, p.mac]), [['c1', a.mac], ['c2', b.mac]])

      // Detach one address, then the rest: the interface goes with the last one.
      const d1 = await net.detach({ netns: { name: C1 }, containerId: 'c1aaaaaaaaaaaa', addresses: ['10.40.0.1/24'] })
      assert.equal(d1, { removed: ['10.40.0.1/24'], remaining: ['10.32.0.1/12'], interfaceGone: false })
      const d2 = await net.detach({ netns: { name: C1 }, containerId: 'c1aaaaaaaaaaaa' })
      assert.is(d2.interfaceGone, true)
      assert.is(await ethwe(C1), undefined)
      assert.is(await hostLink(hostVethName('c1aaaaaaaaaaaa')), undefined)
      assert.not.ok(await ping(C2, '10.32.0.1'), 'no path after detach')
      await net.detach({ netns: { pid }, containerId: String(pid) })
      assert.is(await ethwe(C2), undefined)
      // Detaching again is harmless.
      assert.equal(await net.detach({ netns: { pid }, containerId: String(pid) }), { removed: [], remaining: [], interfaceGone: true })
    } finally {
      sleeper.kill('SIGKILL')
    }
  })

  lab('attach by path; expose gives the host a route in with masquerading, hide takes all of it back', async () => {
    await net.attach({ netns: { path: `/var/run/netns/${C3}` }, containerId: 'c3', addresses: ['10.32.0.3/12'] })
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
    const ps = await net.listAttached([{ id: 'c3', netns: { name: C3 } }])
    assert.equal(ps.map((p) => [p.id, p.addresses]), [['c3', ['10.32.0.3/12']], ['weave:expose', ['10.32.0.254/12']]])
    const h = await net.hide('10.32.0.254/12')
    assert.equal(h, { address: '10.32.0.254/12', removedAddress: true, removedRules: 4 })
    assert.equal(await snapshot(H), beforeExpose)
    assert.not.ok(await ping(H, '10.32.0.3'), 'host cannot reach the subnet after hide')
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
