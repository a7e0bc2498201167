/**
 * weaveDNS on three lab hosts with real dockerd, the real proxy and `weave` command, plus a fourth
 * host running dnsmasq (Debian's) as the upstream resolver; queries come from `dig` run in the
 * containers' network namespaces and from busybox nslookup/ping inside the containers (which use
 * the resolver settings the proxy gave them). Nothing is forwarded outside the lab: every daemon
 * reads a resolv.conf naming only lab addresses.
 *
 * Daemons listen on 0.0.0.0:53 inside their host namespaces (lab engines have no docker0), so
 * containers are pointed at each host's `weave expose` address.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { createLab, labUnavailableReason, delay, waitFor, type Lab, type LabHost } from './index'
import { run } from './exec'
import { skipFile } from '../skip'

const why = labUnavailableReason({ docker: true }) ?? (fs.existsSync('/usr/bin/dig') && fs.existsSync('/usr/sbin/dnsmasq') ? undefined : 'dig (bind9-dnsutils) or dnsmasq missing')
let lab: Lab
let h1: LabHost, h2: LabHost, h3: LabHost, up: LabHost
const dnsAddr = new Map<LabHost, string>()
const resolvConf = (h: LabHost) => path.join(h.dir, 'resolv.conf')
const DEAD = '192.168.250.99' // on the lab LAN, nobody: queries to it time out
// h2's per-client limit is low enough that a flood from one container exceeds what its daemon
// reads on this loaded machine (beyond that the kernel's socket buffer drops, uncounted)
const H2_ARGS = ['--no-rewrite-hosts', '--dns-rate-limit', '300']

/** docker through the host's weave proxy. */
function dk(h: LabHost, args: string[], opts: { allowFail?: boolean } = {}) {
  return run(['docker', '-H', `unix://${h.weaveRunDir}/weave.sock`, ...args], { timeoutMs: 120_000, ...opts })
}
async function pidOf(h: LabHost, ctr: string): Promise<number> { return h.containerPid(ctr) }
/** dig inside a container's network namespace against its host's weaveDNS. */
async function dig(h: LabHost, ctr: string, args: string[], server = dnsAddr.get(h)!): Promise<string> {
  const pid = await pidOf(h, ctr)
  return (await run(['nsenter', '-t', String(pid), '-n', 'dig', `@${server}`, '+time=2', '+tries=1', ...args], { allowFail: true, timeoutMs: 30_000 })).stdout
}
async function short(h: LabHost, ctr: string, args: string[]): Promise<string[]> {
  return (await dig(h, ctr, ['+short', ...args])).trim().split('\n').filter(Boolean)
}
const ipOf = async (h: LabHost, ctr: string) => /inet (\d+\.\d+\.\d+\.\d+)/.exec((await dk(h, ['exec', ctr, 'ip', '-4', 'addr', 'show', 'ethwe'])).stdout)![1]
const statusDns = async (h: LabHost) => (await h.weave(['status', 'dns'])).stdout

async function launch(h: LabHost, extra: string[], peers: string[]) {
  await h.launchWeaveWait(['--ipalloc-init', 'consensus=3', '--dns-listen-address', '0.0.0.0:53', '--resolv-conf', resolvConf(h), '--dns-fallback-timeout', '1000', ...extra, ...peers])
}

