/**
 * Sleeve end to end with real daemons: three lab hosts, h1 and h2 with dockerd (containers
 * attached by name through the Docker API), h3 with plain network namespaces. Everything runs
 * inside lab namespaces (underlay 192.168.250.0/24, overlay 10.32.0.0/12) and is removed after.
 *
 *  - containers on all hosts ping each other over ethwe; a 64 MiB TCP transfer arrives intact
 *  - relay: with h1 and h3 partitioned, their containers still reach each other through h2
 *  - isolation: net:10.32.2.0/24 containers reach each other, not the default subnet
 *  - encryption: with --password a capture on the underlay has no plaintext of a known payload;
 *    without, it has
 *  - bad input: junk datagrams at 6783 are dropped and counted, traffic continues
 *  - weave reset leaves no link, address or iptables rule of ours
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { withLab, labUnavailableReason, waitFor, delay, type Lab, type LabHost } from './index'
import { ExtraNamespaces, weaveAttach } from './namespaces'
import { skipFile } from '../skip'
import { sleeveCiphers } from '../../router/overlay'

const run = promisify(execFile)
const reason = labUnavailableReason({ docker: true })
const RANGE = ['--ipalloc-range', '10.32.0.0/12', '--ipalloc-default-subnet', '10.32.0.0/24', '--ipalloc-init', 'consensus=3']
const KNOWN = 'weave-sleeve-known-payload-5f3a9c'

/** Plain namespaces used as containers, deleted in finally. */
const extraNs = new ExtraNamespaces()

/** An endpoint on the overlay: a Docker container in a docker host or a plain namespace. */
interface Endpoint { host: LabHost; docker?: string; ns?: string; ip: string }

function inEndpoint(e: Endpoint, argv: string[], timeoutMs = 30_000) {
  if (e.docker) return e.host.docker(['exec', e.docker, ...argv], { allowFail: true, timeoutMs })
  return run('ip', ['netns', 'exec', e.ns!, ...argv], { timeout: timeoutMs, maxBuffer: 1 << 24 })
    .then((r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }), (err) => ({ code: 1, stdout: String(err.stdout ?? ''), stderr: String(err.stderr ?? err.message) }))
}

async function ping(from: Endpoint, to: string, tries = 1): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    const r = await inEndpoint(from, ['busybox', 'ping', '-c', '1', '-W', '1', to])
    if (r.code === 0) return true
  }
  return false
}

const attach = (h: LabHost, target: string, addrs: string[] = []) => weaveAttach(h, target, addrs)

/** Launches h1, then h2 and h3 naming h1; throws unless every daemon runs the mesh and sleeve. */
async function launchAll(lab: Lab, extra: string[] = []): Promise<void> {
  const [h1, h2, h3] = lab.hosts
  for (const [h, peers] of [[h1, []], [h2, [h1.underlayIp]], [h3, [h1.underlayIp]]] as Array<[LabHost, string[]]>) {
    const r = await h.launchWeave([...RANGE, ...extra, ...peers], {})
    if (r.code !== 0) throw new Error(`${h.name}: launch failed: ${r.stderr}\n${h.weaverLog()}`)
    const st = (await h.api('/status')).text
    assert.not.match(st, /no mesh in this daemon/, `${h.name}: the daemon runs no mesh:\n${st}`)
  }
  // every host holds an established sleeve path to both others
  await waitFor('sleeve established everywhere', async () => {
    for (const h of lab.hosts) {
      const s = await h.api('/status/overlay')
      if ((s.text.match(/ established sleeve/g) ?? []).length < 2) return false
    }
    return true
  }, 30_000, 250).catch(async (err) => {
    const views = await Promise.all(lab.hosts.map(async (h) => `${h.name}: ${(await h.api('/status').catch(() => ({ text: '?' }))).text}\n${h.weaverLog(15)}`))
    throw new Error(`${(err as Error).message}\n${views.join('\n')}`)
  })
}

async function stopAll(lab: Lab): Promise<void> {
  for (const h of lab.hosts) await h.weave(['stop'], { allowFail: true })
}

