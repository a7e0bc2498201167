/**
 * The kernel vxlan path on a stock kernel (issue 21), in one lab: h1 runs Open vSwitch on the
 * KERNEL datapath, h2 and h3 have no OVS and take the kernel vxlan path. Runs where the kernel has
 * the openvswitch and esp4 modules — the stock-kernel VM (test/lab/vm-kvxlan.test.ts runs this file
 * there) — and skips with the reason elsewhere. A plain namespace per host, attached with the API.
 *
 * Without a password (the mixed mesh):
 *  - h2 ⇄ h3 on the kernel path (`fastdp vxlan`), h1 ⇄ h2 and h1 ⇄ h3 on sleeve with the reason
 *    (the fast paths differ: OVS's and the kernel's vxlan); `weave status` names the `system`
 *    datapath on h1 and vxlan-6784 on h2; every connection's data path is printed
 *  - all pairs of namespaces ping; TCP h1 → h2 (sleeve: OVS host to vxlan host) and h2 → h3 (the
 *    kernel path, which vxlan-6784's tx counter shows: at least half of it, as under emulation
 *    the path may flap to sleeve and back while the heartbeats starve) arrive intact
 *  - TSO/GSO: vxlan-6784 offers TCP segmentation and GSO (ethtool -k), and a capture on it during
 *    the h2 → h3 transfer sees TCP packets larger than the weave MTU: the container's TSO
 *    segments cross the vxlan device whole and are cut only after encapsulation
 * With a password (h2 and h3 relaunched; h1 left out, to spare launches under emulation):
 *  - h2 ⇄ h3 show `fastdp vxlan encrypted esp`; h2 holds our SAs (reqid 22506) and the policy
 *    on UDP 6784
 *  - pings and a TCP transfer h2 → h3 intact; a capture on h3's underlay during it sees ESP from
 *    h2, no vxlan or other UDP 6784 in clear between h2 and h3, and not a known payload sent across
 * Prints `kvxlan-vm: mixed ok`, `kvxlan-vm: esp ok` for the host-side wrapper.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile, spawn } from 'node:child_process'
import * as fs from 'node:fs'
import { promisify } from 'node:util'
import { withLab, labUnavailableReason, ovsDatapathType, offloads, tcpSizesOn, waitFor, delay, type Lab, type LabHost } from './index'
import { ExtraNamespaces, pingFromNamespace } from './namespaces'
import { skipFile } from '../skip'

const run = promisify(execFile)
const RANGE = ['--ipalloc-range', '10.32.0.0/12', '--ipalloc-default-subnet', '10.32.0.0/24']
/** No supervisor: one node process fewer to start per launch (each start costs much under emulation). */
const NO_RESTART = '--no-restart'
const PASSWORD = ['--password', 'kvxlan-vm-lab-secret']
const REQID = 22506 // router/net/xfrm ESP_REQID
const MTU = 1376 // the weave MTU the daemons run with
/** A connection on the kernel vxlan path, as `weave status connections` says it, plain and under ESP. */
const VXLAN = / established unencrypted fastdp vxlan( |$)/
const VXLAN_ESP = / established encrypted fastdp vxlan encrypted esp( |$)/
/** Under emulation everything is 10-50x slower than on the host: waits are generous. */
const SETTLE_MS = 180_000

function unavailable(): string | undefined {
  if (!fs.existsSync('/sys/module/openvswitch')) return 'no openvswitch kernel module here (test/lab/vm-kvxlan.test.ts runs this in the stock-kernel VM)'
  if (!fs.existsSync('/sys/module/esp4')) return 'no esp4 kernel module here (test/lab/vm-kvxlan.test.ts runs this in the stock-kernel VM)'
  return labUnavailableReason({ ovs: true })
}

const extraNs = new ExtraNamespaces()
process.on('exit', () => extraNs.removeAllSync())

interface Endpoint { host: LabHost; ns: string; ip: string }

const count = (text: string, re: RegExp) => (text.match(re) ?? []).length
const esc = (s: string) => s.replace(/\./g, '\\.')

async function views(lab: Lab): Promise<string> {
  const out = await Promise.all(lab.hosts.map(async (h) =>
    `--- ${h.name}\n${(await h.api('/status/overlay').catch(() => ({ text: '?' }))).text}\n${h.weaverLog(20)}`))
  return out.join('\n')
}

/** `from`'s line of `weave status connections` (GET /status/connections) about `to`. */
async function lineTo(from: LabHost, to: LabHost): Promise<string> {
  return (await from.api('/status/connections')).text.split('\n').find((l) => l.includes(`${to.underlayIp}:`)) ?? ''
}

