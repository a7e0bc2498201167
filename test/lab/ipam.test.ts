// IPAM on three real daemons in lab hosts: consensus among them, allocations through the HTTP API
// on every host, a daemon SIGKILLed during a burst of allocations keeps every lease it answered and
// no address is issued twice across the cluster, `weave rmpeer` of a stopped peer frees its space,
// and `weave status ipam` percentages add up to 100. Skips (counted, saying why) only without root
// or the lab's tools; a daemon whose IPAM does not see the other peers fails.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { labUnavailableReason, waitFor, withLab, type LabHost } from '../lab'
import { skipFile } from '../skip'

const INIT = ['--ipalloc-init', 'consensus=3']

async function alloc(h: LabHost, id: string): Promise<string> {
  const r = await h.api(`/ip/${id}`, { method: 'POST', timeoutMs: 40_000 })
  if (r.status !== 200) throw new Error(`${h.name}: POST /ip/${id}: HTTP ${r.status} ${r.text}`)
  return r.text.trim()
}

async function leases(h: LabHost): Promise<Map<string, string[]>> {
  const r = await h.api('/ip')
  const owned = (r.body as { owned: Array<{ containerid: string; addrs: string[] }> }).owned
  return new Map(owned.map((o) => [o.containerid, o.addrs]))
}

function daemonPid(h: LabHost): number {
  return Number(fs.readFileSync(path.join(h.weaveRunDir, 'weaver.pid'), 'utf8').trim())
}

async function knownPeers(h: LabHost): Promise<number> {
  const r = await h.api('/report')
  return Number((r.body as { IPAM?: { KnownPeers?: number } }).IPAM?.KnownPeers ?? 0)
}

const why = labUnavailableReason({})
if (why) skipFile('ipam lab', why)
else test('three daemons: allocate everywhere, survive SIGKILL mid-burst, rmpeer, status percentages', async () => {
  await withLab({ hosts: 3 }, async (lab) => {
    const [h1, h2, h3] = lab.hosts as [LabHost, LabHost, LabHost]
    try {
      await h1.launchWeave([...INIT])
      await h2.launchWeave([...INIT, h1.underlayIp])
      await h3.launchWeave([...INIT, h1.underlayIp])
      await waitFor('IPAM on h1 sees 3 peers', async () => (await knownPeers(h1)) >= 3, 20_000, 250)
      const issued = new Map<string, string>() // address -> who got it
      const note = (addr: string, who: string) => {
        assert.not.ok(issued.has(addr), `${addr} issued to ${issued.get(addr)} and to ${who}`)
        issued.set(addr, who)
      }
      // Allocations through the HTTP API on every host (the first ones trigger consensus).
      const t0 = Date.now()
      await Promise.all([h1, h2, h3].map(async (h) => note(await alloc(h, `${h.name}-first`), `${h.name}-first`)))
      console.log(`    first allocations on 3 hosts after ${Date.now() - t0} ms`)
      for (const h of [h1, h2, h3]) for (let k = 0; k < 20; k++) note(await alloc(h, `${h.name}-c${k}`), `${h.name}-c${k}`)

      // A burst on h2, SIGKILLed in the middle.
      const answered = new Map<string, string>()
      let stop = false
      const burst = Array.from({ length: 16 }, async (_, w) => {
        for (let k = 0; !stop; k++) {
          const id = `burst-${w}-${k}`
          try {
            answered.set(id, await alloc(h2, id))
          } catch {
            return
          }
        }
      })
      await waitFor('burst under way', () => answered.size >= 100, 30_000, 20)
      process.kill(daemonPid(h2), 'SIGKILL')
      stop = true
      await Promise.all(burst)
      for (const [id, addr] of answered) note(addr, id)
      await h2.launchWeave([...INIT, h1.underlayIp])
      const after = await leases(h2)
      for (const [id, addr] of answered) assert.equal(after.get(id), [addr], `lease of ${id} lost after SIGKILL`)
      console.log(`    ${answered.size} allocations answered before SIGKILL; all kept`)
      // Everyone allocates again: nothing issued before comes back.
      for (const h of [h1, h2, h3]) for (let k = 0; k < 10; k++) note(await alloc(h, `${h.name}-after${k}`), `${h.name}-after${k}`)

      // Stop h3 and take over its space from h1.
      const h3Name = (await h3.api('/report')).body as { Daemon: { PeerName: string } }
      await h3.weave(['stop'])
      await waitFor('h3 unreachable from h1', async () => {
        const r = await h1.weave(['rmpeer', h3Name.Daemon.PeerName], { allowFail: true })
        return r.code === 0 ? r.stdout : false
      }, 30_000, 1000).then((out) => assert.match(String(out), /\d+ IPs taken over from/))
      const st = await h1.weave(['status', 'ipam'])
      const pct = [...st.stdout.matchAll(/\(([\d.]+)% of total\)/g)].map((m) => Number(m[1]))
      const sum = pct.reduce((a, b) => a + b, 0)
      assert.ok(Math.abs(sum - 100) < 0.2, `percentages add up to ${sum}:\n${st.stdout}`)
      assert.not.match(st.stdout, new RegExp(h3Name.Daemon.PeerName), `h3 still owns space:\n${st.stdout}`)
    } catch (err) {
      for (const h of [h1, h2, h3]) console.log(`--- ${h.name} weaver log\n${h.weaverLog(20)}`)
      throw err
    } finally {
      for (const h of [h1, h2, h3]) await h.weave(['stop'], { allowFail: true })
    }
  })
})

test.run()
