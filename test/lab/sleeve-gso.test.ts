/**
 * Sleeve with TSO left on in the containers: the packet socket reads GSO super-frames whole
 * (PACKET_VNET_HDR), sleeve carries each as pieces of one "super" datagram and the far end
 * injects it whole for its kernel to segment. TCP must arrive intact, plain and encrypted, and
 * small frames whose checksum was left to offload must be completed on the way.
 * Two lab "hosts" joined by an underlay veth pair, a "container" namespace on each; test traffic
 * uses 198.19.x.0/24 (underlay) and 10.41.0.0/24 (overlay), only in namespaces made and deleted here.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile, execFileSync, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { systemClock, nullLogger } from '../../router/deps'
import { Sleeve, createSleeveCipher, sleeveCiphers, sleeveCryptoReady } from '../../router/overlay'
import { skipFile } from '../skip'

const run = promisify(execFile)
const isRoot = process.getuid?.() === 0
const tag = `${process.pid % 100000}`
const ns = { h1: `wgso${tag}-h1`, h2: `wgso${tag}-h2`, c1: `wgso${tag}-c1`, c2: `wgso${tag}-c2`, h3: `wgso${tag}-h3`, c3: `wgso${tag}-c3` }
const under = `198.19.${(process.pid % 250) + 2}`
const u1 = `${under}.1`
const u2 = `${under}.2`
const underB = `198.19.${(process.pid % 250) + 2 + 1}`
const c2 = '10.41.0.2'
const MTU = 1376
const nsPath = (n: string) => `/var/run/netns/${n}`
const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString()

function removeLab(): void {
  for (const n of Object.values(ns)) { try { ip('netns', 'del', n) } catch { /* not there */ } }
}

/** Line h1 — h2 — h3 (no underlay path h1 → h3), a container on each host. */
function makeLine(): void {
  removeLab()
  for (const n of Object.values(ns)) { ip('netns', 'add', n); ip('-n', n, 'link', 'set', 'lo', 'up') }
  ip('-n', ns.h1, 'link', 'add', 'ua', 'type', 'veth', 'peer', 'name', 'ua', 'netns', ns.h2)
  ip('-n', ns.h3, 'link', 'add', 'ub', 'type', 'veth', 'peer', 'name', 'ub', 'netns', ns.h2)
  for (const [h, dev, addr] of [[ns.h1, 'ua', `${under}.1`], [ns.h2, 'ua', `${under}.2`], [ns.h2, 'ub', `${underB}.2`], [ns.h3, 'ub', `${underB}.3`]]) {
    ip('-n', h, 'addr', 'add', `${addr}/24`, 'dev', dev)
    ip('-n', h, 'link', 'set', dev, 'up')
  }
  for (const [host, ctr, addr] of [[ns.h1, ns.c1, '10.41.0.1'], [ns.h2, ns.c2, '10.41.0.2'], [ns.h3, ns.c3, '10.41.0.3']]) {
    ip('-n', host, 'link', 'add', 'pcap', 'mtu', String(MTU), 'type', 'veth', 'peer', 'name', 'ethwe', 'netns', ctr)
    ip('-n', host, 'link', 'set', 'pcap', 'up')
    ip('-n', ctr, 'link', 'set', 'ethwe', 'mtu', String(MTU))
    ip('-n', ctr, 'addr', 'add', `${addr}/24`, 'dev', 'ethwe')
    ip('-n', ctr, 'link', 'set', 'ethwe', 'up')
    execFileSync('ip', ['netns', 'exec', ctr, 'ethtool', '-K', 'ethwe', 'tx', 'on', 'tso', 'on'], { stdio: 'ignore' })
  }
}

