/**
 * weaveDNS's query path and sockets on loopback (no mesh: a solo gossip host): A answers with
 * every address shuffled per query, case-insensitive and single-label names, NOERROR-empty for
 * AAAA of a known name, NXDOMAIN, PTR, 512-byte UDP answers with TC and the full answer over TCP
 * (dig follows TC), EDNS sizes, malformed queries and a flood from one source counted and dropped,
 * and a TCP connection that starts like HTTP dropped. Forwarding is tested in the lab (dnsmasq in a
 * lab host): nothing here may reach the machine's resolver.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as dgram from 'node:dgram'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { execFile } from 'node:child_process'
import * as packet from 'dns-packet'
import { createWeaveDns, answerQuery, looksLikeHttp, SourceLimiter, deriveHostname, qualify, parseResolvConf, withoutSelf, type WeaveDns } from '../../dns'
import { soloGossipHost } from '../../ipam'
import { cryptoRng, memoryLogger, seededRng, systemClock } from '../../router/deps'
import type { PeerName } from '../../router/mesh'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dns-unit-'))
const resolv = path.join(dir, 'resolv.conf')

function dig(port: number, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('dig', ['@127.0.0.1', '-p', String(port), '+time=2', '+tries=1', ...args], { timeout: 15_000 }, (err: Error | null, stdout: string) => { if (err && !stdout) reject(err); else resolve(stdout) })
  })
}
const short = async (port: number, args: string[]) => (await dig(port, ['+short', ...args])).trim().split('\n').filter(Boolean)

let dns: WeaveDns
let port = 0
const logger = memoryLogger()

test.before(async () => {
  fs.writeFileSync(resolv, '')
  dns = createWeaveDns(
    { listen: { host: '127.0.0.1', port: 0 }, resolvConf: resolv, fallbackTimeoutMs: 300, perSourceQps: 200 },
    { clock: systemClock(), rng: cryptoRng(), logger, host: soloGossipHost('aa:00:00:00:00:01' as PeerName, 'h1') },
  )
  await dns.start()
  port = dns.listenAddress()!.port
  dns.registerContainer('c1', 'web.weave.local', ['10.32.0.1'])
  dns.registerContainer('c2', 'web.weave.local.', ['10.32.0.2'])
  dns.registerContainer('c3', 'Other.Weave.Local', ['10.32.0.3'])
})
test.after(async () => { await dns.stop(); fs.rmSync(dir, { recursive: true, force: true }) })

test('A: every address, any case, single label gets the domain; order varies per query', async () => {
  assert.equal((await short(port, ['web.weave.local'])).sort(), ['10.32.0.1', '10.32.0.2'])
  assert.equal((await short(port, ['WEB.Weave.LOCAL'])).sort(), ['10.32.0.1', '10.32.0.2'])
  assert.equal((await short(port, ['web'])).sort(), ['10.32.0.1', '10.32.0.2'])
  assert.equal(await short(port, ['other.weave.local']), ['10.32.0.3'])
  const orders = new Set<string>()
  for (let i = 0; i < 20; i++) orders.add((await short(port, ['web.weave.local'])).join(','))
  assert.is(orders.size, 2, 'both orders seen in 20 queries')
})

test('AAAA of a known name is NOERROR and empty; unknown names are NXDOMAIN; PTR gives the name', async () => {
  const aaaa = await dig(port, ['AAAA', 'web.weave.local'])
  assert.match(aaaa, /status: NOERROR/)
  assert.match(aaaa, /ANSWER: 0/)
  assert.match(await dig(port, ['nope.weave.local']), /status: NXDOMAIN/)
  assert.equal(await short(port, ['-x', '10.32.0.3']), ['other.weave.local.'])
})

test('registerContainer replaces, unregister tombstones, bad input is refused', async () => {
  dns.registerContainer('c9', 'mover.weave.local', ['10.32.0.7'])
  dns.registerContainer('c9', 'mover.weave.local', ['10.32.0.8'])
  assert.equal(dns.lookup('mover'), ['10.32.0.8'])
  assert.is(dns.unregisterContainer('c9'), 1)
  assert.equal(dns.lookup('mover'), [])
  assert.equal(dns.registerContainer('x', 'web.example.com', ['10.32.0.1']), { ok: false, reason: 'web.example.com. is not in the DNS domain weave.local.' })
  assert.not.ok(dns.registerContainer('x', 'web.weave.local', ['10.32.0.300']).ok)
  assert.not.ok(dns.registerContainer('x', `${'a'.repeat(64)}.weave.local`, ['10.32.0.1']).ok)
  // manual records survive unregister (a container stop), not destroy
  dns.addRecord({ containerId: 'c10', fqdn: 'manual.weave.local', addresses: ['10.32.0.10'] })
  dns.registerContainer('c10', 'auto.weave.local', ['10.32.0.11'])
  dns.unregisterContainer('c10')
  assert.equal(dns.lookup('manual'), ['10.32.0.10'])
  assert.equal(dns.lookup('auto'), [])
  dns.containerDestroyed('c10')
  assert.equal(dns.lookup('manual'), [])
})

test('50 addresses: UDP 512 truncates with TC, EDNS size and TCP return all', async () => {
  const addrs = Array.from({ length: 50 }, (_, i) => `10.33.0.${i + 1}`)
  dns.addRecord({ fqdn: 'many.weave.local', addresses: addrs })
  const udp = await dig(port, ['+noedns', '+ignore', 'many.weave.local'])
  assert.match(udp, /flags: qr aa tc rd ra/)
  const n = Number(/ANSWER: (\d+)/.exec(udp)![1])
  assert.ok(n > 0 && n < 50, `truncated to ${n}`)
  assert.is((await short(port, ['+noedns', 'many.weave.local'])).length, 50, 'dig follows TC to TCP')
  assert.is((await short(port, ['+tcp', 'many.weave.local'])).length, 50)
  assert.is((await short(port, ['+bufsize=4096', '+ignore', 'many.weave.local'])).length, 50)
  const small = await dig(port, ['+bufsize=1000', '+ignore', 'many.weave.local'])
  assert.match(small, /flags: qr aa tc/)
  assert.ok(/MSG SIZE\s+rcvd: (\d+)/.exec(small) && Number(/MSG SIZE\s+rcvd: (\d+)/.exec(small)![1]) <= 1000)
})

test('malformed queries and a flood from one source are dropped and counted; HTTP on TCP is dropped', async () => {
  const before = dns.counters()
  const s = dgram.createSocket('udp4')
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()))
  s.send(Buffer.from([1, 2, 3]), port, '127.0.0.1')
  s.send(Buffer.alloc(40, 0xff), port, '127.0.0.1')
  // 1000 queries at once from one source, limit 200/s (burst 100)
  const q = packet.encode({ type: 'query', id: 1, questions: [{ type: 'A', name: 'web.weave.local' }] })
  let answered = 0
  s.on('message', () => { answered++ })
  // in batches, so the socket buffer (not the limiter) drops nothing
  for (let b = 0; b < 20; b++) {
    for (let i = 0; i < 50; i++) s.send(q, port, '127.0.0.1')
    await new Promise((r) => setTimeout(r, 15))
  }
  await new Promise((r) => setTimeout(r, 300))
  s.close()
  const after = dns.counters()
  assert.ok(after.malformed >= before.malformed + 2, 'malformed counted')
  const dropped = after.rateLimited - before.rateLimited
  assert.ok(dropped > 500, `flood dropped: ${dropped}, answered ${answered}`)
  assert.ok(answered < 400, `answered ${answered}`)
  // another client is unaffected
  await new Promise((r) => setTimeout(r, 600))
  assert.equal((await short(port, ['web.weave.local'])).length, 2)
  const http = await new Promise<string>((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => c.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))
    let got = ''
    c.on('data', (d: Buffer) => { got += d.toString('latin1') })
    c.on('close', () => resolve(got))
    c.on('error', () => resolve(got))
  })
  assert.is(http, '', 'no answer to HTTP')
  assert.ok(dns.counters().httpRefused >= 1)
})

test('--dns-domain: another domain is answered, weave.local is not ours then', async () => {
  const other = createWeaveDns({ domain: 'cluster.internal', listen: { host: '127.0.0.1', port: 0 }, resolvConf: resolv, fallbackTimeoutMs: 200 },
    { clock: systemClock(), rng: cryptoRng(), logger, host: soloGossipHost('aa:00:00:00:00:02' as PeerName, 'h2') })
  await other.start()
  try {
    const p = other.listenAddress()!.port
    assert.not.ok(other.registerContainer('c1', 'web.weave.local', ['10.32.0.1']).ok)
    assert.ok(other.registerContainer('c1', 'web.cluster.internal', ['10.32.0.1']).ok)
    assert.equal(await short(p, ['web']), ['10.32.0.1'])
    assert.match(await dig(p, ['nope.cluster.internal']), /NXDOMAIN/)
    assert.match(await dig(p, ['web.weave.local']), /SERVFAIL/, 'outside the domain: forwarded, and no upstream here')
  } finally { await other.stop() }
})

test('pure pieces: looksLikeHttp, SourceLimiter, qualify, deriveHostname, answerQuery FORMERR', () => {
  assert.ok(looksLikeHttp(Buffer.from('POST /x HTTP/1.1')))
  assert.not.ok(looksLikeHttp(Buffer.from([0, 30, 1, 2, 3, 4])))
  const l = new SourceLimiter(10, 5)
  let ok = 0
  for (let i = 0; i < 100; i++) if (l.allow('a', 0)) ok++
  assert.is(ok, 5)
  assert.ok(l.allow('b', 0))
  assert.ok(l.allow('a', 1000))
  assert.is(qualify('Web', 'weave.local.'), 'web.weave.local.')
  assert.is(qualify('web.example.com.', 'weave.local.'), 'web.example.com.')
  const rules = { domain: 'weave.local.' }
  assert.equal(deriveHostname(rules, { name: '/c1' }), { kind: 'derived', hostname: 'c1', domainname: 'weave.local' })
  assert.equal(deriveHostname(rules, { name: 'c1', hostname: 'x.weave.local' }), { kind: 'given' })
  assert.equal(deriveHostname({ ...rules, fromLabel: 'dns-name' }, { name: 'c1', labels: { 'dns-name': 'db' } }), { kind: 'derived', hostname: 'db', domainname: 'weave.local' })
  assert.equal(deriveHostname({ ...rules, match: /^app-(.*)$/, replacement: '$1' }, { name: 'app-web' }), { kind: 'derived', hostname: 'web', domainname: 'weave.local' })
  assert.is(deriveHostname(rules, { name: 'x'.repeat(60) }).kind, 'skip')
  const ctx = { domain: 'weave.local.', ttlSeconds: 1, lookup: () => [], reverse: () => [], shuffle: <T>(x: readonly T[]) => [...x] }
  const bad = Buffer.alloc(20); bad.writeUInt16BE(77, 0); bad.writeUInt16BE(5, 4)
  const d = answerQuery(bad, 'udp', ctx)
  assert.is(d.kind, 'reply')
  if (d.kind === 'reply') { assert.is(d.rcode, 'FORMERR'); assert.is(packet.decode(d.bytes).id, 77) }
  assert.equal(answerQuery(Buffer.alloc(5), 'udp', ctx), { kind: 'drop', reason: 'malformed' })
  void seededRng
  const servers = parseResolvConf('# x\nnameserver 10.0.0.1\nsearch a\nnameserver 10.0.0.2 \nnameserver bogus\nnameserver 127.0.0.1\n')
  assert.equal(servers.map((x) => x.host), ['10.0.0.1', '10.0.0.2', '127.0.0.1'])
  assert.equal(withoutSelf(servers, { host: '10.0.0.2', port: 53 }, () => false).map((x) => x.host), ['10.0.0.1', '127.0.0.1'])
  assert.equal(withoutSelf(servers, { host: '0.0.0.0', port: 53 }, (h) => h === '10.0.0.1').map((x) => x.host), ['10.0.0.2'])
})

test.run()