/**
 * Launch `hosts` (each names the ones before it) and wait until every connection has shown `want`.
 * Each at least once, not all at the same moment: under emulation on a loaded machine the daemons'
 * 100 ms heartbeats starve, and the kernel path flaps to sleeve and back for seconds at a time.
 */
async function launchAll(lab: Lab, hosts: LabHost[], extra: string[], want: (from: LabHost, to: LabHost) => RegExp): Promise<void> {
  const init = ['--ipalloc-init', `consensus=${hosts.length}`, NO_RESTART]
  for (const h of hosts) await h.launchWeaveWait([...RANGE, ...init, ...extra, ...hosts.filter((o) => o.index < h.index).map((o) => o.underlayIp)], {}, SETTLE_MS)
  const pairs = hosts.flatMap((a) => hosts.filter((b) => b !== a).map((b) => [a, b] as const))
  const seen = new Set<string>()
  await waitFor('every connection on its data path', async () => {
    await Promise.all(pairs.map(async ([a, b]) => { if (want(a, b).test(await lineTo(a, b))) seen.add(`${a.name}>${b.name}`) }))
    return seen.size === pairs.length
  }, SETTLE_MS, 250).catch(async (err) => { throw new Error(`${(err as Error).message} (seen: ${[...seen].join(' ')})\n${await views(lab)}`) })
  for (const h of hosts) {
    // what `weave status connections` prints (the API's text: each node start costs seconds here)
    console.log(`  ${h.name} connections:\n${(await h.api('/status/connections')).text.trimEnd().replace(/^/gm, '    ')}`)
  }
}

async function attachAll(hosts: LabHost[], tag: string): Promise<Endpoint[]> {
  const eps: Endpoint[] = []
  for (const h of hosts) {
    const ns = await extraNs.add(`${h.ns}-${tag}`)
    // the API `weave attach` calls, without the command's own 30 s limit (slow under emulation)
    const r = await h.api('/attach', { body: { target: `/var/run/netns/${ns}`, addresses: [] }, timeoutMs: SETTLE_MS })
    const addrs = (r.body as { addresses?: string[] }).addresses
    if (r.status !== 200 || !addrs?.length) throw new Error(`${h.name}: attach ${ns}: ${r.status} ${r.text}\n${h.weaverLog()}`)
    eps.push({ host: h, ns, ip: addrs[0].replace(/\/\d+$/, '') })
  }
  return eps
}

async function pingAll(lab: Lab, eps: Endpoint[]): Promise<void> {
  for (const a of eps) for (const b of eps) {
    if (a !== b) assert.ok(await pingFromNamespace(a.ns, b.ip, { tries: 10, waitS: 2 }), `${a.host.name} → ${b.host.name} (${b.ip})\n${await views(lab)}`)
  }
}

async function vxlanBytes(h: LabHost, dir: 'tx' | 'rx'): Promise<number> {
  const j = JSON.parse((await h.exec(['ip', '-s', '-j', 'link', 'show', 'dev', 'vxlan-6784'])).stdout) as Array<{ stats64?: Record<string, { bytes?: number }> }>
  return j[0]?.stats64?.[dir]?.bytes ?? 0
}

