/**
 * The kernel vxlan path with real daemons, no Open vSwitch (issue 21): h1–h3 may take it, h4
 * runs sleeve only (WEAVE_NO_FASTDP: a host without the kernel path in the same mesh). A plain
 * namespace per host attached with the API. Everything runs in lab namespaces and is removed after.
 *
 *  - h1–h3: every connection among them on the kernel path (`fastdp vxlan` in `weave status
 *    connections`), to h4 sleeve with the reason; `weave status` names vxlan-6784 and why it was
 *    chosen; vxlan-6784 exists with nolearning, on the weave bridge, isolated from the sleeve port
 *  - all pairs of namespaces ping; 1 GiB over TCP h1 → h2 arrives intact, and went through
 *    vxlan-6784 (its tx counter grew by at least that much) in TSO segments: vxlan-6784 has TSO
 *    and GSO on (ethtool -k), and a capture on it sees TCP packets longer than the weave MTU
 *  - broadcast: ARP requests for an address nobody has, sent N times from h1's namespace, reach
 *    every other namespace (h2, h3 by the kernel path, h4 by sleeve) exactly N times (nft counters
 *    on their ethwe): no duplicates, no loops
 *  - UDP 6784 h1 → h2 dropped (nft on h1's eth0 egress): h1 ⇄ h2 fall to sleeve with the reason
 *    within 1 s, pings continue; with the rule gone they return to the kernel path
 *  - a path MTU of 1400 between h1 and h3 (below the weave MTU plus vxlan's 50 bytes): they fall to
 *    sleeve saying so (full-size heartbeats fail, small ones pass), pings continue; and back
 *  - `weave reset` removes vxlan-6784
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { withLab, labUnavailableReason, offloads, tcpSizesOn, waitFor, delay, type Lab, type LabHost } from './index'
import { ExtraNamespaces, pingFromNamespace } from './namespaces'
import { skipFile } from '../skip'

const run = promisify(execFile)
/** The weave MTU the daemons run with (their default). */
const MTU = 1376
const RANGE = ['--ipalloc-range', '10.32.0.0/12', '--ipalloc-default-subnet', '10.32.0.0/24', '--ipalloc-init', 'consensus=4']
const extraNs = new ExtraNamespaces()
process.on('exit', () => extraNs.removeAllSync())

interface Endpoint { host: LabHost; ns: string; ip: string }

const count = (text: string, re: RegExp) => (text.match(re) ?? []).length
const ping = (from: Endpoint, to: Endpoint, tries = 1) => pingFromNamespace(from.ns, to.ip, { tries, waitS: 1 })

async function views(lab: Lab): Promise<string> {
  const out = await Promise.all(lab.hosts.map(async (h) =>
    `--- ${h.name}\n${(await h.api('/status/overlay').catch(() => ({ text: '?' }))).text}\n${h.weaverLog(20)}`))
  return out.join('\n')
}

async function lineTo(from: LabHost, to: LabHost): Promise<string> {
  return (await from.api('/status/overlay')).text.split('\n').find((l) => l.includes(`${to.underlayIp}:`)) ?? ''
}

async function vxlanTxBytes(h: LabHost): Promise<number> {
  const j = JSON.parse((await h.exec(['ip', '-s', '-j', 'link', 'show', 'dev', 'vxlan-6784'])).stdout) as Array<{ stats64?: { tx?: { bytes?: number } } }>
  return j[0]?.stats64?.tx?.bytes ?? 0
}

/** sha256 of 1 MiB blocks sent `from` → `to` over TCP (node one-liners in the namespaces). */
async function transfer(from: Endpoint, to: Endpoint, mib: number): Promise<{ sent: string; received: string; seconds: number }> {
  const server = `const c=require('crypto'),h=c.createHash('sha256');require('net').createServer(k=>{k.on('data',d=>h.update(d));k.on('end',()=>{console.log(h.digest('hex'));process.exit(0)})}).listen(5555,'${to.ip}',()=>console.log('ready'))`
  const client = `const c=require('crypto'),h=c.createHash('sha256');const b=c.randomBytes(1<<20);let i=0;const k=require('net').connect(5555,'${to.ip}',()=>{const w=()=>{while(i<${mib}){h.update(b);i++;if(!k.write(b))return k.once('drain',w)}k.end();console.log(h.digest('hex'))};w()})`
  const srv = execFile('ip', ['netns', 'exec', to.ns, 'node', '-e', server], { timeout: 180_000 })
  let out = ''
  srv.stdout!.on('data', (d) => { out += d })
  const done = new Promise<void>((res) => srv.on('exit', () => res()))
  await waitFor('transfer server', () => out.includes('ready'), 10_000)
  const t0 = Date.now()
  const cli = await run('ip', ['netns', 'exec', from.ns, 'node', '-e', client], { timeout: 180_000 })
  await done
  return { sent: cli.stdout.trim(), received: out.split('\n')[1]?.trim() ?? '', seconds: (Date.now() - t0) / 1000 }
}

