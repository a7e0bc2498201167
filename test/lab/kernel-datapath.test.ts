/**
 * fastdp on Open vSwitch's KERNEL datapath (issue 9). Runs where the openvswitch module is loaded
 * — the stock-kernel VM (test/vm; test/lab/vm.test.ts runs this file there) — and skips with the
 * reason elsewhere. Three OVS hosts with real daemons, a plain namespace per host attached:
 *
 *  - every connection shows `fastdp`, `weave status` names the `system` datapath, and the kernel
 *    holds the vxlan vport (`ovs-appctl dpctl/show` lists `vxlan_sys_6784`)
 *  - all pairs of namespaces ping; the tunnel flows counted the frames
 *  - fallback: UDP 6784 h1 → h2 dropped by nftables on h1's eth0 egress (the kernel datapath's
 *    tunnel packets pass the kernel's own stack, unlike the userspace datapath's): h1 ⇄ h2 falls
 *    to sleeve with the reason and pings continue; with the rule gone it returns to fastdp
 *
 * Prints `kernel-datapath: datapath=system` for the host-side wrapper to check.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import { withLab, labUnavailableReason, ovsDatapathType, waitFor, type Lab, type LabHost } from './index'
import { ExtraNamespaces, pingFromNamespace } from './namespaces'
import { skipFile } from '../skip'

const RANGE = ['--ipalloc-range', '10.32.0.0/12', '--ipalloc-default-subnet', '10.32.0.0/24', '--ipalloc-init', 'consensus=3']
/** Under emulation everything is 10-50x slower than on the host: waits are generous. */
const SETTLE_MS = 180_000

function unavailable(): string | undefined {
  if (!fs.existsSync('/sys/module/openvswitch')) {
    return 'no openvswitch kernel module here (test/lab/vm.test.ts runs this inside the stock-kernel VM)'
  }
  return labUnavailableReason({ ovs: true })
}

const extraNs = new ExtraNamespaces()
process.on('exit', () => extraNs.removeAllSync())

interface Endpoint { host: LabHost; ns: string; ip: string }

const ping = (from: Endpoint, to: string, tries = 1) => pingFromNamespace(from.ns, to, { tries, waitS: 2 })

async function views(lab: Lab): Promise<string> {
  const out = await Promise.all(lab.hosts.map(async (h) =>
    `--- ${h.name}\n${(await h.api('/status/overlay').catch(() => ({ text: '?' }))).text}\n${h.weaverLog(15)}`))
  return out.join('\n')
}

const count = (text: string, re: RegExp) => (text.match(re) ?? []).length

/** The line of `from`'s overlay status about the connection to `to`. */
async function lineTo(from: LabHost, to: LabHost): Promise<string> {
  return (await from.api('/status/overlay')).text.split('\n').find((l) => l.includes(`${to.underlayIp}:`)) ?? ''
}

/** Packets counted on flows that send into the tunnel. */
async function tunnelPackets(h: LabHost): Promise<number> {
  const r = await h.ovsOfctl(['-O', 'OpenFlow14', 'dump-flows', 'datapath'], { allowFail: true })
  let n = 0
  for (const line of r.stdout.split('\n')) {
    if (!/tun_dst|TUN_IPV4_DST/.test(line) || !/output:/.test(line)) continue
    n += Number(/n_packets=(\d+)/.exec(line)?.[1] ?? 0)
  }
  return n
}

const BLOCK_TABLE = 'kdptest'

async function blockTunnel(from: LabHost, to: LabHost): Promise<void> {
  await from.exec(['nft', '-f', '-'], {
    input: `table netdev ${BLOCK_TABLE} {\n chain out {\n  type filter hook egress device "eth0" priority 0;\n` +
      `  ip daddr ${to.underlayIp} udp dport 6784 drop\n }\n}\n`,
  })
}

async function unblockTunnel(from: LabHost): Promise<void> {
  await from.exec(['nft', 'delete', 'table', 'netdev', BLOCK_TABLE], { allowFail: true })
}