function makeLab(): void {
  removeLab()
  for (const n of [ns.h1, ns.h2, ns.c1, ns.c2]) { ip('netns', 'add', n); ip('-n', n, 'link', 'set', 'lo', 'up') }
  ip('-n', ns.h1, 'link', 'add', 'under', 'type', 'veth', 'peer', 'name', 'under', 'netns', ns.h2)
  ip('-n', ns.h1, 'addr', 'add', `${u1}/24`, 'dev', 'under')
  ip('-n', ns.h2, 'addr', 'add', `${u2}/24`, 'dev', 'under')
  for (const [host, ctr, addr] of [[ns.h1, ns.c1, '10.41.0.1'], [ns.h2, ns.c2, c2]]) {
    ip('-n', host, 'link', 'set', 'under', 'up')
    ip('-n', host, 'link', 'add', 'pcap', 'mtu', String(MTU), 'type', 'veth', 'peer', 'name', 'ethwe', 'netns', ctr)
    ip('-n', host, 'link', 'set', 'pcap', 'up')
    ip('-n', ctr, 'link', 'set', 'ethwe', 'mtu', String(MTU))
    ip('-n', ctr, 'addr', 'add', `${addr}/24`, 'dev', 'ethwe')
    ip('-n', ctr, 'link', 'set', 'ethwe', 'up')
    // offloads stay ON (the veth default): TSO super-frames and partial checksums reach sleeve
    execFileSync('ip', ['netns', 'exec', ctr, 'ethtool', '-K', 'ethwe', 'tx', 'on', 'tso', 'on'], { stdio: 'ignore' })
  }
}

process.on('exit', removeLab)
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => { removeLab(); process.exit(130) })

function sleeves(secret?: Uint8Array): [Sleeve, Sleeve] {
  const deps = (self: number, other: number) => ({
    clock: systemClock(), logger: nullLogger,
    routes: { unicastNextHop: (d: number) => (d === other ? other : undefined), broadcastNextHops: (s: number) => (s === self ? [other] : []) },
  })
  const s1 = new Sleeve({ self: 1, bridgeIf: 'pcap', bindAddr: u1, port: 6783, netns: nsPath(ns.h1) }, deps(1, 2))
  const s2 = new Sleeve({ self: 2, bridgeIf: 'pcap', bindAddr: u2, port: 6783, netns: nsPath(ns.h2) }, deps(2, 1))
  s1.setPeer(2, { addr: u2, port: 6783, cipher: secret && createSleeveCipher(secret, true, { cipher: sleeveCiphers()[0] }) })
  s2.setPeer(1, { addr: u1, port: 6783, cipher: secret && createSleeveCipher(secret, false, { cipher: sleeveCiphers()[0] }) })
  s1.start()
  s2.start()
  return [s1, s2]
}

