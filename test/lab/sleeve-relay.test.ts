/**
 * Relay through an intermediate peer: three lab hosts in a line, h1 — h2 — h3, on two separate
 * underlay links with no route between h1 and h3. Containers on h1 and h3 reach each other only
 * because h2's sleeve passes their frames on. Only namespaces made here carry the traffic
 * (198.18.0.0/15 underlay, 10.41.0.0/24 overlay); all are deleted after the test.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import { systemClock, nullLogger } from '../../router/deps'
import { Sleeve, type Routes } from '../../router/overlay'
import { skipFile } from '../skip'

const run = promisify(execFile)
const isRoot = process.getuid?.() === 0
const tag = `${process.pid % 100000}`
const host = (i: number) => `wsrl${tag}-h${i}`
const ctr = (i: number) => `wsrl${tag}-c${i}`
const all = [1, 2, 3].flatMap((i) => [host(i), ctr(i)])
const third = (process.pid % 120) * 2 + 1
const linkA = { h1: `198.18.${third}.1`, h2: `198.18.${third}.2` } // h1 — h2
const linkB = { h2: `198.18.${third + 1}.2`, h3: `198.18.${third + 1}.3` } // h2 — h3
const overlay = (i: number) => `10.41.0.${i}`
const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString()

function removeLab(): void {
  for (const n of all) { try { ip('netns', 'del', n) } catch { /* not there */ } }
}

function makeLab(): void {
  removeLab()
  for (const n of all) { ip('netns', 'add', n); ip('-n', n, 'link', 'set', 'lo', 'up') }
  ip('-n', host(1), 'link', 'add', 'ua', 'type', 'veth', 'peer', 'name', 'ua', 'netns', host(2))
  ip('-n', host(3), 'link', 'add', 'ub', 'type', 'veth', 'peer', 'name', 'ub', 'netns', host(2))
  for (const [h, dev, addr] of [[host(1), 'ua', linkA.h1], [host(2), 'ua', linkA.h2], [host(2), 'ub', linkB.h2], [host(3), 'ub', linkB.h3]]) {
    ip('-n', h, 'addr', 'add', `${addr}/24`, 'dev', dev)
    ip('-n', h, 'link', 'set', dev, 'up')
  }
  for (const i of [1, 2, 3]) {
    ip('-n', host(i), 'link', 'add', 'pcap', 'mtu', '1376', 'type', 'veth', 'peer', 'name', 'ethwe', 'netns', ctr(i))
    ip('-n', host(i), 'link', 'set', 'pcap', 'up')
    ip('-n', ctr(i), 'link', 'set', 'ethwe', 'mtu', '1376')
    ip('-n', ctr(i), 'addr', 'add', `${overlay(i)}/24`, 'dev', 'ethwe')
    ip('-n', ctr(i), 'link', 'set', 'ethwe', 'up')
    execFileSync('ip', ['netns', 'exec', ctr(i), 'ethtool', '-K', 'ethwe', 'tx', 'off'], { stdio: 'ignore' })
  }
}

process.on('exit', removeLab)
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => { removeLab(); process.exit(130) })

/** Routes on the line 1 — 2 — 3, as the mesh would compute them. */
function lineRoutes(self: number): Routes {
  return {
    unicastNextHop: (dst) => (dst === self || dst < 1 || dst > 3 ? undefined : dst > self ? self + 1 : self - 1),
    // the broadcast tree of `src` on a line: away from src
    broadcastNextHops: (src) => [self - 1, self + 1].filter((n) => n >= 1 && n <= 3 && Math.abs(n - src) > Math.abs(self - src)),
  }
}

if (!isRoot) {
  skipFile('sleeve relay lab test', 'needs root (network namespaces, packet sockets)')
} else {
  test('containers on h1 and h3, with no underlay path between them, reach each other through h2', async () => {
    makeLab()
    const mk = (i: number) => new Sleeve({ self: i, bridgeIf: 'pcap', bindAddr: '0.0.0.0', port: 6783, netns: `/var/run/netns/${host(i)}` },
      { clock: systemClock(), logger: nullLogger, routes: lineRoutes(i) })
    const s = [mk(1), mk(2), mk(3)]
    s[0].setPeer(2, { addr: linkA.h2, port: 6783 })
    s[1].setPeer(1, { addr: linkA.h1, port: 6783 })
    s[1].setPeer(3, { addr: linkB.h3, port: 6783 })
    s[2].setPeer(2, { addr: linkB.h2, port: 6783 })
    try {
      for (const x of s) x.start()
      const direct = await run('ip', ['netns', 'exec', host(1), 'busybox', 'ping', '-c', '1', '-w', '1', linkB.h3]).then(() => 'reached', () => 'unreachable')
      assert.is(direct, 'unreachable', 'no underlay path h1 → h3')
      const { stdout } = await run('ip', ['netns', 'exec', ctr(1), 'busybox', 'ping', '-c', '3', '-i', '0.2', '-w', '10', overlay(3)])
      assert.match(stdout, /3 packets received/)
      assert.ok(s[1].stats.relayed > 0, 'h2 relayed unicast frames')
      const back = await run('ip', ['netns', 'exec', ctr(3), 'busybox', 'ping', '-c', '3', '-i', '0.2', '-w', '10', overlay(1)])
      assert.match(back.stdout, /3 packets received/)
      const mid = await run('ip', ['netns', 'exec', ctr(2), 'busybox', 'ping', '-c', '1', '-w', '5', overlay(1)])
      assert.match(mid.stdout, /1 packets received/, 'and the middle host\'s container reaches both ends too')
    } finally {
      for (const x of s) x.stop()
      removeLab()
    }
  })
}

test.run()
