/**
 * /metrics on the kernel vxlan path (issue 19): three lab hosts with real daemons whose
 * connections all go by the kernel's vxlan, scraped on their API.
 *
 *  - per-peer counters of the fast path: 20 pings of 1000 bytes from a namespace on h1 to one on
 *    h2 show up as 20 × 1042-byte frames (+ at most SLACK_BYTES of ARP/neighbour discovery) in
 *    weave_peer_{tx,rx}_bytes_total{datapath="fastdp"} of h1 → h2, h1 ← h2 and h2 ← h1, and not in
 *    h1 → h3; the kernel counts them (nftables table `ip weave_traffic` in the host's namespace,
 *    one counter per peer and direction, heartbeats left out)
 *  - weave_gossip_bytes_total rises when a DNS entry is gossiped
 *  - UDP 6784 h1 → h2 dropped: h1 falls back to sleeve, weave_fastdp_fallbacks_total{reason=
 *    "heartbeats-lost"} rises, and pings now count as sleeve traffic, not fastdp
 *  - `weave stop` removes the table; after a kill -9 it stays, and `weave reset` removes it
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { withLab, labUnavailableReason, waitFor, delay, type Lab, type LabHost } from './index'
import { ExtraNamespaces, pingFromNamespace, weaveAttach } from './namespaces'
import { skipFile } from '../skip'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)
const RANGE = ['--ipalloc-range', '10.32.0.0/12', '--ipalloc-default-subnet', '10.32.0.0/24', '--ipalloc-init', 'consensus=3']
const PINGS = 20
const PING_PAYLOAD = 1000
/** An ICMP echo of PING_PAYLOAD bytes as an Ethernet frame: + ICMP 8, IPv4 20, Ethernet 14. */
const FRAME_BYTES = PING_PAYLOAD + 8 + 20 + 14
/** Room for what else crosses in the same seconds (ARP, IPv6 neighbour discovery). */
const SLACK_BYTES = 1500
const SLACK_PACKETS = 10
const BLOCK_TABLE = 'kvxmblock'
const extraNs = new ExtraNamespaces()
process.on('exit', () => extraNs.removeAllSync())

/** `name{labels} value` lines of one scrape → value by `name{labels}`. */
async function scrape(h: LabHost): Promise<Map<string, number>> {
  const r = await h.api('/metrics')
  if (r.status !== 200) throw new Error(`${h.name}: /metrics ${r.status}: ${r.text}`)
  const out = new Map<string, number>()
  for (const line of r.text.split('\n')) {
    if (!line || line.startsWith('#')) continue
    const i = line.lastIndexOf(' ')
    out.set(line.slice(0, i), Number(line.slice(i + 1)))
  }
  return out
}

const series = (m: Map<string, number>, name: string, labels: string) => m.get(labels ? `${name}{${labels}}` : name) ?? 0

async function views(lab: Lab): Promise<string> {
  const out = await Promise.all(lab.hosts.map(async (h) =>
    `--- ${h.name}\n${(await h.api('/status/overlay').catch(() => ({ text: '?' }))).text}\n${h.weaverLog(20)}`))
  return out.join('\n')
}

async function lineTo(from: LabHost, to: LabHost): Promise<string> {
  return (await from.api('/status/overlay')).text.split('\n').find((l) => l.includes(`${to.underlayIp}:`)) ?? ''
}

const nftTable = (h: LabHost) => h.exec(['nft', 'list', 'table', 'ip', 'weave_traffic'], { allowFail: true })

