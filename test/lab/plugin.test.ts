/**
 * The Docker network plugin on two lab hosts, each with its own dockerd (which finds the host's
 * weaver at /run/docker/plugins/weave.sock through its own mount namespace, test/lab/docker.ts),
 * driven by the real docker client: containers on `--net=weave` reach each other across hosts,
 * another weave subnet is isolated, `--ip` claims (and a clash fails with weave's message),
 * `docker network rm`, protocol refusals, and the restarts: router restart, dockerd restart with
 * `--restart=always`, docker commands with the router down. One lab for all (a lab with two
 * engines takes a while to build).
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as path from 'node:path'
import { createLab, labUnavailableReason, REPO_ROOT, restartDockerd, waitFor, type Lab, type LabHost } from './index'
import { skipFile } from '../skip'

const it = suite('docker plugin lab')
// The default subnet is a /16 of the range, so other weave subnets (10.40.0.0/16 below) are disjoint from it.
const INIT = ['--ipalloc-init', 'consensus=2', '--ipalloc-default-subnet', '10.32.0.0/16']
let lab: Lab
let h1: LabHost
let h2: LabHost

function why(): string | undefined {
  if (!fs.existsSync(path.join(REPO_ROOT, 'dist', 'cli', 'main.js'))) return 'weave is not built (dist/cli/main.js)'
  return labUnavailableReason({ docker: true })
}

/** One raw call to a host's plugin socket. */
function pluginCall(h: LabHost, urlPath: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: path.join(h.pluginDir, 'weave.sock'), path: urlPath, method: 'POST', headers: { 'Content-Type': 'application/json', ...headers } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { text += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

async function ipOf(h: LabHost, name: string, network = 'weave'): Promise<string> {
  const r = await h.docker(['inspect', '-f', `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, name])
  return r.stdout.trim()
}

/** `ping -c1` from inside container `name` of host `h`; true on a reply. */
async function pingFrom(h: LabHost, name: string, target: string, waitS = 1): Promise<boolean> {
  const r = await h.docker(['exec', name, 'ping', '-c', '1', '-W', String(waitS), target], { allowFail: true, timeoutMs: 20_000 })
  return r.code === 0
}

/**
 * weaveDNS on every address of the host (containers reach it at the host's `weave expose`
 * address, as `weave dns-args` says), forwarding only to the lab host's own loopback.
 */
function dnsFlags(h: LabHost): string[] {
  const conf = path.join(h.dir, 'resolv.conf')
  fs.writeFileSync(conf, 'nameserver 127.0.0.1\n')
  return ['--dns-listen-address', '0.0.0.0:53', '--resolv-conf', conf]
}

async function dnsArgs(h: LabHost): Promise<string[]> {
  const args = (await h.weave(['dns-args'])).stdout.trim().split(/\s+/).filter(Boolean)
  assert.ok(args.includes('--dns-search=weave.local.') || args.includes('weave.local.') || args.some((a) => a.includes('weave.local')), `dns-args: ${args.join(' ')}`)
  return args
}

async function launch(h: LabHost, peers: string[]): Promise<void> {
  await h.launchWeaveWait([...INIT, ...dnsFlags(h), ...peers])
  await waitFor(`${h.name}: docker network weave`, async () => (await h.docker(['network', 'inspect', 'weave'], { allowFail: true })).code === 0, 30_000, 200)
}

if (why()) {
  skipFile('docker plugin lab', why()!)
} else {
  it.before(async () => {
    try {
      lab = await createLab({ hosts: 2, docker: true })
      ;[h1, h2] = lab.hosts as [LabHost, LabHost]
      await launch(h1, [])
      await launch(h2, [h1.underlayIp])
      for (const h of [h1, h2]) await h.weave(['expose'])
    } catch (err) {
      console.error(`test/lab/plugin: setup failed: ${(err as Error).stack}\n${h1?.weaverLog()}`)
      throw err
    }
  })
  it.after(async () => {
    await lab?.teardown()
  })

  it('protocol: Activate names exactly the interfaces; malformed JSON 400, unknown path 404, browser Origin 403', async () => {
    const act = await pluginCall(h1, '/Plugin.Activate', 'null')
    assert.is(act.status, 200)
    assert.equal(act.json, { Implements: ['NetworkDriver', 'IpamDriver'] })
    const caps = await pluginCall(h1, '/NetworkDriver.GetCapabilities', 'null')
    assert.is(caps.json.Scope, 'local')
    const bad = await pluginCall(h1, '/IpamDriver.RequestPool', '{"Pool": ')
    assert.is(bad.status, 400)
    assert.match(String(bad.json.Err), /not JSON/)
    const unknown = await pluginCall(h1, '/NetworkDriver.Frobnicate', '{}')
    assert.is(unknown.status, 404)
    assert.type(unknown.json.Err, 'string')
    const web = await pluginCall(h1, '/IpamDriver.RequestAddress', '{"PoolID":"weave:10.32.0.0/12"}', { Origin: 'http://evil.example' })
    assert.is(web.status, 403)
    const pool = await pluginCall(h1, '/IpamDriver.RequestPool', JSON.stringify({ Pool: '192.168.0.0/16' }))
    assert.is(pool.status, 400)
    assert.match(String(pool.json.Err), /outside weave's allocation range/)
  })

  it('two hosts: --net=weave containers ping each other by name and address within 2 s of start; ethwe0 with MTU and multicast route', async () => {
    await h1.docker(['run', '-d', '--net=weave', ...await dnsArgs(h1), '--name', 'c1', 'busybox', 'sleep', '3600'], { timeoutMs: 60_000 })
    await h2.docker(['run', '-d', '--net=weave', ...await dnsArgs(h2), '--name', 'c2', '--network-alias', 'db', 'busybox', 'sleep', '3600'], { timeoutMs: 60_000 })
    const started = Date.now()
    const [a1, a2] = [await ipOf(h1, 'c1'), await ipOf(h2, 'c2')]
    assert.match(a1, /^10\.32\./)
    assert.match(a2, /^10\.32\./)
    assert.is.not(a1, a2)
    await waitFor('c1 → c2', () => pingFrom(h1, 'c1', a2), 2_000, 0)
    await waitFor('c2 → c1', () => pingFrom(h2, 'c2', a1), 2_000, 0)
    await waitFor('c1 → c2 by name', () => pingFrom(h1, 'c1', 'c2'), 2_000, 0)
    await waitFor('c2 → c1 by name', () => pingFrom(h2, 'c2', 'c1'), 2_000, 0)
    console.log(`  c1 ${a1} ⇄ c2 ${a2}, by address and by name, within ${Date.now() - started} ms of start`)
    // The --network-alias resolves (on the other host too) to c2's address.
    const ns = (await h1.docker(['exec', 'c1', 'nslookup', 'db.weave.local'])).stdout
    assert.match(ns, new RegExp(a2.replace(/\./g, '\\.')))
    const link = (await h1.docker(['exec', 'c1', 'ip', 'link', 'show', 'ethwe0'])).stdout
    assert.match(link, /mtu 1376/)
    const routes = (await h1.docker(['exec', 'c1', 'ip', 'route'])).stdout
    assert.match(routes, /224\.0\.0\.0\/4 dev ethwe0/)
    assert.not.match(routes, /default/) // no gateway: nothing leaves the weave network unless exposed
  })

  it('weave status ipam shows the ranges; docker network inspect shows the addresses', async () => {
    const st = (await h1.weave(['status', 'ipam'])).stdout
    assert.match(st, /\d+ IPs/)
    assert.ok(st.split('\n').filter((l) => /\d/.test(l)).length >= 2, st)
    const insp = JSON.parse((await h1.docker(['network', 'inspect', 'weave'])).stdout)[0]
    assert.is(insp.Driver, 'weave')
    assert.is(insp.IPAM.Driver, 'weave')
    const addrs = Object.values(insp.Containers as Record<string, { IPv4Address: string }>).map((c) => c.IPv4Address)
    assert.ok(addrs.includes(`${await ipOf(h1, 'c1')}/16`), JSON.stringify(addrs))
  })

  it('a second weave subnet is isolated; --ip claims; a clash with another host fails with weave\'s message; network rm once empty', async () => {
    for (const h of [h1, h2]) await h.docker(['network', 'create', '-d', 'weave', '--ipam-driver', 'weave', '--subnet', '10.40.0.0/16', 'iso'])
    await h1.docker(['run', '-d', '--net=iso', '--name', 'c3', 'busybox', 'sleep', '3600'], { timeoutMs: 60_000 })
    const a3 = await ipOf(h1, 'c3', 'iso')
    assert.match(a3, /^10\.40\./)
    const c3net = async () => (await h1.docker(['exec', 'c3', 'sh', '-c', 'ip addr; ip route'])).stdout
    assert.not.ok(await pingFrom(h1, 'c3', await ipOf(h1, 'c1')), `iso container reached c1 ${await ipOf(h1, 'c1')}:\n${await c3net()}`)
    assert.not.ok(await pingFrom(h2, 'c2', a3), 'c2 reached the iso container')
    // --ip: a free address is claimed; the one c3 (on h1) holds is refused on h2, quickly.
    await h2.docker(['run', '-d', '--net=iso', '--ip', '10.40.200.9', '--name', 'c5', 'busybox', 'sleep', '3600'], { timeoutMs: 60_000 })
    assert.is(await ipOf(h2, 'c5', 'iso'), '10.40.200.9')
    const t0 = Date.now()
    const clash = await h2.docker(['run', '--rm', '--net=iso', '--ip', a3, 'busybox', 'true'], { allowFail: true, timeoutMs: 60_000 })
    assert.is.not(clash.code, 0)
    assert.match(clash.stderr, /weave cannot give/)
    console.log(`  clash refused in ${Date.now() - t0} ms: ${clash.stderr.trim().split('\n')[0]}`)
    const busy = await h1.docker(['network', 'rm', 'iso'], { allowFail: true })
    assert.is.not(busy.code, 0)
    await h1.docker(['rm', '-f', 'c3'])
    await h1.docker(['network', 'rm', 'iso'])
  })

  it('router restart: running containers keep addresses and reachability; a new container gets another address', async () => {
    const before = { c1: await ipOf(h1, 'c1'), c2: await ipOf(h2, 'c2'), c5: await ipOf(h2, 'c5', 'iso') }
    await h1.weave(['stop'])
    await launch(h1, [h2.underlayIp])
    assert.is(await ipOf(h1, 'c1'), before.c1)
    assert.match((await h1.docker(['exec', 'c1', 'ip', 'addr', 'show', 'ethwe0'])).stdout, new RegExp(`inet ${before.c1.replace(/\./g, '\\.')}/`))
    await waitFor('c1 → c2 after the restart', () => pingFrom(h1, 'c1', before.c2), 20_000, 200).catch(async (err: Error) => {
      const diag = async (h: LabHost) => `${h.name}: ${(await h.weave(['status', 'connections'], { allowFail: true })).stdout}\n${h.weaverLog(25)}`
      throw new Error(`${err.message}\n${await diag(h1)}\n${await diag(h2)}`)
    })
    // Names too: c1's own (re-registered by the new router) and c2's (learnt again from h2).
    await waitFor('c2 → c1 by name after the restart', () => pingFrom(h2, 'c2', 'c1'), 10_000, 200)
    // h1's new weaveDNS learns h2's names from the mesh's DNS gossip (full state to new neighbours
    // and periodically); give it a gossip period.
    const t0 = Date.now()
    await waitFor('c1 → c2 by name after the restart', () => pingFrom(h1, 'c1', 'c2'), 45_000, 500)
    console.log(`  c2's name resolved on the restarted host after ${Date.now() - t0} ms`)
    await h1.docker(['run', '-d', '--net=weave', '--name', 'c4', 'busybox', 'sleep', '3600'], { timeoutMs: 60_000 })
    const a4 = await ipOf(h1, 'c4')
    assert.ok(a4 && !Object.values(before).includes(a4), `c4 got ${a4}, already held: ${JSON.stringify(before)}`)
    await waitFor('c4 → c2', () => pingFrom(h1, 'c4', before.c2), 5_000, 100)
  })

  it('router down: docker run --net=weave fails within 10 s with a message naming the cause', async () => {
    await h1.weave(['stop'])
    try {
      const t0 = Date.now()
      const r = await h1.docker(['run', '--rm', '--net=weave', 'busybox', 'true'], { allowFail: true, timeoutMs: 60_000 })
      const ms = Date.now() - t0
      console.log(`  with the router down: exit ${r.code} after ${ms} ms: ${r.stderr.trim().split('\n')[0]}`)
      assert.is.not(r.code, 0)
      assert.ok(ms < 10_000, `took ${ms} ms`)
      assert.match(r.stderr, /weave/i)
    } finally {
      await launch(h1, [h2.underlayIp])
    }
  })

  it('dockerd restart: a --restart=always container on weave comes back attached', async () => {
    await h1.docker(['run', '-d', '--restart=always', '--net=weave', '--name', 'r1', 'busybox', 'sleep', '3600'], { timeoutMs: 60_000 })
    const c2 = await ipOf(h2, 'c2')
    await restartDockerd(h1)
    await waitFor('r1 running again', async () => (await h1.docker(['inspect', '-f', '{{.State.Running}}', 'r1'], { allowFail: true })).stdout.trim() === 'true', 60_000, 250)
    const a = await ipOf(h1, 'r1')
    assert.match(a, /^10\./)
    assert.match((await h1.docker(['exec', 'r1', 'ip', 'addr', 'show', 'ethwe0'])).stdout, /inet 10\./)
    await waitFor('r1 → c2 after the dockerd restart', () => pingFrom(h1, 'r1', c2), 5_000, 100)
    await waitFor('c2 → r1 by name after the dockerd restart', () => pingFrom(h2, 'c2', 'r1'), 10_000, 200)
  })
}

it.run()
