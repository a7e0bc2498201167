/**
 * A middle host that reaches one side by sleeve and the other by fastdp: three lab hosts, h2 and
 * h3 with Open vSwitch (fastdp between them), h1 without (sleeve to both). With the underlay
 * between h1 and h3 cut entirely, h1 ⇄ h3 goes h1 —sleeve— h2 —fastdp— h3: h2's sleeve hands
 * h1's frames (ARP floods and unicast) to its datapath, which tunnels them to h3 with h1's key;
 * h3's frames arrive at h2's datapath keyed for h1 and reach h2's sleeve tagged with their sender,
 * so h2 never learns h3's MACs as its own. Everything runs in lab namespaces and is removed after.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { withLab, labUnavailableReason, waitFor, type Lab, type LabHost } from './index'
import { ExtraNamespaces, pingFromNamespace, weaveAttach } from './namespaces'
import { skipFile } from '../skip'
import { run, startProcess } from './exec'

const reason = labUnavailableReason({ ovs: true })
const RANGE = ['--ipalloc-range', '10.32.0.0/12', '--ipalloc-default-subnet', '10.32.0.0/24', '--ipalloc-init', 'consensus=3']
const extraNs = new ExtraNamespaces()

interface SleeveReport { relayed: number; toDatapath: number; fromDatapath: number; LocalMacs: string[]; drops: Record<string, number> }

async function sleeveReport(h: LabHost): Promise<SleeveReport> {
  return ((await h.api('/report')).body as { Overlay: { Sleeve: SleeveReport } }).Overlay.Sleeve
}

async function views(lab: Lab): Promise<string> {
  const out = await Promise.all(lab.hosts.map(async (h) =>
    `--- ${h.name}\n${(await h.api('/status/connections').catch(() => ({ text: '?' }))).text}\n${JSON.stringify(await sleeveReport(h).catch(() => '?'))}\n${h.weaverLog(20)}`))
  return out.join('\n')
}

const count = (text: string, re: RegExp) => (text.match(re) ?? []).length

if (reason) skipFile('mixed sleeve/fastdp relay', reason)
else {
  test('h1 —sleeve— h2 —fastdp— h3 with h1 ⇄ h3 cut: pings both ways through h2; h2 learns no relayed MAC as its own', async () => {
    await withLab({ hosts: 3, ovs: ['h2', 'h3'] }, async (lab) => {
      const [h1, h2, h3] = lab.hosts
      try {
        // h1's kernel hands its veth TCP segments with partial checksums, which OVS on h2/h3
        // passes on unfinished (see fastdp-relay, fastdp-e2e): finish them in software as a NIC would
        await h1.exec(['ethtool', '-K', 'eth0', 'tx', 'off'])
        for (const h of lab.hosts) {
          const peers = lab.hosts.filter((o) => o.index < h.index).map((o) => o.underlayIp)
          const env: Record<string, string> = h === h1 ? { WEAVE_OVSDB: `unix:${h.weaveRunDir}/no-ovsdb.sock` } : {}
          const r = await h.launchWeave([...RANGE, ...peers], env)
          if (r.code !== 0) throw new Error(`${h.name}: launch failed: ${r.stderr}\n${h.weaverLog()}`)
        }
        await waitFor('h2 ⇄ h3 fastdp, h1 sleeve to both', async () => {
          const o1 = (await h1.api('/status/overlay')).text, o2 = (await h2.api('/status/overlay')).text
          return count(o1, / established sleeve/g) === 2 && count(o2, / established fastdp /g) === 1 && count(o2, / established sleeve/g) === 1
        }, 60_000, 250).catch(async (err) => { throw new Error(`${(err as Error).message}\n${await views(lab)}`) })

        const n1 = await extraNs.add(`${h1.ns}-c1`), n3 = await extraNs.add(`${h3.ns}-c3`)
        const ip1 = await weaveAttach(h1, `/var/run/netns/${n1}`), ip3 = await weaveAttach(h3, `/var/run/netns/${n3}`)
        const mac3 = (await h3.exec(['ip', 'netns', 'exec', n3, 'cat', '/sys/class/net/ethwe/address'])).stdout.trim()
        assert.ok(await pingFromNamespace(n1, ip3, { tries: 5 }), `h1 → h3 directly (sleeve)\n${await views(lab)}`)

        await lab.partition([h1], [h3])
        await waitFor('h1 reaches h3 only through h2', async () => /relayed via/.test((await h1.api('/status/connections')).text), 30_000, 250)
          .catch(async (err) => { throw new Error(`${(err as Error).message}\n${await views(lab)}`) })
        const before = await sleeveReport(h2)
        // fresh ARP both ways: the floods must cross h2 from sleeve to fastdp and back
        await h1.exec(['ip', 'netns', 'exec', n1, 'ip', 'neigh', 'flush', 'all'])
        await h3.exec(['ip', 'netns', 'exec', n3, 'ip', 'neigh', 'flush', 'all'])
        const there = await waitFor('h1 → h3 through h2', () => pingFromNamespace(n1, ip3), 20_000, 200).then(() => true, () => false)
        assert.ok(there, `h1 → h3 through h2 (sleeve, then fastdp)\n${await views(lab)}`)
        assert.ok(await pingFromNamespace(n3, ip1, { tries: 5 }), `h3 → h1 through h2 (fastdp, then sleeve)\n${await views(lab)}`)
        assert.ok(await pingFromNamespace(n1, ip3, { tries: 3 }) && await pingFromNamespace(n1, ip3, { tries: 3 }), 'again')
        const after = await sleeveReport(h2)
        console.log(`  h2's sleeve: ${after.toDatapath - before.toDatapath} frames handed to its datapath, ${after.fromDatapath - before.fromDatapath} taken from it`)
        assert.ok(after.toDatapath > before.toDatapath, `h2's sleeve handed h1's frames to its datapath: ${JSON.stringify(after)}`)
        assert.ok(after.fromDatapath > before.fromDatapath, `h2's datapath handed h3's frames to its sleeve, tagged: ${JSON.stringify(after)}`)
        assert.not.ok(after.LocalMacs.includes(mac3), `h2's sleeve does not hold h3's container MAC ${mac3} as local: ${after.LocalMacs.join(' ')}`)
        // TCP h1 → h3: h1's container sends TSO super-frames, which h2 cuts into segments for its datapath
        const srv = `require('net').createServer(s=>{let n=0;s.on('data',d=>n+=d.length);s.on('end',()=>{s.end(String(n))})}).listen(5557,'${ip3}',()=>console.log('ready'))`
        const server = startProcess(['ip', 'netns', 'exec', n3, 'node', '-e', srv], { stdio: ['ignore', 'pipe', 'pipe'] })
        try {
          let ready = ''
          server.stdout!.on('data', (d) => { ready += d })
          await waitFor('tcp server in h3', () => ready.includes('ready'), 10_000)
          const cli = `const s=require('net').connect(5557,'${ip3}',()=>{s.end(Buffer.alloc(8<<20,7))});let r='';s.on('data',d=>r+=d);s.on('end',()=>{console.log(r);process.exit(0)});setTimeout(()=>{console.log('timeout');process.exit(1)},60000)`
          const c = await run(['ip', 'netns', 'exec', n1, 'node', '-e', cli], { allowFail: true, timeoutMs: 70_000 })
          assert.is(c.stdout.trim(), String(8 << 20), `8 MiB over TCP h1 → h3 through h2: ${c.stdout}${c.stderr}\n${JSON.stringify(await sleeveReport(h2))}`)
        } finally {
          server.kill('SIGKILL')
        }
        const afterTcp = await sleeveReport(h2) as SleeveReport & { superFramesReceived: number }
        console.log(`  8 MiB TCP h1 → h3: h2 took ${afterTcp.superFramesReceived} super-frames from h1, handed ${afterTcp.toDatapath - after.toDatapath} frames to its datapath`)
        const drops = afterTcp.drops
        assert.not.ok(Object.keys(drops).some((k) => k.startsWith('super-frame-to-datapath')), `no super-frame dropped at the handoff: ${JSON.stringify(drops)}`)
        const o2 = (await h2.api('/status/overlay')).text
        assert.is(count(o2, / established fastdp /g), 1, `h2 ⇄ h3 still fastdp\n${o2}`)
      } finally {
        await lab.heal().catch(() => {})
        for (const h of lab.hosts) await h.weave(['stop'], { allowFail: true })
        await extraNs.removeAll()
      }
    })
  })
}

test.run()