const why = unavailable()
if (why) {
  skipFile('kernel datapath', why)
} else {
  test('fastdp on the kernel datapath: three hosts all fastdp, pings across, fallback to sleeve and back', async () => {
    assert.is(ovsDatapathType(), 'system', 'the lab picks the kernel datapath when the module is loaded')
    await withLab({ hosts: 3, ovs: true }, async (lab) => {
      const [h1, h2, h3] = lab.hosts
      try {
        assert.is(h1.underlayDev, 'eth0', 'no br-phy on the kernel datapath')
        for (const h of lab.hosts) await h.launchWeaveWait([...RANGE, ...(h === h1 ? [] : [h1.underlayIp])], {}, SETTLE_MS)
        await waitFor('every connection on fastdp', async () => {
          for (const h of lab.hosts) if (count((await h.api('/status/overlay')).text, / established fastdp /g) < 2) return false
          return true
        }, SETTLE_MS, 500).catch(async (err) => { throw new Error(`${(err as Error).message}\n${await views(lab)}`) })

        // the API's texts, not the weave command: each node start costs seconds under emulation
        const st = (await h1.api('/status')).text
        const dp = /Fastdp: datapath \((\w+)\)/.exec(st)?.[1]
        console.log(`kernel-datapath: datapath=${dp}`)
        assert.is(dp, 'system', `weave status names the kernel datapath:\n${st}`)
        const conns = (await h1.api('/status/overlay')).text
        console.log(`  h1 overlay connections:\n${conns.replace(/^/gm, '    ')}`)
        assert.is(count(conns, / established fastdp /g), 2, conns)
        const dpctl = (await h1.ovsAppctl(['dpctl/show'])).stdout
        assert.match(dpctl, /vxlan_sys_6784/, `the kernel datapath holds the vxlan vport:\n${dpctl}`)
        assert.equal((await h1.ovsVsctl(['get', 'bridge', 'datapath', 'datapath_type'])).stdout.trim(), 'system')

        const eps: Endpoint[] = []
        for (const h of lab.hosts) {
          const ns = await extraNs.add(`${h.ns}-c`)
          // the API `weave attach` calls, without the command's own 30 s limit (slow under emulation)
          const r = await h.api('/attach', { body: { target: `/var/run/netns/${ns}`, addresses: [] }, timeoutMs: SETTLE_MS })
          const addrs = (r.body as { addresses?: string[] }).addresses
          if (r.status !== 200 || !addrs?.length) throw new Error(`${h.name}: attach ${ns}: ${r.status} ${r.text}\n${h.weaverLog()}`)
          eps.push({ host: h, ns, ip: addrs[0].replace(/\/\d+$/, '') })
        }
        const before = await tunnelPackets(h1)
        for (const a of eps) for (const b of eps) {
          if (a !== b) assert.ok(await ping(a, b.ip, 10), `${a.host.name} → ${b.host.name} (${b.ip})\n${await views(lab)}`)
        }
        const after = await tunnelPackets(h1)
        assert.ok(after > before, `h1's frames left through the kernel tunnel: ${before} → ${after}`)

        const [e1, e2] = eps
        try {
          await blockTunnel(h1, h2)
          await waitFor('h1 → h2 falls back to sleeve', async () => /established sleeve .*not fastdp/.test(await lineTo(h1, h2)), SETTLE_MS, 500)
            .catch(async (err) => { throw new Error(`${(err as Error).message}\n${await views(lab)}`) })
          console.log(`  fallback: ${(await lineTo(h1, h2)).trim()}`)
          assert.ok(await ping(e1, e2.ip, 20), 'traffic continues over sleeve')
          // (a moment's flap under emulation is no failure: h1 ⇄ h3 is fastdp again soon)
          await waitFor('h1 keeps fastdp to h3', async () => /established fastdp/.test(await lineTo(h1, h3)), SETTLE_MS, 500)
        } finally {
          await unblockTunnel(h1)
        }
        await waitFor('h1 ⇄ h2 back to fastdp', async () =>
          /established fastdp/.test(await lineTo(h1, h2)) && /established fastdp/.test(await lineTo(h2, h1)), SETTLE_MS, 500)
          .catch(async (err) => { throw new Error(`${(err as Error).message}\n${await views(lab)}`) })
        assert.ok(await ping(e1, e2.ip, 10), 'traffic over fastdp again')
      } finally {
        await Promise.all(lab.hosts.map((h) => h.weave(['stop'], { allowFail: true })))
        await extraNs.removeAll()
      }
    })
  })
}

test.run()