const why = labUnavailableReason()
if (why) {
  skipFile('metrics on the kernel vxlan path', why)
} else {
  test('kernel vxlan path: per-peer fastdp counters match the pings sent; gossip bytes; fallbacks by reason; no table left', async () => {
    await withLab({ hosts: 3, kernelVxlan: true }, async (lab) => {
      const [h1, h2, h3] = lab.hosts
      const names = new Map<LabHost, string>()
      try {
        for (const h of lab.hosts) {
          const r = await h.launchWeave(['--no-proxy', ...RANGE, ...lab.hosts.filter((o) => o.index < h.index).map((o) => o.underlayIp)])
          if (r.code !== 0) throw new Error(`${h.name}: launch failed: ${r.stderr}\n${h.weaverLog()}`)
          names.set(h, ((await h.api('/report')).body as { Router: { Name: string } }).Router.Name)
        }
        await waitFor('every connection on the kernel path', async () => {
          for (const h of lab.hosts) if (((await h.api('/status/overlay')).text.match(/ established fastdp /g) ?? []).length < 2) return false
          return true
        }, 60_000, 250).catch(async (err) => { throw new Error(`${(err as Error).message}\n${await views(lab)}`) })
        const table = (await nftTable(h1)).stdout
        console.log(`  h1's counter table:\n${table.trimEnd().replace(/^/gm, '    ')}`)
        for (const peer of [h2, h3]) assert.match(table, `tx_${peer.underlayIp.replace(/\./g, '_')}`, `a counter for ${peer.name}`)

        const c1 = await extraNs.add(`${h1.ns}-c1`)
        const c2 = await extraNs.add(`${h2.ns}-c2`)
        await weaveAttach(h1, c1)
        const ip2 = await weaveAttach(h2, c2)
        assert.ok(await pingFromNamespace(c1, ip2, { tries: 20 }), `c1 on h1 reaches c2 on h2 (${ip2})\n${await views(lab)}`)

        const lbl = (h: LabHost, dp: string) => `peer="${names.get(h)}",datapath="${dp}",encryption="false"`
        const read = async () => {
          const [m1, m2] = await Promise.all([scrape(h1), scrape(h2)])
          return {
            tx12: series(m1, 'weave_peer_tx_bytes_total', lbl(h2, 'fastdp')), rx12: series(m1, 'weave_peer_rx_bytes_total', lbl(h2, 'fastdp')),
            rx21: series(m2, 'weave_peer_rx_bytes_total', lbl(h1, 'fastdp')), tx13: series(m1, 'weave_peer_tx_bytes_total', lbl(h3, 'fastdp')),
            pk12: series(m1, 'weave_peer_tx_packets_total', lbl(h2, 'fastdp')),
            sleeve12: series(m1, 'weave_peer_tx_bytes_total', lbl(h2, 'sleeve')),
            gossip: series(m1, 'weave_gossip_bytes_total', ''),
            hbLost: series(m1, 'weave_fastdp_fallbacks_total', 'reason="heartbeats-lost"'),
          }
        }
        const sendPings = async () => {
          const r = await run('ip', ['netns', 'exec', c1, 'busybox', 'ping', '-c', String(PINGS), '-i', '0.1', '-s', String(PING_PAYLOAD), '-W', '2', ip2])
          assert.match(r.stdout, new RegExp(`${PINGS} packets transmitted, ${PINGS} (packets )?received`), r.stdout)
        }
        await delay(2000) // quiet: the first pings' ARP is done
        const before = await read()
        await sendPings()
        await delay(500)
        const after = await read()
        const d = (k: keyof typeof before) => after[k] - before[k]
        console.log(`  fastdp: h1→h2 tx +${d('tx12')} B (+${d('pk12')} frames), h1←h2 rx +${d('rx12')} B, h2←h1 rx +${d('rx21')} B, h1→h3 tx +${d('tx13')} B; ` +
          `sleeve h1→h2 +${d('sleeve12')} B (pings: ${PINGS} × ${FRAME_BYTES} B each way)`)
        const sent = PINGS * FRAME_BYTES
        for (const [what, v] of [['h1 tx to h2', d('tx12')], ['h1 rx from h2', d('rx12')], ['h2 rx from h1', d('rx21')]] as const) {
          assert.ok(v >= sent && v <= sent + SLACK_BYTES, `${what}: +${v} bytes on the kernel path, expected ${sent}..${sent + SLACK_BYTES}`)
        }
        assert.ok(d('pk12') >= PINGS && d('pk12') <= PINGS + SLACK_PACKETS, `${d('pk12')} frames to h2, expected ${PINGS}..${PINGS + SLACK_PACKETS}`)
        assert.ok(d('tx13') < SLACK_BYTES, `h1 tx to h3 grew by ${d('tx13')} bytes only (no pings went there)`)
        assert.ok(d('sleeve12') < SLACK_BYTES, `the sleeve carried none of it (+${d('sleeve12')} bytes)`)

        // mesh gossip: a DNS entry made on h1 is gossiped to its peers
        assert.ok(after.gossip > 0, `gossip bytes so far: ${after.gossip}`)
        await h1.weave(['dns-add', '10.32.0.77', '-h', 'metrics-probe.weave.local'])
        await waitFor('h1 gossips the DNS entry', async () => (await read()).gossip > after.gossip, 10_000, 200)
        console.log(`  weave_gossip_bytes_total on h1: ${after.gossip} → ${(await read()).gossip} after a DNS entry`)

        // UDP 6784 h1 → h2 dropped: h1 falls back, and the fallback is counted by its reason
        try {
          await h1.exec(['nft', '-f', '-'], {
            input: `table netdev ${BLOCK_TABLE} {\n chain out {\n  type filter hook egress device "eth0" priority 0;\n` +
              `  ip daddr ${h2.underlayIp} udp dport 6784 drop\n }\n}\n`,
          })
          await waitFor('h1 → h2 falls back to sleeve', async () => /established sleeve .*not fastdp: fastdp heartbeats do not get through/.test(await lineTo(h1, h2)), 10_000, 50)
            .catch(async (err) => { throw new Error(`${(err as Error).message}\n${await views(lab)}`) })
          const fell = await read()
          console.log(`  fallbacks{reason="heartbeats-lost"} on h1: ${after.hbLost} → ${fell.hbLost}`)
          assert.ok(fell.hbLost >= after.hbLost + 1, `the fallback counted (${after.hbLost} → ${fell.hbLost})`)
          // the switch says sleeve as it starts taking the peer's fdb entries away: wait until they are gone
          await waitFor("h1's fdb no longer sends to h2", async () =>
            !(await h1.exec(['bridge', 'fdb', 'show', 'dev', 'vxlan-6784'])).stdout.includes(`dst ${h2.underlayIp} `), 10_000, 50)
          const fell2 = await read()
          await sendPings()
          await delay(500)
          const onSleeve = await read()
          const sl = onSleeve.sleeve12 - fell2.sleeve12, fd = onSleeve.tx12 - fell2.tx12
          console.log(`  on sleeve: h1→h2 sleeve +${sl} B, fastdp +${fd} B`)
          assert.ok(sl >= sent && sl <= sent + SLACK_BYTES, `sleeve carried the pings now: +${sl}, expected ${sent}..${sent + SLACK_BYTES}`)
          assert.ok(fd < SLACK_BYTES, `and the kernel path none of them: +${fd}`)
        } finally {
          await h1.exec(['nft', 'delete', 'table', 'netdev', BLOCK_TABLE], { allowFail: true })
        }

        // no table left behind: weave stop removes it; a killed router's stays until weave reset
        await h1.weave(['stop'])
        assert.is.not((await nftTable(h1)).code, 0, 'weave stop removed h1\'s counter table')
        const pid = Number(fs.readFileSync(path.join(h2.weaveRunDir, 'weaver.pid'), 'utf8'))
        process.kill(pid, 'SIGKILL')
        await waitFor('h2\'s router gone', async () => { try { process.kill(pid, 0); return false } catch { return true } }, 10_000, 100)
        assert.is((await nftTable(h2)).code, 0, 'a killed router leaves its table')
        await h2.weave(['reset'], { allowFail: true })
        assert.is.not((await nftTable(h2)).code, 0, 'weave reset removed it')
      } finally {
        await Promise.all(lab.hosts.map((h) => h.weave(['stop'], { allowFail: true })))
        await extraNs.removeAll()
      }
    })
  })
}

test.run()