const ARP_TARGET = '10.32.0.250'
const COUNT_TABLE = 'kvxtest'

/** An nft counter of ARP requests for ARP_TARGET arriving on the namespace's ethwe. */
async function countArp(ns: string): Promise<void> {
  const rules = `table netdev ${COUNT_TABLE} {\n chain in {\n  type filter hook ingress device "ethwe" priority 0;\n` +
    `  arp operation request arp daddr ip ${ARP_TARGET} counter\n }\n}\n`
  await new Promise<void>((res, rej) => {
    const c = execFile('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], (err) => { if (err) rej(new Error(err.message)); else res() })
    c.stdin!.end(rules)
  })
}

async function arpCount(ns: string): Promise<number> {
  const r = await run('ip', ['netns', 'exec', ns, 'nft', 'list', 'table', 'netdev', COUNT_TABLE])
  return Number(/counter packets (\d+)/.exec(r.stdout)?.[1] ?? NaN)
}

const BLOCK_TABLE = 'kvxblock'

async function blockTunnel(from: LabHost, to: LabHost): Promise<void> {
  await from.exec(['nft', '-f', '-'], {
    input: `table netdev ${BLOCK_TABLE} {\n chain out {\n  type filter hook egress device "eth0" priority 0;\n` +
      `  ip daddr ${to.underlayIp} udp dport 6784 drop\n }\n}\n`,
  })
}

const unblockTunnel = (from: LabHost) => from.exec(['nft', 'delete', 'table', 'netdev', BLOCK_TABLE], { allowFail: true })

const why = labUnavailableReason()
if (why) {
  skipFile('kernel vxlan path', why)
} else {
  test('kernel vxlan path: three hosts on it, a fourth on sleeve; pings, 1 GiB, broadcast once, fallback ≤ 1 s and back, reset', async () => {
    await withLab({ hosts: 4, kernelVxlan: ['h1', 'h2', 'h3'] }, async (lab) => {
      const [h1, h2, h3, h4] = lab.hosts
      try {
        for (const h of lab.hosts) {
          const r = await h.launchWeave([...RANGE, ...lab.hosts.filter((o) => o.index < h.index).map((o) => o.underlayIp)])
          if (r.code !== 0) throw new Error(`${h.name}: launch failed: ${r.stderr}\n${h.weaverLog()}`)
        }
        await waitFor('h1–h3 on the kernel path to each other, sleeve to h4', async () => {
          for (const h of [h1, h2, h3]) {
            const s = (await h.api('/status/overlay')).text
            if (count(s, / established fastdp /g) < 2 || count(s, / established sleeve .*not fastdp/g) < 1) return false
          }
          return count((await h4.api('/status/overlay')).text, / established sleeve /g) >= 3
        }, 60_000, 250).catch(async (err) => { throw new Error(`${(err as Error).message}\n${await views(lab)}`) })

        const c1 = (await h1.weave(['status', 'connections'])).stdout
        console.log(`  h1 weave status connections:\n${c1.replace(/^/gm, '    ')}`)
        assert.is(count(c1, / established unencrypted fastdp vxlan /g), 2, c1)
        assert.match(c1, new RegExp(`${h4.underlayIp.replace(/\./g, '\\.')}:\\d+ +established unencrypted sleeve mtu=\\d+ \\(not fastdp: on the peer: fastdp turned off`), c1)
        const st1 = (await h1.weave(['status'])).stdout
        assert.match(st1, /Fastdp: vxlan-6784 \(kernel vxlan: no OVS datapath \(no openvswitch kernel module, and no OVSDB server/, st1)
        const link = (await h1.exec(['ip', '-d', 'link', 'show', 'dev', 'vxlan-6784'])).stdout
        assert.match(link, /master weave/, link)
        assert.match(link, /vxlan id \d+ .*dstport 6784 .*nolearning/s, link)
        const ports = (await h1.exec(['bridge', '-d', 'link', 'show'])).stdout
        for (const dev of ['vxlan-6784', 'vethwe-bridge']) {
          const block = ports.split(/\n(?=\d+:)/).find((b) => b.includes(` ${dev}`) || b.includes(`${dev}@`)) ?? ''
          assert.match(block, /isolated on/, `${dev} isolated:\n${ports}`)
        }

        const eps: Endpoint[] = []
        for (const h of lab.hosts) {
          const ns = await extraNs.add(`${h.ns}-c`)
          const r = await h.api('/attach', { body: { target: `/var/run/netns/${ns}`, addresses: [] }, timeoutMs: 60_000 })
          const addrs = (r.body as { addresses?: string[] }).addresses
          if (r.status !== 200 || !addrs?.length) throw new Error(`${h.name}: attach ${ns}: ${r.status} ${r.text}\n${h.weaverLog()}`)
          eps.push({ host: h, ns, ip: addrs[0].replace(/\/\d+$/, '') })
        }
        const [e1, e2] = eps
        for (const a of eps) for (const b of eps) {
          if (a !== b) assert.ok(await ping(a, b, 10), `${a.host.name} → ${b.host.name} (${b.ip})\n${await views(lab)}`)
        }

        // h2's container is announced in h2's heartbeats within about a second of its first frame
        const mac2 = /link\/ether ([0-9a-f:]{17})/.exec((await run('ip', ['netns', 'exec', e2.ns, 'ip', '-o', 'link', 'show', 'ethwe'])).stdout)?.[1]
        const entry = new RegExp(`^${mac2} (dev vxlan-6784 )?dst ${h2.underlayIp.replace(/\./g, '\\.')} self permanent`, 'm')
        const fdbNow = async () => (await h1.exec(['bridge', 'fdb', 'show', 'dev', 'vxlan-6784'])).stdout
        await waitFor("h1's fdb sends h2's container MAC to h2", async () => entry.test(await fdbNow()), 10_000, 100)
          .catch(async (err) => { throw new Error(`${(err as Error).message}\n${await fdbNow()}\n${await views(lab)}`) })
        const fdb = await fdbNow()
        console.log(`  h1 fdb of vxlan-6784:\n${fdb.trimEnd().replace(/^/gm, '    ')}`)
        const flood = fdb.split('\n').filter((l) => l.startsWith('00:00:00:00:00:00 ')).map((l) => /dst (\S+)/.exec(l)?.[1]).sort()
        assert.equal(flood, [h2.underlayIp, h3.underlayIp], 'one flood entry per peer on the kernel path, none for h4')
        assert.match(fdb, new RegExp(`^${mac2} (dev vxlan-6784 )?master weave static`, 'm'), "and the bridge sends it to vxlan-6784")
        // 1 GiB through the kernel path, intact, in TSO segments: vxlan-6784 offers the offloads
        // and a capture on it sees TCP packets longer than the weave MTU (cut after encapsulation)
        const feat = await offloads(h1, 'vxlan-6784')
        assert.is(feat['tcp-segmentation-offload'], 'on', `vxlan-6784 takes TSO segments: ${JSON.stringify(feat)}`)
        assert.is(feat['generic-segmentation-offload'], 'on', `and GSO: ${JSON.stringify(feat)}`)
        const before = await vxlanTxBytes(h1)
        const cap = await tcpSizesOn(h1, 'vxlan-6784', 'tcp port 5555', () => transfer(e1, e2, 1024))
        const t = cap.result
        const sent = await vxlanTxBytes(h1) - before
        const big = cap.lengths.filter((n) => n > MTU).length
        console.log(`  1 GiB h1 → h2 over the kernel vxlan path in ${t.seconds.toFixed(1)} s; vxlan-6784 tx ${(sent / 2 ** 20).toFixed(0)} MiB; ` +
          `of ${cap.lengths.length} TCP packets captured on it ${big} carried more than the MTU (largest ${Math.max(0, ...cap.lengths)} bytes)`)
        assert.is(t.received, t.sent, 'transfer arrived intact')
        assert.ok(sent >= 2 ** 30, `the transfer left through vxlan-6784 (tx grew ${sent} bytes)`)
        assert.ok(big > 0, `TSO segments larger than the MTU crossed vxlan-6784 whole:\n${cap.text.slice(0, 2000)}`)

        // broadcast reaches every other host exactly once per frame sent
        for (const e of eps.slice(1)) await countArp(e.ns)
        const N = 5
        await run('ip', ['netns', 'exec', e1.ns, 'busybox', 'arping', '-c', String(N), '-w', String(N + 2), '-I', 'ethwe', ARP_TARGET]).catch(() => undefined) // nobody answers
        await delay(1000)
        const got = await Promise.all(eps.slice(1).map((e) => arpCount(e.ns)))
        console.log(`  ${N} ARP requests from h1's namespace arrived at h2, h3, h4: ${got.join(', ')}`)
        assert.equal(got, [N, N, N], 'each broadcast reached every other host once (h2, h3 by vxlan, h4 by sleeve)')

        // fallback within 1 s with the reason, and back
        try {
          await blockTunnel(h1, h2)
          const t0 = Date.now()
          await waitFor('h1 → h2 falls back to sleeve', async () => /established sleeve .*not fastdp: fastdp heartbeats do not get through/.test(await lineTo(h1, h2)), 10_000, 20)
            .catch(async (err) => { throw new Error(`${(err as Error).message}\n${await views(lab)}`) })
          const ms = Date.now() - t0
          console.log(`  fallback after ${ms} ms: ${(await lineTo(h1, h2)).trim()}`)
          assert.ok(ms <= 1_000, `h1 → h2 fell back to sleeve within 1 s (took ${ms} ms; a loaded machine may stretch the heartbeat timeout)`)
          assert.ok(await ping(e1, e2, 20), 'traffic continues over sleeve')
          assert.match(await lineTo(h1, h3), /established fastdp/, 'h1 → h3 stays on the kernel path')
        } finally {
          await unblockTunnel(h1)
        }
        await waitFor('h1 ⇄ h2 back on the kernel path', async () =>
          /established fastdp/.test(await lineTo(h1, h2)) && /established fastdp/.test(await lineTo(h2, h1)), 30_000, 100)
          .catch(async (err) => { throw new Error(`${(err as Error).message}\n${await views(lab)}`) })
        assert.ok(await ping(e1, e2, 10), 'traffic over the kernel path again')

        // path MTU: h1 ⇄ h3 carry 1400-byte packets only (a route MTU, both ways): the full-size
        // heartbeats (DF set) cannot pass, the small ones can: sleeve with that reason, then back
        const e3 = eps[2]
        const mtuRoute = (from: LabHost, to: LabHost, op: 'replace' | 'del') =>
          from.exec(['ip', 'route', op, `${to.underlayIp}/32`, 'dev', 'eth0', ...(op === 'replace' ? ['mtu', '1400'] : [])], { allowFail: op === 'del' })
        try {
          await mtuRoute(h1, h3, 'replace')
          await mtuRoute(h3, h1, 'replace')
          await waitFor('h1 → h3 falls back for the path MTU', async () => /established sleeve .*not fastdp: full-size fastdp heartbeats do not get through.*path MTU/.test(await lineTo(h1, h3)), 20_000, 100)
            .catch(async (err) => { throw new Error(`${(err as Error).message}\n${await views(lab)}`) })
          console.log(`  path MTU 1400 between h1 and h3: ${(await lineTo(h1, h3)).trim()}`)
          assert.ok(await ping(e1, e3, 20), 'h1 → h3 over sleeve with the smaller path MTU')
        } finally {
          await mtuRoute(h1, h3, 'del')
          await mtuRoute(h3, h1, 'del')
        }
        await waitFor('h1 ⇄ h3 back on the kernel path', async () =>
          /established fastdp/.test(await lineTo(h1, h3)) && /established fastdp/.test(await lineTo(h3, h1)), 30_000, 100)
          .catch(async (err) => { throw new Error(`${(err as Error).message}\n${await views(lab)}`) })

        await h1.weave(['reset'], { allowFail: true })
        const left = await h1.exec(['ip', 'link', 'show', 'dev', 'vxlan-6784'], { allowFail: true })
        assert.is.not(left.code, 0, 'weave reset removed vxlan-6784')
      } finally {
        await Promise.all(lab.hosts.map((h) => h.weave(['stop'], { allowFail: true })))
        await extraNs.removeAll()
      }
    })
  })
}

test.run()