/** sha256 of `mib` MiB sent `from` → `to` over TCP (node one-liners in the namespaces). */
async function transfer(from: Endpoint, to: Endpoint, mib: number): Promise<{ sent: string; received: string; seconds: number }> {
  const server = `const c=require('crypto'),h=c.createHash('sha256');require('net').createServer(k=>{k.on('data',d=>h.update(d));k.on('end',()=>{console.log(h.digest('hex'));process.exit(0)})}).listen(5555,'${to.ip}',()=>console.log('ready'))`
  const client = `const c=require('crypto'),h=c.createHash('sha256');const b=c.randomBytes(1<<20);let i=0;const k=require('net').connect(5555,'${to.ip}',()=>{const w=()=>{while(i<${mib}){h.update(b);i++;if(!k.write(b))return k.once('drain',w)}k.end();console.log(h.digest('hex'))};w()})`
  const srv = spawn('ip', ['netns', 'exec', to.ns, 'node', '-e', server], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  srv.stdout.on('data', (d) => { out += d })
  const done = new Promise<void>((res) => srv.on('exit', () => res()))
  try {
    await waitFor('transfer server', () => out.includes('ready'), 60_000, 100)
    const t0 = Date.now()
    const cli = await run('ip', ['netns', 'exec', from.ns, 'node', '-e', client], { timeout: 300_000 })
    await Promise.race([done, delay(60_000)])
    return { sent: cli.stdout.trim(), received: out.split('\n')[1]?.trim() ?? '', seconds: (Date.now() - t0) / 1000 }
  } finally {
    srv.kill('SIGKILL')
  }
}

/** tcpdump's text on `dev` in h while `during` runs (`-A` adds the payloads). */
async function capture<T>(h: LabHost, dev: string, args: string[], during: () => Promise<T>): Promise<{ text: string; result: T }> {
  const p = spawn('ip', ['netns', 'exec', h.ns, 'tcpdump', '-i', dev, '-nn', '-l', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let text = ''
  let err = ''
  p.stdout.on('data', (d) => { text += d })
  p.stderr.on('data', (d) => { err += d })
  try {
    await waitFor('tcpdump listening', () => /listening on/.test(err), 30_000, 50)
    const result = await during()
    await delay(2000)
    return { text, result }
  } finally {
    // (with -c it may have ended already)
    if (p.exitCode === null && p.signalCode === null) {
      const gone = new Promise((r) => p.on('exit', r))
      p.kill('SIGINT')
      await gone
    }
  }
}

/** One UDP datagram with `text` from an endpoint (node, in its namespace). */
async function sendUdp(from: Endpoint, to: string, text: string): Promise<void> {
  const js = `const s=require('dgram').createSocket('udp4');s.send(Buffer.from(${JSON.stringify(text)}),7777,'${to}',()=>s.close())`
  await run('ip', ['netns', 'exec', from.ns, 'node', '-e', js], { timeout: 60_000 })
}

/** The mixed mesh without a password; returns after the checks, daemons still running. */
async function mixed(lab: Lab): Promise<void> {
  const [h1, h2] = lab.hosts
  await launchAll(lab, lab.hosts, [], (a, b) => a === h1 || b === h1
    ? /established unencrypted sleeve .*\(not fastdp: .*the peer's fast path is (kernel vxlan, ours OVS fastdp|OVS fastdp, ours kernel vxlan)/
    : VXLAN)
  const st1 = (await h1.api('/status')).text
  const st2 = (await h2.api('/status')).text
  console.log(`  h1: ${/Fastdp: .*/.exec(st1)?.[0]}\n  h2: ${/Fastdp: .*/.exec(st2)?.[0]}`)
  assert.match(st1, /Fastdp: datapath \(system\)/, `h1 uses OVS's kernel datapath:\n${st1}`)
  assert.match(st2, /Fastdp: vxlan-6784 \(kernel vxlan/, `h2 uses the kernel vxlan path:\n${st2}`)
  assert.match((await h1.ovsAppctl(['dpctl/show'])).stdout, /vxlan_sys_6784/, 'h1 tunnels through the kernel datapath')

  const eps = await attachAll(lab.hosts, 'm')
  const [e1, e2, e3] = eps
  await pingAll(lab, eps)

  // h1 → h2 by sleeve: nothing of it passes h2's vxlan-6784
  const rx2 = await vxlanBytes(h2, 'rx')
  const t12 = await transfer(e1, e2, 16)
  const rx2grew = await vxlanBytes(h2, 'rx') - rx2
  console.log(`  16 MiB h1 (OVS) → h2 (kernel vxlan) by sleeve in ${t12.seconds.toFixed(1)} s; h2 vxlan-6784 rx grew ${rx2grew} bytes`)
  assert.is(t12.received, t12.sent, 'h1 → h2 arrived intact')
  assert.ok(rx2grew < 2 ** 20, `the sleeve, not the kernel path, carried h1 → h2 (vxlan-6784 rx grew ${rx2grew})`)

  // TSO/GSO on the kernel path: the device offers it, and whole TSO segments cross it. Start on
  // the kernel path both ways (it may flap under emulation: the tx counter says how much it took)
  await bothOn(lab, h2, lab.hosts[2], VXLAN)
  const feat = await offloads(h2, 'vxlan-6784')
  console.log(`  h2 ethtool -k vxlan-6784: ${JSON.stringify(feat)}`)
  assert.is(feat['tcp-segmentation-offload'], 'on', 'vxlan-6784 takes TSO segments')
  assert.is(feat['generic-segmentation-offload'], 'on', 'and GSO')
  const tx2 = await vxlanBytes(h2, 'tx')
  const cap = await tcpSizesOn(h2, 'vxlan-6784', 'tcp port 5555', () => transfer(e2, e3, 8))
  const tx2grew = await vxlanBytes(h2, 'tx') - tx2
  const t23 = cap.result
  const big = cap.lengths.filter((n) => n > MTU).length
  console.log(`  ${flaps(h2)} fallbacks on h2 so far; 8 MiB h2 → h3 by the kernel path in ${t23.seconds.toFixed(1)} s; vxlan-6784 tx grew ${(tx2grew / 2 ** 20).toFixed(0)} MiB; ` +
    `captured on it: ${cap.lengths.length} TCP packets, ${big} with more payload than the MTU (largest ${Math.max(0, ...cap.lengths)} bytes)`)
  assert.is(t23.received, t23.sent, 'h2 → h3 arrived intact')
  assert.ok(tx2grew >= 4 * 2 ** 20, `the transfer left through vxlan-6784, at least half of it (tx grew ${tx2grew} bytes)`)
  assert.ok(big > 0, `TSO segments larger than the MTU crossed vxlan-6784 whole:\n${cap.text.slice(0, 2000)}`)
  console.log('kvxlan-vm: mixed ok')
}

/** Until `a` and `b` both show `want` for each other at the same moment. */
async function bothOn(lab: Lab, a: LabHost, b: LabHost, want: RegExp): Promise<void> {
  await waitFor(`${a.name} ⇄ ${b.name} both ${want.source}`, async () => (await Promise.all([lineTo(a, b), lineTo(b, a)])).every((l) => want.test(l)), SETTLE_MS, 100)
    .catch(async (err) => { throw new Error(`${(err as Error).message}\n${await views(lab)}`) })
}

/** How often h's overlay fell from the fast path to sleeve (its log). */
const flaps = (h: LabHost) => count(h.weaverLog(100_000), /: fastdp → sleeve/g)

/** h2 and h3 relaunched with a password: the kernel path under kernel ESP. */
async function encrypted(lab: Lab): Promise<void> {
  const [, h2, h3] = lab.hosts
  await launchAll(lab, [h2, h3], PASSWORD, () => VXLAN_ESP)
  const st = (await h2.exec(['ip', 'xfrm', 'state'])).stdout
  const pol = (await h2.exec(['ip', 'xfrm', 'policy'])).stdout
  assert.ok(count(st, new RegExp(`reqid ${REQID}`, 'g')) >= 2, `h2 holds our SAs:\n${st.replace(/0x[0-9a-f]{40,}/g, '<key>')}`)
  assert.match(pol, /proto udp dport 6784/, `h2's policy on the tunnel port:\n${pol}`)

  const eps = await attachAll([h2, h3], 'e')
  const [e2, e3] = eps
  await pingAll(lab, eps)
  await bothOn(lab, h2, h3, VXLAN_ESP)
  const marker = 'WEAVE-KVXLAN-PLAINTEXT-MARKER-' + 'y'.repeat(32)
  const cap = await capture(h3, 'eth0', ['-A', '-s', '0', `host ${h2.underlayIp} and not tcp port 6783`], async () => {
    for (let i = 0; i < 5; i++) await sendUdp(e2, e3.ip, marker)
    return transfer(e2, e3, 8)
  })
  const esp = count(cap.text, new RegExp(`${esc(h2.underlayIp)} > ${esc(h3.underlayIp)}: ESP\\(spi=0x[0-9a-f]+`, 'g'))
  const clear = cap.text.split('\n').filter((l) => /\.6784: /.test(l) && !/ESP\(/.test(l))
  console.log(`  8 MiB h2 → h3 in ${cap.result.seconds.toFixed(1)} s; capture on h3 eth0: ${esp} ESP packets from h2, ${clear.length} clear UDP 6784, plaintext marker ${cap.text.includes(marker) ? 'SEEN' : 'absent'}`)
  assert.is(cap.result.received, cap.result.sent, 'the transfer arrived intact under ESP')
  assert.ok(esp >= 100, `ESP from h2 on h3's underlay:\n${cap.text.slice(0, 3000)}`)
  assert.equal(clear.slice(0, 5), [], 'no clear vxlan (UDP 6784) between h2 and h3')
  assert.not.ok(cap.text.includes(marker), 'no plaintext of the payload on the underlay')
  console.log('kvxlan-vm: esp ok')
}

const why = unavailable()
if (why) {
  skipFile('kernel vxlan path in the VM', why)
} else {
  test('stock kernel: OVS kernel datapath host and kernel vxlan hosts mixed; TSO through vxlan-6784; then kernel ESP on the kernel path', async () => {
    assert.is(ovsDatapathType(), 'system', 'the lab picks the kernel datapath when the module is loaded')
    await withLab({ hosts: 3, ovs: ['h1'], kernelVxlan: ['h2', 'h3'] }, async (lab) => {
      try {
        await mixed(lab)
        await Promise.all(lab.hosts.map((h) => h.weave(['reset'], { allowFail: true, timeoutMs: SETTLE_MS })))
        await extraNs.removeAll()
        await encrypted(lab)
      } finally {
        await Promise.all(lab.hosts.map((h) => h.weave(['reset'], { allowFail: true, timeoutMs: SETTLE_MS })))
        await extraNs.removeAll()
      }
    })
  })
}

test.run()
