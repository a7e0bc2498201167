/**
 * fastdp end to end with real daemons: h1–h3 run Open vSwitch (userspace `netdev` datapath, an
 * OVSDB server per host passed as WEAVE_OVSDB), h4 runs none and takes the kernel vxlan path: a
 * mixed mesh. `weave launch` on all, a plain
 * namespace per host attached with `weave attach`. Everything runs inside lab namespaces
 * (underlay 192.168.250.0/24, overlay 10.32.0.0/12) and is removed after.
 *
 *  - every pair of namespaces pings (fastdp among h1–h3, sleeve to and from h4); 16 MiB over TCP
 *    arrive intact h2 → h1 (fastdp) and h4 → h1, h1 → h4 (sleeve through h1's datapath)
 *  - h1–h3 show `fastdp` on their connections to each other and `sleeve (not fastdp: …)` to h4,
 *    h4 shows sleeve to all with the reason (their fast path is OVS, its own the kernel's vxlan,
 *    chosen because there is no OVSDB server here)
 *  - `ovs-vsctl show` on h1 lists `datapath` with `vethwe-datapath` and `vxlan-6784`; the weave
 *    bridge holds `vethwe-bridge`
 *  - the tunnel carried the traffic among h1–h3 (flow counters), not the sleeve
 *  - /metrics: 20 pings of 1000 bytes h1 → h2 show up as 20 × 1042-byte frames (+ at most 1500
 *    bytes of ARP and the like) in weave_peer_{tx,rx}_bytes_total{datapath="fastdp"} of h1 → h2,
 *    h1 ← h2 and h2 ← h1 (the datapath's flow counters, read at scrape time)
 *  - fallback: with UDP 6784 from h1 dropped on h2's underlay (an OpenFlow rule on br-phy: the
 *    userspace datapath takes tunnel packets before iptables sees them), h1 ⇄ h2 falls to sleeve
 *    with the reason within a second: a ping at 10/s across the change loses at most 8; with the
 *    rule gone it returns to fastdp within 30 s, again losing at most 8 of 10/s
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { withLab, labUnavailableReason, waitFor, delay, type Lab, type LabHost } from './index'
import { ExtraNamespaces, pingFromNamespace, weaveAttach } from './namespaces'
import { skipFile } from '../skip'

const run = promisify(execFile)
const reason = labUnavailableReason({ ovs: true })
const RANGE = ['--ipalloc-range', '10.32.0.0/12', '--ipalloc-default-subnet', '10.32.0.0/24', '--ipalloc-init', 'consensus=4']

/** Plain namespaces used as containers, deleted in finally. */
const extraNs = new ExtraNamespaces()

interface Endpoint { host: LabHost; ns: string; ip: string }

const ping = (from: Endpoint, to: string, tries = 1) => pingFromNamespace(from.ns, to, { tries, waitS: 1 })

const attach = (h: LabHost, ns: string) => weaveAttach(h, `/var/run/netns/${ns}`)

/** What every host's status shows, for failure messages. */
async function views(lab: Lab): Promise<string> {
  const out = await Promise.all(lab.hosts.map(async (h) => `--- ${h.name}\n${(await h.api('/status').catch(() => ({ text: '?' }))).text}\n${h.weaverLog(20)}`))
  return out.join('\n')
}

const count = (text: string, re: RegExp) => (text.match(re) ?? []).length