/** `bytes` random bytes over TCP from c1 to c2 (a node process each end); SHA-256 of both sides. */
async function tcpTransfer(bytes: number, from = ns.c1, to = ns.c2, toAddr = c2): Promise<{ sent: string; got: string; gotBytes: number }> {
  const server = spawn('ip', ['netns', 'exec', to, process.execPath, '-e', `
    const h = require('crypto').createHash('sha256'); let n = 0
    require('net').createServer((s) => {
      s.on('data', (d) => { h.update(d); n += d.length })
      s.on('end', () => { console.log(n + ' ' + h.digest('hex')); process.exit(0) })
    }).listen(5001, '${toAddr}', () => console.log('ready'))`], { stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    const lines: string[] = []
    let buf = ''
    let closed = false
    let wake: () => void = () => {}
    server.stdout.on('data', (d: Buffer) => { buf += d.toString(); const parts = buf.split('\n'); buf = parts.pop()!; lines.push(...parts); wake() })
    server.on('close', () => { closed = true; wake() })
    const line = async (k: number): Promise<string> => {
      for (;;) {
        if (lines.length > k) return lines[k]
        if (closed) throw new Error(`TCP server exited early (output: ${lines.join(' | ')})`)
        await new Promise<void>((r) => { wake = r })
      }
    }
    await line(0)
    const client = await run('ip', ['netns', 'exec', from, process.execPath, '-e', `
      const c = require('crypto'); const buf = c.randomBytes(${bytes})
      console.log(c.createHash('sha256').update(buf).digest('hex'))
      const s = require('net').connect(5001, '${toAddr}', () => s.end(buf))`], { timeout: 60_000 })
    const [gotBytes, got] = (await line(1)).split(' ')
    return { sent: client.stdout.trim(), got, gotBytes: Number(gotBytes) }
  } finally {
    server.kill()
  }
}

if (!isRoot) {
  skipFile('sleeve GSO lab tests', 'needs root (network namespaces, packet sockets)')
} else {
  test('with TSO on in the containers, TCP arrives intact through sleeve as super-frames, plain and encrypted', async () => {
    await sleeveCryptoReady()
    for (const secret of [undefined, new Uint8Array(32).fill(9)]) {
      makeLab()
      const [s1, s2] = sleeves(secret)
      try {
        const kind = secret ? 'encrypted' : 'plain'
        const p = await run('ip', ['netns', 'exec', ns.c1, 'busybox', 'ping', '-c', '2', '-i', '0.2', '-w', '10', c2])
        assert.match(p.stdout, /2 packets received/)
        const t = await tcpTransfer(32 << 20)
        assert.is(t.gotBytes, 32 << 20, `${kind}: all bytes arrived`)
        assert.is(t.got, t.sent, `${kind}: arrived intact`)
        assert.ok(s1.stats.superFramesSent > 0, `${kind}: super-frames were sent as pieces (${JSON.stringify(s1.stats)})`)
        assert.is(s2.stats.superFramesReceived, s1.stats.superFramesSent - (s1.stats.drops['send-buffer-full'] ?? 0) - (s2.stats.drops['pieces-incomplete'] ?? 0),
          `${kind}: every super-frame sent was put back together`)
        assert.is(s2.stats.drops['bad-datagram:bad-mac'], undefined)
        assert.ok(s2.stats.datagramsReceived > s2.stats.superFramesReceived * 10, `${kind}: each super-frame took many datagrams`)
        // plain: most are injected straight from their pieces; sealed ones are put together (and opened) first
        if (secret) assert.is(s2.stats.superFramesGathered, 0, 'sealed super-frames are never injected from pieces')
        else assert.ok(s2.stats.superFramesGathered > s2.stats.superFramesReceived / 2, `plain: injected from pieces (${JSON.stringify(s2.stats)})`)
      } finally {
        s1.stop(); s2.stop(); removeLab()
      }
    }
  })

  test('super-frames are relayed: h1 and h3 have no underlay path, TCP between their containers goes through h2 intact', async () => {
    await sleeveCryptoReady()
    makeLine()
    const line = (self: number) => ({
      clock: systemClock(), logger: nullLogger,
      routes: {
        unicastNextHop: (d: number) => (d === self || d < 1 || d > 3 ? undefined : d > self ? self + 1 : self - 1),
        broadcastNextHops: (src: number) => [self - 1, self + 1].filter((x) => x >= 1 && x <= 3 && Math.abs(x - src) > Math.abs(self - src)),
      },
    })
    const hosts = [ns.h1, ns.h2, ns.h3]
    const s = [1, 2, 3].map((i) => new Sleeve({ self: i, bridgeIf: 'pcap', bindAddr: '0.0.0.0', port: 6783, netns: nsPath(hosts[i - 1]) }, line(i)))
    const key = new Uint8Array(32).fill(5)
    // encrypted hop by hop: the relay opens, and seals again for the next hop (here with the
    // other cipher: AES-256-GCM where available on the first hop, ChaCha20-Poly1305 on the second)
    s[0].setPeer(2, { addr: `${under}.2`, port: 6783, cipher: createSleeveCipher(key, true, { cipher: sleeveCiphers()[0] }) })
    s[1].setPeer(1, { addr: `${under}.1`, port: 6783, cipher: createSleeveCipher(key, false, { cipher: sleeveCiphers()[0] }) })
    s[1].setPeer(3, { addr: `${underB}.3`, port: 6783, cipher: createSleeveCipher(key, true, { cipher: 'chacha20-poly1305' }) })
    s[2].setPeer(2, { addr: `${underB}.2`, port: 6783, cipher: createSleeveCipher(key, false, { cipher: 'chacha20-poly1305' }) })
    try {
      for (const x of s) x.start()
      const p = await run('ip', ['netns', 'exec', ns.c1, 'busybox', 'ping', '-c', '2', '-i', '0.2', '-w', '10', '10.41.0.3'])
      assert.match(p.stdout, /2 packets received/)
      const t = await tcpTransfer(16 << 20, ns.c1, ns.c3, '10.41.0.3')
      assert.is(t.gotBytes, 16 << 20)
      assert.is(t.got, t.sent, 'arrived intact')
      assert.ok(s[1].stats.superFramesReceived > 0 && s[1].stats.superFramesSent > 0, `h2 relayed super-frames (${JSON.stringify(s[1].stats)})`)
      assert.ok(s[2].stats.superFramesReceived > 0, 'h3 received them')
    } finally {
      for (const x of s) x.stop()
      removeLab()
    }
  })
}

test.run()
