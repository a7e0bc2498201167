/**
 * Faults that must lose nothing, with real daemons on three lab hosts (sleeve; plain namespaces
 * as containers on h1 and h3). Underlay 192.168.250.0/24, overlay 10.32.0.0/24; everything is
 * inside lab namespaces and removed after.
 *
 *  - UDP blocked between h1 and h3 (6783/6784, both ways; TCP open, so their mesh connection
 *    lives): the connection goes pending with the reason in `weave status connections`, and
 *    h1's and h3's namespaces reach each other through h2; healed, the path is direct again.
 *  - An underlay that silently drops UDP datagrams over 700 bytes between h1 and h3: probing
 *    finds the path MTU (status shows it) and a 10,000-byte ping gets through.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { withLab, labUnavailableReason, waitFor, type Lab, type LabHost } from './index'
import { ExtraNamespaces, pingFromNamespace, weaveAttach } from './namespaces'
import { run, startProcess } from './exec'
import { skipFile } from '../skip'

const reason = labUnavailableReason({})
const RANGE = ['--ipalloc-range', '10.32.0.0/12', '--ipalloc-default-subnet', '10.32.0.0/24', '--ipalloc-init', 'consensus=3']
const extraNs = new ExtraNamespaces()

async function launchAll(lab: Lab): Promise<void> {
  const [h1, h2, h3] = lab.hosts
  for (const [h, peers] of [[h1, []], [h2, [h1.underlayIp]], [h3, [h1.underlayIp]]] as Array<[LabHost, string[]]>) {
    const r = await h.launchWeave([...RANGE, ...peers], {})
    if (r.code !== 0) throw new Error(`${h.name}: launch failed: ${r.stderr}\n${h.weaverLog()}`)
  }
  await waitFor('sleeve established everywhere', async () => {
    for (const h of lab.hosts) {
      const s = await h.api('/status/overlay')
      if ((s.text.match(/ established sleeve/g) ?? []).length < 2) return false
    }
    return true
  }, 60_000, 250).catch(async (err) => { throw new Error(`${(err as Error).message}\n${await views(lab)}`) })
}

async function views(lab: Lab): Promise<string> {
  const v = await Promise.all(lab.hosts.map(async (h) => `${h.name}: ${(await h.api('/status/connections').catch(() => ({ text: '?' }))).text}\n${h.weaverLog(20)}`))
  return v.join('\n')
}

/** h1's `weave status connections` line for the connection to `peer`. */
async function connectionLine(h: LabHost, peer: string): Promise<string> {
  const text = (await h.weave(['status', 'connections'])).stdout
  return text.split('\n').find((l) => l.includes(peer)) ?? ''
}

async function sleeveStats(lab: Lab): Promise<string> {
  const v = await Promise.all(lab.hosts.map(async (h) => `${h.name}: ${JSON.stringify(((await h.api('/report')).body as { Overlay: { Sleeve: unknown } }).Overlay.Sleeve)}`))
  return v.join('\n')
}

async function peerName(h: LabHost): Promise<string> {
  return ((await h.api('/report')).body as { Router: { Name: string } }).Router.Name
}

async function relayedBy(h: LabHost): Promise<number> {
  return ((await h.api('/report')).body as { Overlay: { Sleeve: { relayed: number } } }).Overlay.Sleeve.relayed
}

/** busybox ping of `bytes` payload from namespace ns; true on an answer within `tries` pings. */
async function bigPing(ns: string, ip: string, bytes: number, tries: number): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    const r = await run(['ip', 'netns', 'exec', ns, 'busybox', 'ping', '-c', '1', '-W', '2', '-s', String(bytes), ip], { allowFail: true })
    if (r.code === 0) return true
  }
  return false
}