/** sha256 of what a node one-liner sends/receives: server in `to` on port, client in `from`. */
async function transfer(from: Endpoint, to: Endpoint, mib: number): Promise<{ sent: string; received: string; seconds: number }> {
  const server = `const c=require('crypto'),h=c.createHash('sha256');let n=0;const s=require('net').createServer(k=>{k.on('data',d=>{h.update(d);n+=d.length});k.on('end',()=>{console.log(h.digest('hex'),n);process.exit(0)})}).listen(5555,'${to.ip}',()=>console.log('ready'))`
  const client = `const c=require('crypto'),h=c.createHash('sha256');const b=c.randomBytes(1<<20);let i=0;const k=require('net').connect(5555,'${to.ip}',()=>{const w=()=>{while(i<${mib}){h.update(b);i++;if(!k.write(b))return k.once('drain',w)}k.end();console.log(h.digest('hex'))};w()})`
  const srv = to.docker ? undefined : execFile('ip', ['netns', 'exec', to.ns!, 'node', '-e', server], { timeout: 120_000 })
  if (!srv) throw new Error('transfer server must be a plain namespace')
  let out = ''
  srv.stdout!.on('data', (d) => { out += d })
  const done = new Promise<void>((res) => srv.on('exit', () => res()))
  await waitFor('transfer server', () => out.includes('ready'), 10_000)
  const t0 = Date.now()
  const cli = await run('ip', ['netns', 'exec', from.ns!, 'node', '-e', client], { timeout: 120_000 })
  await done
  return { sent: cli.stdout.trim(), received: out.split('\n')[1]?.split(' ')[0] ?? '', seconds: (Date.now() - t0) / 1000 }
}