if (reason) {
  skipFile('fastdp e2e', reason)
} else {
  test('fastdp between three OVS hosts, sleeve to a fourth without OVS: all pairs ping, status says which and why', async () => {
    await withLab({ hosts: 4, ovs: ['h1', 'h2', 'h3'], kernelVxlan: ['h4'] }, async (lab) => {
      const [h1, h2, h3, h4] = lab.hosts
      try {
        // h4's kernel hands its veth TCP segments with partial checksums; OVS on h1–h3 takes eth0
        // frames through a packet socket and passes them on unfinished, so h1's kernel would drop
        // h4's mesh connection. A real NIC finishes them on the wire: so do it in software here.
        await h4.exec(['ethtool', '-K', 'eth0', 'tx', 'off'])
        for (const h of lab.hosts) {
          const peers = h === h1 ? [] : [h1.underlayIp]
          // h4 has no OVS: name an OVSDB socket that cannot exist, so nothing outside the lab is asked
          const env: Record<string, string> = h === h4 ? { WEAVE_OVSDB: `unix:${h.weaveRunDir}/no-ovsdb.sock` } : {}
          const r = await h.launchWeave([...RANGE, ...peers], env)
          if (r.code !== 0) throw new Error(`${h.name}: launch failed: ${r.stderr}\n${h.weaverLog()}`)
        }
        for (const h of lab.hosts) {
          const st = (await h.api('/status')).text
          assert.not.match(st, /no mesh in this daemon/, `${h.name}: the daemon runs no mesh:\n${st}`)
        }
        // h1–h3: fastdp to the two other OVS hosts, sleeve to h4; h4: sleeve to all three
        await waitFor('overlay switch settled', async () => {
          for (const h of [h1, h2, h3]) {
            const s = (await h.api('/status/overlay')).text
            if (count(s, / established fastdp /g) < 2 || count(s, / established sleeve .*not fastdp/g) < 1) return false
          }
          return count((await h4.api('/status/overlay')).text, / established sleeve .*not fastdp/g) >= 3
        }, 45_000, 250).catch(async (err) => { throw new Error(`${(err as Error).message}\n${await views(lab)}`) })

        const s1 = (await h1.api('/status/overlay')).text
        assert.match(s1, /sleeve .*\(not fastdp: the peer's fast path is kernel vxlan, ours OVS fastdp\)/, `h1 says why h4 is sleeve:\n${s1}`)
        const s4 = (await h4.api('/status/overlay')).text
        console.log(`  h1 weave status overlay:\n${s1.replace(/^/gm, '    ')}\n  h4:\n${s4.replace(/^/gm, '    ')}`)
        assert.match(s4, /\(not fastdp: the peer's fast path is OVS fastdp, ours kernel vxlan\)/, `h4 says why:\n${s4}`)
        const st1 = (await h1.weave(['status'])).stdout
        assert.match(st1, /Fastdp: datapath \(netdev\)/, `status names the datapath:\n${st1}`)
        assert.match((await h4.weave(['status'])).stdout, /Fastdp: vxlan-6784 \(kernel vxlan: no OVS datapath \(no openvswitch kernel module, and no OVSDB server/)
        // `weave status connections` says per connection what carries it, as Weave's does.
        const c1 = (await h1.weave(['status', 'connections'])).stdout
        assert.is(count(c1, / established unencrypted fastdp /g), 2, c1)
        assert.match(c1, new RegExp(`${h4.underlayIp.replace(/\./g, '\\.')}:\\d+ +established unencrypted sleeve mtu=\\d+ \\(not fastdp: the peer's fast path is kernel vxlan`), c1)

        // the OVS side of h1 and its weave bridge
        const show = (await h1.ovsVsctl(['show'])).stdout
        for (const want of ['Bridge datapath', 'Port vethwe-datapath', 'Port vxlan-6784', 'Port vethwe-ovsrtr', 'type: vxlan']) {
          assert.ok(show.includes(want), `ovs-vsctl show has ${want}:\n${show}`)
        }
        const onBridge = (await h1.exec(['ip', '-o', 'link', 'show', 'master', 'weave'])).stdout
        assert.match(onBridge, /vethwe-bridge/, 'vethwe-bridge is on the weave bridge')

        // one namespace per host, all pairs
        const eps: Endpoint[] = []
        for (const h of lab.hosts) {
          const ns = await extraNs.add(`${h.ns}-c`)
          eps.push({ host: h, ns, ip: await attach(h, ns) })
        }
        assert.is(new Set(eps.map((e) => e.ip)).size, 4, `distinct addresses: ${eps.map((e) => e.ip).join(", ")}`)
        const vxlanBefore = await tunnelPackets(h1)
        for (const a of eps) for (const b of eps) {
          if (a === b) continue
          assert.ok(await ping(a, b.ip, 5), `${a.host.name} → ${b.host.name} (${b.ip})\n${await views(lab)}`)
        }
        for (const [a, b] of [[eps[1], eps[0]], [eps[3], eps[0]], [eps[0], eps[3]]]) {
          const t = await transfer(a, b, 16)
          console.log(`  16 MiB ${a.host.name} → ${b.host.name}: ${t.seconds.toFixed(1)} s`)
          assert.is(t.received, t.sent, `TCP ${a.host.name} → ${b.host.name} arrived intact`)
        }
        // h1's datapath tunnelled frames to h2/h3 (the flood and MAC flows count them)
        const vxlanAfter = await tunnelPackets(h1)
        assert.ok(vxlanAfter > vxlanBefore, `frames left h1 through the tunnel: ${vxlanBefore} → ${vxlanAfter}`)
        // and the sleeve carried h4's traffic: h4 runs the kernel vxlan path, but no OVS peer is on it
        const rep4 = (await h4.api('/report')).body as { Overlay?: { Fastdp?: { Device?: string; Fdb?: { Flood?: string[] } } } }
        assert.is(rep4.Overlay?.Fastdp?.Device, 'vxlan-6784', 'h4 runs the kernel vxlan path')
        assert.equal(rep4.Overlay?.Fastdp?.Fdb?.Flood, [], 'no OVS peer gets anything through h4\'s vxlan device')

        // per-peer fastdp counters in /metrics match pings of a known size
        const [e1, e2] = eps
        await fastdpCountersMatchPings(h1, h2, e1, e2)

        // fallback and return: block the tunnel h1 → h2 while a ping h1 → h2 runs
        const lineTo = async (from: LabHost, to: LabHost) => ((await from.api('/status/overlay')).text.split('\n').find((l) => l.includes(`${to.underlayIp}:`)) ?? '')
        // 10 pings a second across each change; "a few packets" = at most 8 lost (under a second)
        const fallbackPing = pingAcross(e1, e2)
        const block = `priority=1000,udp,nw_src=${h1.underlayIp},tp_dst=6784`
        try {
          await delay(1000)
          await h2.ovsOfctl(['add-flow', 'br-phy', `${block},actions=drop`])
          const t0 = Date.now()
          await waitFor('h1 → h2 falls back to sleeve', async () => /established sleeve .*not fastdp: fastdp heartbeats do not get through/.test(await lineTo(h1, h2)), 20_000, 250)
            .catch(async (err) => { throw new Error(`${(err as Error).message}\n${await views(lab)}`) })
          console.log(`  fell back in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${await lineTo(h1, h2)}`)
          assert.match(await lineTo(h2, h1), /sleeve .*not fastdp/, 'h2 also uses sleeve towards h1')
          // Both ends switch on their own heartbeat verdicts, up to a second apart, and a flow
          // learnt towards the tunnel may outlive the switch by a moment: give it ~10 s of pings.
          const t2 = Date.now()
          assert.ok(await ping(e1, e2.ip, 10), `traffic continues over sleeve\n${await views(lab)}\n${(await h1.ovsOfctl(['dump-flows', 'datapath'])).stdout}`)
          console.log(`  ping over sleeve after the fallback within ${((Date.now() - t2) / 1000).toFixed(1)} s`)
          assert.match(await lineTo(h1, h3), /established fastdp/, 'h1 keeps fastdp to h3')
          await delay(1500) // a steady stretch on sleeve, in the same count
          const f = await fallbackPing.stop()
          console.log(`  ping across the fallback (10/s): ${f.got}/${f.sent} replies`)
          assert.ok(f.sent > 20, `the ping ran (${f.sent} sent)`)
          assert.ok(f.sent - f.got <= 8, `at most 8 of 10/s lost across the fallback: ${f.got}/${f.sent}`)
        } finally {
          await fallbackPing.stop()
          await h2.ovsOfctl(['--strict', 'del-flows', 'br-phy', block], { allowFail: true })
        }
        const returnPing = pingAcross(e1, e2)
        const t1 = Date.now()
        await waitFor('h1 → h2 back to fastdp', async () => /established fastdp/.test(await lineTo(h1, h2)) && /established fastdp/.test(await lineTo(h2, h1)), 30_000, 250)
        console.log(`  back to fastdp in ${((Date.now() - t1) / 1000).toFixed(1)} s`)
        await delay(1000)
        const r = await returnPing.stop()
        console.log(`  ping across the return (10/s): ${r.got}/${r.sent} replies`)
        assert.ok(r.sent > 5, `the ping ran (${r.sent} sent)`)
        assert.ok(r.sent - r.got <= 8, `at most 8 of 10/s lost across the return: ${r.got}/${r.sent}`)
        assert.ok(await ping(e1, e2.ip, 3), 'traffic over fastdp again')

        // weave reset takes the OVS bridge away with the rest.
        const reset = await h1.weave(['reset'], { allowFail: true })
        assert.is(reset.code, 0, reset.stderr)
        const afterReset = await h1.ovsVsctl(['show'])
        assert.not.match(afterReset.stdout, /Bridge "?datapath"?/, afterReset.stdout)
        assert.not.match(afterReset.stdout, /vxlan-6784/)
      } finally {
        for (const h of lab.hosts) await h.weave(['stop'], { allowFail: true })
        await extraNs.removeAll()
      }
    })
  })
}

/** A ping at 10/s from `from` to `to` until stop(), which says how many were sent and answered. */
function pingAcross(from: Endpoint, to: Endpoint): { stop(): Promise<{ sent: number; got: number }> } {
  const pinger = execFile('ip', ['netns', 'exec', from.ns, 'busybox', 'ping', '-i', '0.1', '-W', '1', to.ip])
  let out = ''
  pinger.stdout!.on('data', (d) => { out += d })
  const exited = new Promise((r) => pinger.on('exit', r))
  let result: Promise<{ sent: number; got: number }> | undefined
  return {
    stop() {
      result ??= (async () => {
        pinger.kill('SIGINT')
        await exited
        return { sent: Number(/(\d+) packets transmitted/.exec(out)?.[1] ?? 0), got: Number(/(\d+) packets received/.exec(out)?.[1] ?? 0) }
      })()
      return result
    },
  }
}

/** sha256 of what a node one-liner sends from `from` and a server in `to` receives (TCP 5555). */
async function transfer(from: Endpoint, to: Endpoint, mib: number): Promise<{ sent: string; received: string; seconds: number }> {
  const server = `const c=require('crypto'),h=c.createHash('sha256');const s=require('net').createServer(k=>{k.on('data',d=>h.update(d));k.on('end',()=>{console.log(h.digest('hex'));process.exit(0)})}).listen(5555,'${to.ip}',()=>console.log('ready'))`
  const client = `const c=require('crypto'),h=c.createHash('sha256');const b=c.randomBytes(1<<20);let i=0;const k=require('net').connect(5555,'${to.ip}',()=>{const w=()=>{while(i<${mib}){h.update(b);i++;if(!k.write(b))return k.once('drain',w)}k.end();console.log(h.digest('hex'))};w()})`
  const srv = execFile('ip', ['netns', 'exec', to.ns, 'node', '-e', server], { timeout: 60_000 })
  let out = ''
  srv.stdout!.on('data', (d) => { out += d })
  const done = new Promise<void>((res) => srv.on('exit', () => res()))
  try {
    await waitFor('transfer server', () => out.includes('ready'), 10_000, 50)
    const t0 = Date.now()
    const cli = await run('ip', ['netns', 'exec', from.ns, 'node', '-e', client], { timeout: 60_000 })
    await done
    return { sent: cli.stdout.trim(), received: out.split('\n')[1]?.trim() ?? '', seconds: (Date.now() - t0) / 1000 }
  } finally {
    srv.kill('SIGKILL')
  }
}

/** `name{labels} value` lines of one /metrics scrape. */
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

/** 20 pings of 1000 bytes e1 → e2: h1's fastdp counters towards h2 (both ways) and h2's from h1 grow by 20 frames of 1042 bytes. */
async function fastdpCountersMatchPings(h1: LabHost, h2: LabHost, e1: Endpoint, e2: Endpoint): Promise<void> {
  const PINGS = 20, FRAME_BYTES = 1000 + 8 + 20 + 14, SLACK_BYTES = 1500
  const nameOf = async (h: LabHost) => ((await h.api('/report')).body as { Router: { Name: string } }).Router.Name
  const [n1, n2] = [await nameOf(h1), await nameOf(h2)]
  const q = (peer: string, dir: 'tx' | 'rx') => `weave_peer_${dir}_bytes_total{peer="${peer}",datapath="fastdp",encryption="false"}`
  const read = async () => {
    const [m1, m2] = [await scrape(h1), await scrape(h2)]
    return [m1.get(q(n2, 'tx')), m1.get(q(n2, 'rx')), m2.get(q(n1, 'rx'))].map((v) => v ?? NaN)
  }
  await delay(1000)
  const before = await read()
  const r = await run('ip', ['netns', 'exec', e1.ns, 'busybox', 'ping', '-c', String(PINGS), '-i', '0.1', '-s', '1000', '-W', '2', e2.ip])
  assert.match(r.stdout, new RegExp(`${PINGS} packets transmitted, ${PINGS} (packets )?received`), r.stdout)
  await delay(500)
  const after = await read()
  const [tx12, rx12, rx21] = after.map((v, i) => v - before[i])
  console.log(`  /metrics fastdp: h1→h2 tx +${tx12} B, h1←h2 rx +${rx12} B, h2←h1 rx +${rx21} B (pings: ${PINGS} × ${FRAME_BYTES} B each way)`)
  for (const [what, v] of [['h1 tx to h2', tx12], ['h1 rx from h2', rx12], ['h2 rx from h1', rx21]] as const) {
    assert.ok(v >= PINGS * FRAME_BYTES && v <= PINGS * FRAME_BYTES + SLACK_BYTES, `${what}: +${v} bytes on fastdp, expected ${PINGS * FRAME_BYTES}..${PINGS * FRAME_BYTES + SLACK_BYTES}`)
  }
}

/** Packets counted on h's fastdp flows that output to the tunnel. */
async function tunnelPackets(h: LabHost): Promise<number> {
  const r = await h.ovsOfctl(['-O', 'OpenFlow14', 'dump-flows', 'datapath'], { allowFail: true })
  let n = 0
  for (const line of r.stdout.split('\n')) {
    if (!/set_field:[0-9.]+->tun_dst|load:.*->NXM_NX_TUN_IPV4_DST|tun_dst/.test(line) || !/output:/.test(line)) continue
    const m = /n_packets=(\d+)/.exec(line)
    if (m) n += Number(m[1])
  }
  return n
}

test.run()
