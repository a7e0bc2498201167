/**
 * Relays with the kernel vxlan path (issue 21): three hosts on it, full mesh; then the underlay
 * between h1 and h3 is cut entirely (the lab's partition). The mesh routes h1 ⇄ h3 through h2;
 * the kernel path cannot relay (its port and the sleeve's are isolated from each other), so h1 and
 * h3 put h2 on sleeve ("next hop to …") and h2 puts both on sleeve ("gets broadcasts of … through
 * us"): pings h1 ⇄ h3 go through h2 by sleeve, and status says why. After the cut heals, every
 * connection returns to the kernel path. Everything runs in lab namespaces and is removed after.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { withLab, labUnavailableReason, waitFor, type Lab, type LabHost } from './index'
import { ExtraNamespaces, pingFromNamespace } from './namespaces'
import { skipFile } from '../skip'

const RANGE = ['--ipalloc-range', '10.32.0.0/12', '--ipalloc-default-subnet', '10.32.0.0/24', '--ipalloc-init', 'consensus=3']
const extraNs = new ExtraNamespaces()
process.on('exit', () => extraNs.removeAllSync())

interface Endpoint { host: LabHost; ns: string; ip: string }

async function views(lab: Lab): Promise<string> {
  const out = await Promise.all(lab.hosts.map(async (h) =>
    `--- ${h.name}\n${(await h.api('/status/connections').catch(() => ({ text: '?' }))).text}\n${h.weaverLog(15)}`))
  return out.join('\n')
}

const onKernelPath = async (h: LabHost, n: number) => ((await h.api('/status/overlay')).text.match(/ established fastdp /g) ?? []).length >= n

const why = labUnavailableReason()
if (why) {
  skipFile('kernel vxlan relay', why)
} else {
  test('kernel vxlan path: a cut h1–h3 relays through h2 by sleeve, status says why; back on the kernel path after', async () => {
    await withLab({ hosts: 3, kernelVxlan: true }, async (lab) => {
      const [h1, h2, h3] = lab.hosts
      try {
        for (const h of lab.hosts) {
          const r = await h.launchWeave([...RANGE, ...lab.hosts.filter((o) => o.index < h.index).map((o) => o.underlayIp)])
          if (r.code !== 0) throw new Error(`${h.name}: launch failed: ${r.stderr}\n${h.weaverLog()}`)
        }
        await waitFor('full mesh on the kernel path', async () => (await onKernelPath(h1, 2)) && (await onKernelPath(h2, 2)) && (await onKernelPath(h3, 2)), 60_000, 250)
          .catch(async (err) => { throw new Error(`${(err as Error).message}\n${await views(lab)}`) })
        const eps: Endpoint[] = []
        for (const h of lab.hosts) {
          const ns = await extraNs.add(`${h.ns}-c`)
          const r = await h.api('/attach', { body: { target: `/var/run/netns/${ns}`, addresses: [] }, timeoutMs: 60_000 })
          const addrs = (r.body as { addresses?: string[] }).addresses
          if (r.status !== 200 || !addrs?.length) throw new Error(`${h.name}: attach ${ns}: ${r.status} ${r.text}`)
          eps.push({ host: h, ns, ip: addrs[0].replace(/\/\d+$/, '') })
        }
        const [e1, , e3] = eps
        assert.ok(await pingFromNamespace(e1.ns, e3.ip, { tries: 5 }), 'h1 → h3 directly')

        await lab.partition([h1], [h3])
        try {
          await waitFor('h1 relays to h3 through h2 by sleeve', async () => {
            const c1 = (await h1.api('/status/connections')).text
            const c2 = (await h2.api('/status/connections')).text
            return /relayed via \S+ sleeve/.test(c1) && /established .*sleeve .*next hop to/.test(c1) && /gets broadcasts of .* through us/.test(c2)
          }, 45_000, 250).catch(async (err) => { throw new Error(`${(err as Error).message}\n${await views(lab)}`) })
          console.log(`  h1 weave status connections:\n${(await h1.weave(['status', 'connections'])).stdout.replace(/^/gm, '    ')}`)
          console.log(`  h2 weave status connections:\n${(await h2.weave(['status', 'connections'])).stdout.replace(/^/gm, '    ')}`)
          assert.ok(await waitFor('h1 → h3 through h2', () => pingFromNamespace(e1.ns, e3.ip), 20_000, 200).catch(() => false), `ping through h2 by sleeve\n${await views(lab)}`)
          assert.ok(await pingFromNamespace(e3.ns, e1.ip, { tries: 5 }), 'and back')
        } finally {
          await lab.heal()
        }
        await waitFor('every connection back on the kernel path', async () => (await onKernelPath(h1, 2)) && (await onKernelPath(h2, 2)) && (await onKernelPath(h3, 2)), 60_000, 250)
          .catch(async (err) => { throw new Error(`${(err as Error).message}\n${await views(lab)}`) })
        assert.ok(await pingFromNamespace(e1.ns, e3.ip, { tries: 5 }), 'h1 → h3 directly again')
      } finally {
        await Promise.all(lab.hosts.map((h) => h.weave(['stop'], { allowFail: true })))
        await extraNs.removeAll()
      }
    })
  })
}

test.run()