if (why) {
  skipFile('dns lab', why)
} else {
  test.before(async () => {
    try {
      lab = await createLab({ hosts: 4, docker: ['h1', 'h2', 'h3'] })
      ;[h1, h2, h3, up] = lab.hosts
      fs.writeFileSync(path.join(up.dir, 'hosts'), '192.0.2.10 upstream.example.com\n192.0.2.11 other.example.com\n')
      up.spawn(['dnsmasq', '--keep-in-foreground', '--no-resolv', '--no-hosts', `--addn-hosts=${path.join(up.dir, 'hosts')}`,
        `--listen-address=${up.underlayIp}`, '--bind-interfaces', '--port=53', '--user=root', `--pid-file=${path.join(up.dir, 'dnsmasq.pid')}`, '--log-facility=-'], { stdio: 'ignore' })
      for (const h of [h1, h2, h3]) fs.writeFileSync(resolvConf(h), `nameserver ${up.underlayIp}\n`)
      await Promise.all([
        launch(h1, [], []),
        launch(h2, H2_ARGS, [h1.underlayIp]),
        launch(h3, ['--hostname-from-label', 'dns-name', '--hostname-match', '^app-(.*)$', '--hostname-replacement', '$1'], [h1.underlayIp, h2.underlayIp]),
      ])
      for (const h of [h1, h2, h3]) {
        const ip = (await h.weave(['expose', '-h', `${h.name}.weave.local`])).stdout.trim().split(' ')[0]
        dnsAddr.set(h, ip)
      }
    } catch (err) {
      console.error(`dns lab: setup failed: ${(err as Error).stack}`)
      throw err
    }
  })
  test.after(async () => {
    for (const h of lab?.hosts.slice(0, 3) ?? []) await h.weave(['stop'], { allowFail: true })
    await lab?.teardown()
  })

  test('a container named web on h1 is resolved and pinged from h2 within 1 s of docker run returning; reverse lookup', async () => {
    await dk(h2, ['run', '-d', '--name', 'client2', 'busybox', 'sleep', '3600'])
    await dk(h3, ['run', '-d', '--name', 'client3', 'busybox', 'sleep', '3600'])
    await dk(h1, ['run', '-d', '--name', 'web', 'busybox', 'sleep', '3600'])
    const t0 = Date.now()
    const got = await waitFor('web from h2', async () => (await short(h2, 'client2', ['web.weave.local'])).length > 0, 5000, 20)
    const ms = Date.now() - t0
    assert.ok(got)
    assert.ok(ms <= 1000, `resolved after ${ms} ms`)
    const ip = await ipOf(h1, 'web')
    assert.equal(await short(h2, 'client2', ['web.weave.local']), [ip])
    assert.equal(await short(h3, 'client3', ['WEB.weave.LOCAL']), [ip])
    // inside the container: the proxy's --dns/--dns-search make plain `web` work for busybox
    const ns = await dk(h2, ['exec', 'client2', 'nslookup', 'web'], { allowFail: true })
    assert.match(ns.stdout, new RegExp(`Address.*${ip.replace(/\./g, '\\.')}`), ns.stdout + ns.stderr)
    const ping = await dk(h2, ['exec', 'client2', 'ping', '-c', '1', '-w', '10', 'web'], { allowFail: true })
    assert.is(ping.code, 0, ping.stdout + ping.stderr)
    const ping2 = await dk(h2, ['exec', 'client2', 'ping', '-c', '1', '-w', '10', 'web.weave.local'], { allowFail: true })
    assert.is(ping2.code, 0, ping2.stdout)
    assert.equal(await short(h2, 'client2', ['-x', ip]), ['web.weave.local.'])
    const rc = (await dk(h2, ['exec', 'client2', 'cat', '/etc/resolv.conf'])).stdout
    assert.match(rc, new RegExp(`nameserver ${dnsAddr.get(h2)!.replace(/\./g, '\\.')}`))
    assert.match(rc, /search weave\.local/)
  })

  test('after docker kill and docker rm no host answers within 1 s', async () => {
    await dk(h1, ['run', '-d', '--name', 'victim', 'busybox', 'sleep', '3600'])
    await waitFor('victim on h3', async () => (await short(h3, 'client3', ['victim.weave.local'])).length > 0, 5000, 50)
    await dk(h1, ['kill', 'victim'])
    const t0 = Date.now()
    await waitFor('victim gone on h2 and h3', async () =>
      (await short(h2, 'client2', ['victim.weave.local'])).length === 0 && (await short(h3, 'client3', ['victim.weave.local'])).length === 0, 5000, 20)
    assert.ok(Date.now() - t0 <= 1000, `gone after ${Date.now() - t0} ms`)
    assert.match(await dig(h2, 'client2', ['victim.weave.local']), /NXDOMAIN/)
    await dk(h1, ['start', 'victim'])
    await waitFor('victim back', async () => (await short(h2, 'client2', ['victim.weave.local'])).length > 0, 5000, 50)
    await dk(h1, ['rm', '-f', 'victim'])
    const t1 = Date.now()
    await waitFor('victim removed', async () => (await short(h3, 'client3', ['victim.weave.local'])).length === 0, 5000, 20)
    assert.ok(Date.now() - t1 <= 1000, `gone after ${Date.now() - t1} ms`)
  })

  test('six containers through five kill/start cycles leave exactly the live entries on every host', async () => {
    const hosts = [h1, h2, h3, h1, h2, h3]
    for (let i = 0; i < 6; i++) await dk(hosts[i], ['run', '-d', '--name', `cyc${i}`, 'busybox', 'sleep', '3600'])
    for (let round = 0; round < 5; round++) {
      await Promise.all([0, 1, 2, 3, 4, 5].map((i) => dk(hosts[i], ['kill', `cyc${i}`])))
      await Promise.all([0, 1, 2, 3, 4, 5].map((i) => dk(hosts[i], ['start', `cyc${i}`])))
    }
    await dk(h2, ['kill', 'cyc4'])
    const want = [0, 1, 2, 3, 5].map((i) => `cyc${i}`)
    for (const h of [h1, h2, h3]) {
      await waitFor(`entries on ${h.name}`, async () => {
        const names = (await statusDns(h)).split('\n').map((l) => l.split(/\s+/)[0]).filter((n) => n.startsWith('cyc'))
        return JSON.stringify(names.sort()) === JSON.stringify(want) || undefined
      }, 10_000, 200)
    }
    const ips = await Promise.all(want.map((n) => ipOf(hosts[Number(n.slice(3))], n).then((ip) => [n, ip] as const)))
    for (const [n, ip] of ips) assert.equal(await short(h3, 'client3', [`${n}.weave.local`]), [ip], n)
    void ips
  })

  test('one name on three hosts: every address comes back, in varying order', async () => {
    for (const [i, h] of [h1, h2, h3].entries()) await dk(h, ['run', '-d', '--name', `multi${i}`, '-h', 'multi.weave.local', 'busybox', 'sleep', '3600'])
    const want = (await Promise.all([h1, h2, h3].map((h, i) => ipOf(h, `multi${i}`)))).sort()
    await waitFor('all three', async () => JSON.stringify((await short(h2, 'client2', ['multi.weave.local'])).sort()) === JSON.stringify(want), 5000, 50)
    const orders = new Set<string>()
    for (let i = 0; i < 15; i++) orders.add((await short(h2, 'client2', ['multi.weave.local'])).join(' '))
    assert.ok(orders.size >= 2, `orders seen: ${[...orders].join(' | ')}`)
  })

  test('dns-add/dns-remove with and without a container; manual records survive a restart; dns-lookup; expose -h', async () => {
    await h1.weave(['dns-add', '10.32.99.1', '-h', 'manual.weave.local'])
    await waitFor('manual on h3', async () => (await short(h3, 'client3', ['manual.weave.local'])).join() === '10.32.99.1', 5000, 50)
    await dk(h1, ['run', '-d', '--name', 'keeper', 'busybox', 'sleep', '3600'])
    await h1.weave(['dns-add', '10.32.99.2', 'keeper', '-h', 'alias.weave.local'])
    await h1.weave(['dns-add', 'keeper', '-h', 'alias2.weave.local']) // the container's own address
    const kip = await ipOf(h1, 'keeper')
    await waitFor('alias on h2', async () => (await short(h2, 'client2', ['alias.weave.local'])).join() === '10.32.99.2', 5000, 50)
    assert.equal(await short(h2, 'client2', ['alias2.weave.local']), [kip])
    await dk(h1, ['restart', '-t', '1', 'keeper'])
    // the owner's own view first (no network in between), then another host's answer
    assert.match(await statusDns(h1), /^alias\s+10\.32\.99\.2\s/m, 'manual record survives a restart')
    await waitFor('alias and keeper on h2 after the restart', async () =>
      (await short(h2, 'client2', ['alias.weave.local'])).join() === '10.32.99.2' && (await short(h2, 'client2', ['keeper.weave.local'])).join() === kip, 5000, 100)
    await h1.weave(['dns-remove', '10.32.99.2', 'keeper'])
    await h1.weave(['dns-remove', '10.32.99.1', '-h', 'manual.weave.local'])
    await waitFor('removed', async () => (await short(h2, 'client2', ['alias.weave.local'])).length === 0 && (await short(h2, 'client2', ['manual.weave.local'])).length === 0, 5000, 50)
    assert.equal((await h1.weave(['dns-lookup', 'keeper'])).stdout.trim(), kip)
    // expose -h at setup: each host's address by name
    assert.equal(await short(h2, 'client2', ['h1.weave.local']), [dnsAddr.get(h1)!])
  })

  test('weave attach registers a container started straight on the engine under its hostname', async () => {
    await h1.docker(['run', '-d', '--name', 'plain', '-h', 'plain.weave.local', 'busybox', 'sleep', '3600'])
    const ip = (await h1.weave(['attach', 'plain'])).stdout.trim()
    await waitFor('plain on h2', async () => (await short(h2, 'client2', ['plain.weave.local'])).join() === ip, 5000, 50)
    await h1.weave(['detach', 'plain'])
    await waitFor('plain gone', async () => (await short(h2, 'client2', ['plain.weave.local'])).length === 0, 5000, 50)
  })

  test('50 addresses: UDP truncates with TC, dig retries over TCP; +tcp and +bufsize get all', async () => {
    const ips = Array.from({ length: 50 }, (_, i) => `10.40.1.${i + 1}`)
    await h1.weave(['dns-add', ...ips, '-h', 'fifty.weave.local'])
    await waitFor('fifty on h2', async () => (await short(h2, 'client2', ['+tcp', 'fifty.weave.local'])).length === 50, 5000, 100)
    const tc = await dig(h2, 'client2', ['+noedns', '+ignore', 'fifty.weave.local'])
    assert.match(tc, /flags: qr aa tc rd ra/)
    assert.ok(Number(/MSG SIZE\s+rcvd: (\d+)/.exec(tc)![1]) <= 512)
    assert.is((await short(h2, 'client2', ['+noedns', 'fifty.weave.local'])).length, 50, 'TC then TCP')
    assert.is((await short(h2, 'client2', ['+tcp', 'fifty.weave.local'])).length, 50)
    assert.is((await short(h2, 'client2', ['+bufsize=4096', '+ignore', 'fifty.weave.local'])).length, 50)
    await h1.weave(['dns-remove', '-h', 'fifty.weave.local'])
  })

  test('upstream: forwarded through dnsmasq, a dead first server costs the timeout, all dead is SERVFAIL, resolv.conf re-read', async () => {
    assert.equal(await short(h2, 'client2', ['upstream.example.com']), ['192.0.2.10'])
    fs.writeFileSync(resolvConf(h2), `nameserver ${DEAD}\nnameserver ${up.underlayIp}\n`)
    await delay(1200) // re-read at most once a second
    const t0 = Date.now()
    const out = await dig(h2, 'client2', ['+time=5', 'other.example.com'])
    const ms = Date.now() - t0
    assert.match(out, /192\.0\.2\.11/)
    assert.ok(ms >= 900 && ms < 2500, `dead first server cost ${ms} ms (timeout 1000)`)
    fs.writeFileSync(resolvConf(h2), `nameserver ${DEAD}\nnameserver 127.0.0.1\nnameserver ${dnsAddr.get(h2)}\n`)
    await delay(1200)
    const counters = async () => (JSON.parse((await h2.weave(['report'])).stdout) as { DNS: { Counters: Record<string, number> } }).DNS.Counters
    const before = await counters()
    const fail = await dig(h2, 'client2', ['+time=5', 'upstream.example.com'])
    assert.match(fail, /status: SERVFAIL/, 'the dead server, and ourselves skipped')
    const after = await counters()
    assert.is(after.forwarded - before.forwarded, 1, 'forwarded once: never to itself (no loop)')
    assert.is(after.queries - before.queries, 1)
    assert.match((await h2.weave(['status'])).stdout, new RegExp(`Upstream: ${DEAD.replace(/\./g, '\\.')}\n`), 'status lists only the dead server')
    fs.writeFileSync(resolvConf(h2), `nameserver ${up.underlayIp}\n`)
    await delay(1200)
    assert.equal(await short(h2, 'client2', ['upstream.example.com']), ['192.0.2.10'])
  })

  test('cutting h3 off: its entries go elsewhere once it leaves the topology and come back after the heal', async () => {
    const ip = await ipOf(h3, 'multi2')
    await lab.partition([h3], [h1, h2, up])
    try {
      await waitFor('h3 entries gone on h1', async () => !(await short(h1, 'web', ['multi.weave.local'])).includes(ip), 120_000, 500)
      await waitFor('h3 entries gone on h2', async () => !(await statusDns(h2)).includes(ip), 120_000, 500)
    } finally {
      await lab.heal()
    }
    await waitFor('h3 entries back on h1', async () => (await short(h1, 'web', ['multi.weave.local'])).includes(ip), 120_000, 500)
    await waitFor('h1 entries back on h3', async () => (await short(h3, 'client3', ['web.weave.local'])).length === 1, 120_000, 500)
  })

  test('a router restart repopulates its live containers', async () => {
    const ip = await ipOf(h2, 'multi1')
    await h2.weave(['stop'])
    await launch(h2, H2_ARGS, [h1.underlayIp])
    await waitFor('h2 multi1 on h1', async () => (await short(h1, 'web', ['multi.weave.local'])).includes(ip), 30_000, 200)
    const local = await waitFor('h2 answers itself', async () => (await short(h2, 'client2', ['multi1.weave.local', 'multi.weave.local'])).includes(ip), 30_000, 200)
    assert.ok(local)
  })

  test('proxy naming: -h wins, label, match/replacement, >64 chars skipped with one warning; hosts file; --dns kept', async () => {
    assert.match((await dk(h1, ['exec', 'web', 'hostname'])).stdout, /^web/)
    await dk(h3, ['run', '-d', '--name', 'app-shop', 'busybox', 'sleep', '3600'])
    await dk(h3, ['run', '-d', '--name', 'labelled', '--label', 'dns-name=db', 'busybox', 'sleep', '3600'])
    await dk(h3, ['run', '-d', '--name', 'given', '-h', 'chosen.weave.local', 'busybox', 'sleep', '3600'])
    const long = 'x'.repeat(60)
    await dk(h3, ['run', '-d', '--name', long, 'busybox', 'sleep', '3600'])
    await dk(h3, ['run', '-d', '--name', `${long}y`, 'busybox', 'sleep', '3600'])
    await waitFor('names on h2', async () =>
      (await short(h2, 'client2', ['shop.weave.local'])).length === 1 && (await short(h2, 'client2', ['db.weave.local'])).length === 1 &&
      (await short(h2, 'client2', ['chosen.weave.local'])).length === 1, 5000, 100)
    assert.is((await statusDns(h3)).split('\n').filter((l) => l.startsWith('xxxx')).length, 0)
    const warnings = h3.weaverLog(2000).split('\n').filter((l) => /too long for DNS/.test(l))
    assert.is(warnings.length, 1, warnings.join('\n'))
    // --rewrite-hosts (default, h1): /etc/hosts names the weave address; --no-rewrite-hosts (h2) leaves Docker's
    const hosts1 = (await dk(h1, ['exec', 'web', 'cat', '/etc/hosts'])).stdout
    assert.match(hosts1, new RegExp(`${(await ipOf(h1, 'web')).replace(/\./g, '\\.')}\\s+web\\.weave\\.local web`))
    const hosts2 = (await dk(h2, ['exec', 'client2', 'cat', '/etc/hosts'])).stdout
    assert.not.match(hosts2, new RegExp((await ipOf(h2, 'client2')).replace(/\./g, '\\.')))
    // a container with its own --dns keeps it
    await dk(h1, ['run', '-d', '--name', 'owndns', '--dns', '10.9.9.9', 'busybox', 'sleep', '3600'])
    assert.match((await dk(h1, ['exec', 'owndns', 'cat', '/etc/resolv.conf'])).stdout, /nameserver 10\.9\.9\.9/)
  })

  test('status, status dns, report, dns-args', async () => {
    const st = (await h1.weave(['status'])).stdout
    assert.match(st, /Service: dns\n\s+Domain: weave\.local\.\n\s+Address: 0\.0\.0\.0:53\n\s+Upstream: 192\.168\.250\.4\n\s+TTL: 1\n\s+Entries: \d+/)
    const lines = (await statusDns(h1)).trim().split('\n')
    const web = lines.find((l) => l.startsWith('web '))!
    assert.match(web, /^web\s+10\.\d+\.\d+\.\d+\s+[0-9a-f]{12}\s+[0-9a-f:]{17}$/)
    const cols = lines.map((l) => l.search(/10\.|192\./))
    assert.is(new Set(cols).size, 1, 'aligned')
    const rep = JSON.parse((await h1.weave(['report'])).stdout) as { DNS: { Domain: string; Entries: Array<{ Hostname: string }> } }
    assert.is(rep.DNS.Domain, 'weave.local.')
    assert.ok(rep.DNS.Entries.some((e) => e.Hostname === 'web.weave.local.'))
    assert.is((await h1.weave(['dns-args'])).stdout.trim(), `--dns=${dnsAddr.get(h1)} --dns-search=weave.local`)
  })

  test('bad input: malformed queries, a flood from one container and HTTP on TCP 53 are dropped and counted; others unaffected', async () => {
    const pid = await pidOf(h2, 'client2')
    const server = dnsAddr.get(h2)!
    const script = `
      const dgram = require('dgram'), net = require('net')
      const s = dgram.createSocket('udp4')
      const q = Buffer.from('00010100000100000000000003776562057765617665056c6f63616c0000010001', 'hex')
      let i = 0
      s.send(Buffer.from([1,2,3]), 53, '${server}'); s.send(Buffer.alloc(300, 0xff), 53, '${server}')
      const big = Buffer.concat([q.subarray(0, 12), Buffer.alloc(400, 63), Buffer.from([0,0,1,0,1])]); s.send(big, 53, '${server}')
      const t = setInterval(() => { for (let k = 0; k < 200; k++) s.send(q, 53, '${server}'); if (++i >= 25) { clearInterval(t); setTimeout(() => s.close(), 200) } }, 20)
      const c = net.connect(53, '${server}', () => c.write('GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'))
      let got = 0; c.on('data', (d) => { got += d.length }); c.on('close', () => console.log('http-bytes ' + got)); c.on('error', () => {})
    `
    const flood = run(['nsenter', '-t', String(pid), '-n', process.execPath, '-e', script], { timeoutMs: 30_000 })
    // meanwhile another container resolves normally
    await delay(200)
    assert.equal((await short(h3, 'client3', ['web.weave.local'])).length, 1)
    const out = await flood
    assert.match(out.stdout, /http-bytes 0/)
    const rep = JSON.parse((await h2.weave(['report'])).stdout) as { DNS: { Counters: Record<string, number> } }
    const c = rep.DNS.Counters
    assert.ok(c.malformed >= 2, `malformed ${c.malformed}`)
    assert.ok(c.rateLimited > 0, `rate limited ${c.rateLimited}`)
    assert.ok(c.httpRefused >= 1, `http refused ${c.httpRefused}`)
    await waitFor('the flooder itself served again afterwards', async () => (await short(h2, 'client2', ['web.weave.local'])).length === 1, 5000, 200)
  })

  test('weave launch --no-dns: no DNS, dns-args prints nothing', async () => {
    await h3.weave(['stop'])
    await launch(h3, ['--no-dns'], [h1.underlayIp])
    assert.is((await h3.weave(['dns-args'])).stdout, '')
    assert.match((await h3.weave(['status'])).stdout, /Service: dns\n\s+Status: off \(--no-dns\)/)
    await dk(h3, ['run', '-d', '--name', 'nodns', 'busybox', 'sleep', '3600'])
    assert.not.match((await dk(h3, ['exec', 'nodns', 'cat', '/etc/resolv.conf'])).stdout, /weave\.local/)
  })

  test('--without-dns leaves the resolver alone but the name is registered; --dns-ttl', async () => {
    await h3.weave(['stop'])
    await launch(h3, ['--without-dns', '--dns-ttl', '30'], [h1.underlayIp])
    await dk(h3, ['run', '-d', '--name', 'nores', 'busybox', 'sleep', '3600'])
    const rc = (await dk(h3, ['exec', 'nores', 'cat', '/etc/resolv.conf'])).stdout
    assert.not.match(rc, /weave\.local/)
    assert.not.match(rc, new RegExp(`nameserver ${dnsAddr.get(h3)!.replace(/\./g, '\\.')}`))
    await waitFor('nores on h2', async () => (await short(h2, 'client2', ['nores.weave.local'])).length === 1, 5000, 50)
    // h3's fresh daemon learns h1's entries from gossip once connected
    const ans = await waitFor('web on the restarted h3', async () => {
      const out = await dig(h3, 'nores', ['+noall', '+answer', 'web.weave.local'])
      return /IN\s+A/.test(out) ? out : undefined
    }, 30_000, 200)
    assert.match(ans, /web\.weave\.local\.\s+30\s+IN\s+A/, ans)
    assert.match(await dig(h2, 'client2', ['+noall', '+answer', 'web.weave.local']), /web\.weave\.local\.\s+1\s+IN\s+A/, 'the default TTL is 1 s')
  })
}

test.run()