/** Capture UDP 6783 on h2's underlay while `send` runs; true when KNOWN appears in clear. */
async function captureSees(h2: LabHost, send: () => Promise<unknown>): Promise<boolean> {
  const cap = h2.spawn(['tcpdump', '-i', 'eth0', '-n', '-l', '-A', '-s', '0', 'udp port 6783'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let text = ''
  cap.stdout!.on('data', (d) => { text += d })
  await delay(1000)
  await send()
  await delay(1000)
  cap.kill('SIGTERM')
  await new Promise((r) => cap.on('exit', r))
  return text.includes(KNOWN)
}

/** UDP datagrams with KNOWN from `from` (plain ns) to `to`. */
function sendKnown(from: Endpoint, toIp: string) {
  const js = `const s=require('dgram').createSocket('udp4');let i=0;const t=setInterval(()=>{s.send('${KNOWN}',7777,'${toIp}');if(++i>=5){clearInterval(t);s.close()}},100)`
  return run('ip', ['netns', 'exec', from.ns!, 'node', '-e', js], { timeout: 10_000 })
}

async function leftovers(h: LabHost): Promise<string[]> {
  const out: string[] = []
  const links = (await h.exec(['ip', '-o', 'link', 'show'])).stdout
  for (const l of links.split('\n')) if (/: (weave|vethwe|datapath)/.test(l)) out.push(l.trim())
  const addrs = (await h.exec(['ip', '-o', 'addr', 'show'])).stdout
  for (const l of addrs.split('\n')) if (/ 10\.32\./.test(l)) out.push(l.trim())
  const rules = (await h.exec(['iptables-save'])).stdout
  for (const l of rules.split('\n')) if (/WEAVE/i.test(l)) out.push(l.trim())
  return out
}

if (reason) {
  skipFile('sleeve e2e', reason)
} else {
  test('sleeve between three real daemons: ping, 64 MiB intact, relay, isolation, encryption, reset', async () => {
    await withLab({ hosts: 3, docker: ['h1', 'h2'] }, async (lab) => {
      const [h1, h2, h3] = lab.hosts
      try {
        await launchAll(lab)
        // endpoints: a container on h1 and h2, namespaces on h3 (and one on h2 for the transfer)
        await h1.docker(['run', '-d', '--name', 'c1', 'busybox', 'sleep', '3600'])
        await h2.docker(['run', '-d', '--name', 'c2', 'busybox', 'sleep', '3600'])
        const n3 = await extraNs.add(`${h3.ns}-c3`)
        const n2 = await extraNs.add(`${h2.ns}-n2`)
        const e1: Endpoint = { host: h1, docker: 'c1', ip: await attach(h1, 'c1') }
        const e2: Endpoint = { host: h2, docker: 'c2', ip: await attach(h2, 'c2') }
        const e3: Endpoint = { host: h3, ns: n3, ip: await attach(h3, `/var/run/netns/${n3}`) }
        const en2: Endpoint = { host: h2, ns: n2, ip: await attach(h2, n2) }
        const eps = [e1, e2, e3, en2]
        assert.is(new Set(eps.map((e) => e.ip)).size, 4, `distinct addresses: ${eps.map((e) => e.ip)}`)
        for (const e of eps) assert.match(e.ip, /^10\.32\.0\./)

        // all pairs (the first ping also resolves ARP across hosts)
        for (const a of eps) for (const b of eps) {
          if (a === b) continue
          assert.ok(await ping(a, b.ip, 5), `${a.host.name}/${a.docker ?? a.ns} → ${b.ip}`)
        }
        const ps = await h2.weave(['ps'])
        assert.match(ps.stdout, new RegExp(`${e2.ip}/24`), 'weave ps lists c2')
        const st = await h1.weave(['status'])
        assert.match(st.stdout, /Connection: .* established sleeve mtu=\d+/, 'status shows sleeve and the MTU')

        // 64 MiB between hosts (h2 namespace → h3 namespace), checksum compared
        const t = await transfer(en2, e3, 1024)
        console.log(`  1 GiB h2 → h3 over sleeve in ${t.seconds.toFixed(1)} s`)
        assert.is(t.received, t.sent, 'transfer arrived intact')

        // isolation: two containers in net:10.32.2.0/24 reach each other, not the default subnet
        const i1: Endpoint = { host: h3, ns: await extraNs.add(`${h3.ns}-i3`), ip: '' }
        i1.ip = await attach(h3, i1.ns!, ['net:10.32.2.0/24'])
        const i2: Endpoint = { host: h2, ns: await extraNs.add(`${h2.ns}-i2`), ip: '' }
        i2.ip = await attach(h2, i2.ns!, ['net:10.32.2.0/24'])
        assert.match(i1.ip, /^10\.32\.2\./)
        assert.ok(await ping(i1, i2.ip, 5), 'isolated subnet reaches itself across hosts')
        assert.not.ok(await ping(i1, e3.ip, 2), 'isolated → default subnet fails')
        assert.not.ok(await ping(en2, i1.ip, 2), 'default → isolated subnet fails')

        // plaintext on the underlay without a password
        assert.ok(await captureSees(h2, () => sendKnown(e3, en2.ip)), 'without a password the payload is visible')

        // bad input: garbage, truncated and oversized-count datagrams at h1's 6783 are dropped and counted
        const drops = async () => Object.values(((await h1.api('/report')).body as { Overlay: { Sleeve: { drops: Record<string, number> } } }).Overlay.Sleeve.drops).reduce((a, b) => a + b, 0)
        const before = await drops()
        const junk = `const s=require('dgram').createSocket('udp4');const m=[Buffer.from('garbage'),Buffer.alloc(3),Buffer.from([1,0,0,1,0,2,255,255]),require('crypto').randomBytes(1200)];let i=0;const t=setInterval(()=>{s.send(m[i%4],6783,'${h1.underlayIp}');if(++i>=40){clearInterval(t);s.close()}},5)`
        await h3.exec(['node', '-e', junk])
        await waitFor('junk counted', async () => (await drops()) >= before + 30, 5_000, 100).catch(async (err) => {
          throw new Error(`${(err as Error).message}: ${before} → ${await drops()}: ${JSON.stringify(((await h1.api('/report')).body as { Overlay: unknown }).Overlay)}`)
        })
        assert.ok(await ping(e3, e1.ip, 3), 'traffic continues after junk')

        // relay: cut h1 ⇄ h3; c1 still reaches h3's namespace through h2
        await lab.partition(['h1'], ['h3'])
        const relayed = await waitFor('relay h1 → h2 → h3', () => ping(e1, e3.ip), 30_000, 200).then(() => true, () => false)
        assert.ok(relayed, `relay through h2\n${(await h2.api('/status/overlay')).text}`)
        const rep = (await h2.api('/report')).body as { Overlay?: { Sleeve?: { relayed?: number } } }
        assert.ok((rep.Overlay?.Sleeve?.relayed ?? 0) > 0, 'h2 counted relayed frames')
        await lab.heal()
      } finally {
        await stopAll(lab)
      }

      // encryption: relaunch with a password
      try {
        await launchAll(lab, ['--password', 'sleeve-e2e-secret'])
        const nA = extraNs.names.find((n) => n.endsWith('-c3'))!
        const nB = extraNs.names.find((n) => n.endsWith('-n2'))!
        // namespaces keep ethwe from before (their veths went with the bridge only if reset ran): re-attach
        const a: Endpoint = { host: h3, ns: nA, ip: await attach(h3, nA) }
        const b: Endpoint = { host: h2, ns: nB, ip: await attach(h2, nB) }
        assert.ok(await ping(a, b.ip, 5), 'encrypted sleeve carries traffic')
        const st = await h3.api('/status/overlay')
        assert.match(st.text, /established sleeve mtu=\d+ encrypted/)
        // the daemons run this same build on this CPU: AES-256-GCM when it runs natively here
        const want = sleeveCiphers()[0]
        assert.match(st.text, new RegExp(`encrypted ${want} `), `negotiated ${want}\n${st.text}`)
        assert.not.ok(await captureSees(h2, () => sendKnown(a, b.ip)), 'with a password no plaintext on the underlay')
      } finally {
        await stopAll(lab)
      }

      // reset leaves nothing of ours
      for (const h of lab.hosts) {
        const r = await h.weave(['reset'], { allowFail: true })
        assert.is(r.code, 0, `${h.name}: weave reset: ${r.stderr}`)
        assert.equal(await leftovers(h), [], `${h.name}: leftovers after reset`)
      }
    }).finally(() => extraNs.removeAll())
  })
}

test.run()