if (reason) skipFile('lossless faults lab test', reason)
else {
  test('UDP blocked between two hosts with TCP open: pending with the reason, data through the third; then a 700-byte path MTU', async () => {
    await withLab({ hosts: 3 }, async (lab) => {
      const [h1, h2, h3] = lab.hosts
      try {
        await launchAll(lab)
        const n1 = await extraNs.add(`${h1.ns}-c1`)
        const n3 = await extraNs.add(`${h3.ns}-c3`)
        const ip1 = await weaveAttach(h1, n1)
        const ip3 = await weaveAttach(h3, n3)
        assert.ok(await pingFromNamespace(n1, ip3, { tries: 10 }), 'direct before the fault')
        const [name2, name3] = [await peerName(h2), await peerName(h3)]
        assert.not.match(await connectionLine(h1, name3), /pending/)

        // ---- UDP (sleeve 6783, vxlan 6784) lost between h1 and h3; TCP 6783 still open ----
        await lab.udpFault(h1, h3, { ports: [6783, 6784] })
        const before = await relayedBy(h2)
        await waitFor('h1 marks the connection to h3 pending', async () => /pending .*data path down.*via/.test(await connectionLine(h1, name3)), 30_000, 250)
          .catch(async (err) => { throw new Error(`${(err as Error).message}\n${await views(lab)}`) })
        const line = await connectionLine(h1, name3)
        console.log(`  h1: ${line}`)
        assert.match(line, /UDP heartbeat/, 'says why')
        assert.ok(line.includes(`via ${name2}`), `names the relay h2 (${name2}): ${line}`)
        assert.ok((await h1.exec(['busybox', 'ping', '-c', '1', '-W', '1', h3.underlayIp], { allowFail: true })).code === 0, 'the underlay still carries other traffic')
        // the TCP connection stays up: status still lists it (pending, not gone)
        // (each end judges by its own heartbeats' timeout, so h3 may see it a moment after h1)
        const name1 = await peerName(h1)
        await waitFor('h3 marks it pending too', async () => /pending/.test(await connectionLine(h3, name1)), 30_000, 250).catch(() => undefined)
        assert.match(await connectionLine(h3, name1), /pending/, 'h3 too')
        const t0 = Date.now()
        const relayed = await waitFor('h1 ⇄ h3 through h2', async () => await pingFromNamespace(n1, ip3) && await pingFromNamespace(n3, ip1), 30_000, 200).then(() => true, () => false)
        assert.ok(relayed, `namespaces reach each other through h2\n${await views(lab)}`)
        console.log(`  relayed ping works ${((Date.now() - t0) / 1000).toFixed(1)} s after the connection went pending`)
        assert.ok(await relayedBy(h2) > before, 'h2 relayed the frames')

        // ---- healed: established and direct again ----
        await lab.clearUdp(h1, h3)
        await waitFor('h1 ⇄ h3 established again', async () => !/pending/.test(await connectionLine(h1, name3)) && !/pending/.test(await connectionLine(h3, await peerName(h1))), 30_000, 250)
        assert.ok(await pingFromNamespace(n1, ip3, { tries: 5 }), 'direct after healing')
        // Each end's status shows its own verdict at once; routes change when the other end's
        // verdict has arrived by gossip too (a topology batch and a route delay, ~0.2 s): poll.
        const dataVia = async () => ((await h1.api('/report')).body as { Router: { Connections: Array<{ Peer?: string; DataVia?: string }> } })
          .Router.Connections.find((c) => c.Peer === name3)?.DataVia
        await waitFor('h1 routes h3 direct again', async () => (await dataVia()) === undefined, 10_000, 100).catch(() => undefined)
        assert.is(await dataVia(), undefined, 'data goes direct again')

        // ---- a path that silently drops UDP datagrams over 700 bytes ----
        await lab.udpFault(h1, h3, { maxIpBytes: 700 })
        // a path MTU is searched when a connection's path is established (then every 5 min, as
        // Weave): restart h1 so its connections, and their searches, start over this path
        await h1.weave(['stop'])
        const r = await h1.launchWeave([...RANGE], {})
        assert.is(r.code, 0, r.stderr)
        const ip1b = await weaveAttach(h1, n1)
        assert.is(ip1b, ip1, 'same address after restart')
        await waitFor('h1 ⇄ h3 sleeve established with a probed MTU', async () => {
          const s = (await h1.api('/status/overlay')).text.split('\n').find((l) => l.includes(name3)) ?? ''
          const m = / established sleeve mtu=(\d+)/.exec(s)
          // 700 bytes of IP packet less IP/UDP (28), sleeve header (8), frame length (2), Ethernet (14)
          return m !== null && Number(m[1]) === 700 - 52
        }, 60_000, 250).catch(async (err) => { throw new Error(`${(err as Error).message}\n${(await h1.api('/status/overlay')).text}\n${await views(lab)}`) })
        console.log(`  h1: ${(await h1.api('/status/overlay')).text.split('\n').find((l) => l.includes(name3))}`)
        assert.ok(await pingFromNamespace(n1, ip3, { tries: 10 }), `small ping h1 → h3 after the restart\n${await sleeveStats(lab)}`)
        assert.ok(await bigPing(n1, ip3, 10_000, 5), `10,000-byte ping h1 → h3 over a 700-byte path\n${await sleeveStats(lab)}`)
        assert.ok(await bigPing(n3, ip1, 10_000, 5), '10,000-byte ping h3 → h1')
        assert.ok(await bigPing(n1, ip3, 10_000, 1), 'and again at the first try')
        // TCP from h3's namespace to h1's with full-size segments (DF: answered with ICMP frag-needed)
        const srv = `require('net').createServer(s=>{let n=0;s.on('data',d=>n+=d.length);s.on('end',()=>{s.end(String(n))})}).listen(5556,'${ip1}',()=>console.log('ready'))`
        const server = startProcess(['ip', 'netns', 'exec', n1, 'node', '-e', srv], { stdio: ['ignore', 'pipe', 'pipe'] })
        let ready = ''
        server.stdout!.on('data', (d) => { ready += d })
        await waitFor('tcp server', () => ready.includes('ready'), 10_000)
        const cli = `const s=require('net').connect(5556,'${ip1}',()=>{s.end(Buffer.alloc(4<<20,7))});let r='';s.on('data',d=>r+=d);s.on('end',()=>{console.log(r);process.exit(0)});setTimeout(()=>{console.log('timeout');process.exit(1)},60000)`
        const c = await run(['ip', 'netns', 'exec', n3, 'node', '-e', cli], { allowFail: true, timeoutMs: 70_000 })
        server.kill('SIGKILL')
        assert.is(c.stdout.trim(), String(4 << 20), `4 MiB over TCP across the 700-byte path: ${c.stdout}${c.stderr}`)
      } finally {
        await lab.clearUdp(h1, h3).catch(() => {})
        for (const h of lab.hosts) await h.weave(['stop'], { allowFail: true })
      }
    }).finally(() => extraNs.removeAll())
  })
}

test.run()
