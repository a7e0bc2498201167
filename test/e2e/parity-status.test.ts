/**
 * Weave parity of `--trusted-subnets`, `weave status`/`report` fields and `weave ps`, on two lab hosts with their own dockerd, both launched with
 * a password, through the real `weave` command and docker through the proxy:
 * - each trusts the other's underlay address: their sleeve traffic goes in clear (a marker sent
 *   between their containers shows in a capture of the underlay), `weave status` has Weave's
 *   `TrustedSubnets:` line, `weave report` has `Router.TrustedSubnets`, and `weave status
 *   connections` says `unencrypted`;
 * - `weave status` and `weave report` carry every field of Weave 2.8's (its status template and
 *   WeaveStatus JSON: Router/mesh.Status + NetworkRouterStatus, IPAM ipam.Status, DNS
 *   nameserver.Status, Proxy, Plugin), under Weave's names and in its order;
 * - `weave ps` starts with the bridge's `weave:expose MAC [CIDR...]` line (also with nothing
 *   exposed), lists containers by short ID, and `weave ps NAME` / `weave ps weave:expose` only those;
 * - `weave attach 10.2.3.0/24 c` (a subnet's network address) claims that address, as Weave does:
 *   the container has it on ethwe, a neighbour pings it, nobody else can claim it, and after
 *   `docker restart` the same explicit `weave attach` gives it back;
 * - trust must be mutual, as Weave's: once h2 is relaunched without the flag, the same marker is
 *   no longer seen on the wire (sleeve encrypted again) and the connection says `encrypted`.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as path from 'node:path'
import { createLab, labUnavailableReason, REPO_ROOT, type Lab, type LabHost } from '../lab'
import { skipFile } from '../skip'

const WEAVE = path.join(REPO_ROOT, 'weave')
const KNOWN = 'trusted-subnet-marker-6c1f'
const COMMON = ['--password', 'lab-secret', '--ipalloc-range', '10.2.0.0/16', '--ipalloc-init', 'consensus=2']
const skip = labUnavailableReason({ docker: true, ovs: false })
let lab: Lab | undefined
let h1: LabHost
let h2: LabHost

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms))
function user(on: LabHost, script: string, opts: { allowFail?: boolean } = {}) {
  return on.sh(`eval "$(${WEAVE} env)" && ${script}`, { env: on.weaveEnv(), allowFail: opts.allowFail, timeoutMs: 120_000 })
}
const ethweIp = async (on: LabHost, c: string) => /inet (\d+\.\d+\.\d+\.\d+)\//.exec((await user(on, `docker exec ${c} ip -4 addr show ethwe`)).stdout)?.[1]

/** The sleeve connection between the two is up (its UDP heartbeats both ways). */
async function sleeveEstablished(on: LabHost): Promise<string> {
  let last = ''
  for (let i = 0; i < 120; i++) {
    last = (await on.weave(['status', 'connections'], { allowFail: true })).stdout
    if (/established .*sleeve mtu=/.test(last)) return last
    await delay(500)
  }
  throw new Error(`no established sleeve connection on ${on.name}:\n${last}\n${on.weaverLog(20)}`)
}

/** Capture UDP 6783 on h1's underlay while c1 sends the marker to c2; what tcpdump printed. */
async function capture(c2ip: string): Promise<string> {
  const cap = h1.spawn(['tcpdump', '-i', 'eth0', '-n', '-l', '-A', '-s', '0', 'udp port 6783'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let text = ''
  cap.stdout!.on('data', (d) => { text += d })
  await delay(1000)
  // TCP (busybox's nc has no UDP): c2 listens (test 1 starts it), c1 sends the marker a few times
  await user(h1, `docker exec c1 ping -c 1 -W 5 ${c2ip}; for i in 1 2 3; do docker exec c1 sh -c 'echo ${KNOWN} | nc -w 2 ${c2ip} 7777'; done`, { allowFail: true })
  await delay(1000)
  cap.kill('SIGTERM')
  await new Promise((r) => cap.on('exit', r))
  return text
}

if (skip) {
  skipFile('parity trusted-subnets e2e', skip)
} else {
  test.before(async () => {
    lab = await createLab({ hosts: 2, docker: true })
    ;[h1, h2] = lab.hosts
    const a = await h1.launchWeave([...COMMON, '--trusted-subnets', `${h2.underlayIp}/32,192.0.2.0/24`])
    assert.is(a.code, 0, a.stderr)
    const b = await h2.launchWeave([...COMMON, '--trusted-subnets', `${h1.underlayIp}/${h1.prefixLen}`, h1.underlayIp])
    assert.is(b.code, 0, b.stderr)
  })
  test.after(async () => {
    for (const x of lab?.hosts ?? []) await x.weave(['stop'], { allowFail: true })
    await lab?.teardown()
  })

  test('mutual trust: sleeve in clear; status, report and connections show it', async () => {
    await user(h1, 'docker run -d --name c1 busybox sleep 600')
    await user(h2, 'docker run -d --name c2 busybox sleep 600')
    await user(h2, `docker exec -d c2 sh -c 'while true; do nc -l -p 7777 >/dev/null; done'`)
    const c2ip = await ethweIp(h2, 'c2')
    assert.ok(c2ip, 'c2 got an address through the proxy')
    const conns = await sleeveEstablished(h1)
    assert.match(conns, /established unencrypted sleeve mtu=\d+/, conns)
    assert.not.match(conns, /encrypted (aes|chacha)/, conns)

    const st = (await h1.weave(['status'])).stdout
    assert.match(st, new RegExp(`^ TrustedSubnets: ${h2.underlayIp.replace(/\./g, '\\.')}/32, 192\\.0\\.2\\.0/24$`, 'm'), st)
    assert.match(st, /^\s+Encryption: enabled$/m, 'the mesh keeps its password')
    const report = JSON.parse((await h1.weave(['report'])).stdout) as { Router: { TrustedSubnets: string[] } }
    assert.equal(report.Router.TrustedSubnets, [`${h2.underlayIp}/32`, '192.0.2.0/24'])
    const net = h1.underlayIp.split('.').slice(0, 3).join('.')
    assert.match((await h2.weave(['status'])).stdout, new RegExp(`TrustedSubnets: ${net.replace(/\./g, '\\.')}\\.0/${h1.prefixLen}`))

    const seen = await capture(c2ip)
    assert.ok(seen.includes(KNOWN), `the marker crosses the underlay in clear:\n${seen.slice(-2000)}`)
  })

  test('weave status and weave report: Weave\'s fields, names and order', async () => {
    const st = (await h1.weave(['status'])).stdout
    const keys = [...st.matchAll(/^ *([A-Za-z]+): /gm)].map((m) => m[1])
    const at = (k: string, from = 0) => keys.indexOf(k, from)
    // Weave's template order: the router block, then ipam, dns, proxy, plugin
    const order = ['Version', 'Service', 'Protocol', 'Name', 'Encryption', 'PeerDiscovery', 'Targets', 'Connections', 'Peers', 'TrustedSubnets']
    let last = -1
    for (const k of order) { const i = at(k, last + 1); assert.ok(i > last, `${k} after ${order[order.indexOf(k) - 1]}:\n${st}`); last = i }
    assert.match(st, /^ {8}Version: \S+ \(version check update disabled\)$/m)
    assert.match(st, /^ {7}Protocol: weave 1$/m)
    assert.match(st, /^ {4}Connections: 1 \(1 established\)$/m)
    assert.match(st, /^ {10}Peers: 2 \(with 2 established connections\)$/m)
    assert.match(st, /Service: ipam\n {9}Status: ready\n {10}Range: 10\.2\.0\.0\/16\n {2}DefaultSubnet: 10\.2\.0\.0\/16/)
    assert.match(st, /Service: dns\n {9}Domain: weave\.local\.\n(.*\n)*? +Upstream: .*\n {12}TTL: 1\n {8}Entries: \d+/)
    assert.match(st, /Service: proxy\n {8}Address: unix:\/\/\//)
    assert.match(st, /Service: plugin \(legacy\)\n {5}DriverName: weave/)

    const r = JSON.parse((await h1.weave(['report'])).stdout) as Record<string, Record<string, unknown> & { [k: string]: unknown }>
    const has = (o: unknown, names: string[], what: string) => {
      assert.ok(o && typeof o === 'object', `${what} is an object`)
      const missing = names.filter((n) => !(n in (o)))
      assert.equal(missing, [], `${what} lacks ${missing.join(', ')}: ${JSON.stringify(o).slice(0, 400)}`)
    }
    has(r, ['Ready', 'Version', 'VersionCheck', 'Router', 'IPAM', 'DNS', 'Proxy', 'Plugin'], 'report')
    assert.is(r.Ready, true)
    has(r.VersionCheck, ['Enabled', 'Success', 'NewVersion', 'NextCheckAt'], 'VersionCheck')
    const R = r.Router as Record<string, unknown[]> & Record<string, unknown>
    has(R, ['Protocol', 'ProtocolMinVersion', 'ProtocolMaxVersion', 'Encryption', 'PeerDiscovery', 'Name', 'NickName', 'Port', 'Peers',
      'UnicastRoutes', 'BroadcastRoutes', 'Connections', 'TerminationCount', 'Targets', 'OverlayDiagnostics', 'TrustedSubnets',
      'Interface', 'CaptureStats', 'MACs'], 'Router')
    has(R.Peers[0], ['Name', 'NickName', 'UID', 'ShortID', 'Version', 'Connections'], 'Router.Peers[]')
    has((R.Peers[0] as { Connections: unknown[] }).Connections[0], ['Name', 'NickName', 'Address', 'Outbound', 'Established'], 'Router.Peers[].Connections[]')
    has(R.Connections[0], ['Address', 'Outbound', 'State', 'Info', 'Attrs'], 'Router.Connections[]')
    assert.match((R.Connections[0] as { Info: string }).Info, /unencrypted sleeve/)
    has(R.UnicastRoutes[0], ['Dest', 'Via'], 'Router.UnicastRoutes[]')
    has(R.BroadcastRoutes[0], ['Source', 'Via'], 'Router.BroadcastRoutes[]')
    assert.ok(R.MACs.length > 0, 'the sleeve learnt MACs of the containers')
    has(R.MACs[0], ['Mac', 'Name', 'NickName', 'LastSeen'], 'Router.MACs[]')
    const I = r.IPAM as Record<string, unknown[]> & Record<string, unknown>
    has(I, ['Paxos', 'Range', 'RangeNumIPs', 'ActiveIPs', 'DefaultSubnet', 'Entries', 'PendingClaims', 'PendingAllocates'], 'IPAM')
    assert.is(I.RangeNumIPs, 65536)
    has(I.Entries[0], ['Token', 'Size', 'Peer', 'Nickname', 'IsKnownPeer', 'Version'], 'IPAM.Entries[]')
    assert.is((I.Entries as Array<{ Size: number }>).reduce((n, e) => n + e.Size, 0), 65536, 'the entries cover the range')
    has(r.DNS, ['Domain', 'Upstream', 'Address', 'TTL', 'Entries'], 'DNS')
    const dnsEntries = (r.DNS as { Entries: unknown[] }).Entries
    if (dnsEntries.length) has(dnsEntries[0], ['Hostname', 'Origin', 'ContainerID', 'Address', 'Version', 'Tombstone'], 'DNS.Entries[]')
    has(r.Proxy, ['Addresses'], 'Proxy')
    has(r.Plugin, ['DriverName'], 'Plugin')
  })

  test('weave ps: weave:expose first (MAC, then what is exposed), containers by short ID, filters', async () => {
    const c1 = (await h1.docker(['inspect', '-f', '{{.Id}}', 'c1'])).stdout.trim()
    const c1ip = await ethweIp(h1, 'c1')
    const mac = '[0-9a-f]{2}(:[0-9a-f]{2}){5}'
    let ps = (await h1.weave(['ps'])).stdout.trim().split('\n')
    assert.match(ps[0], new RegExp(`^weave:expose ${mac}$`), 'the bridge line without addresses')
    assert.ok(ps.some((l) => new RegExp(`^${c1.slice(0, 12)} ${mac} ${c1ip!.replace(/\./g, '\\.')}/16$`).test(l)), ps.join('\n'))
    const exposed = (await h1.weave(['expose'])).stdout.trim()
    assert.match(exposed, /^10\.2\.\d+\.\d+$/)
    ps = (await h1.weave(['ps'])).stdout.trim().split('\n')
    assert.match(ps[0], new RegExp(`^weave:expose ${mac} ${exposed.replace(/\./g, '\\.')}/16$`), ps.join('\n'))
    assert.equal((await h1.weave(['ps', 'c1'])).stdout.trim().split('\n').map((l) => l.split(' ')[0]), [c1.slice(0, 12)])
    assert.equal((await h1.weave(['ps', 'weave:expose'])).stdout.trim().split('\n').map((l) => l.split(' ')[0]), ['weave:expose'])
    assert.is((await h1.weave(['hide'])).code, 0)
  })

  test('weave attach with a network address claims it (as Weave); re-attach after a restart works', async () => {
    await h1.docker(['run', '-d', '--name', 'c7', 'busybox', 'sleep', '600'])
    await h1.docker(['run', '-d', '--name', 'c9', 'busybox', 'sleep', '600'])
    const c7 = (await h1.docker(['inspect', '-f', '{{.Id}}', 'c7'])).stdout.trim()
    const a = await h1.weave(['attach', '10.2.3.0/24', 'c7'], { allowFail: true })
    assert.is(a.code, 0, a.stderr)
    assert.is(a.stdout.trim(), '10.2.3.0')
    assert.is((await h1.weave(['attach', 'ip:10.2.3.9/24', 'c9'])).code, 0)
    const on = async (c: string) => /inet (\S+)/.exec((await h1.docker(['exec', c, 'ip', '-4', 'addr', 'show', 'ethwe'])).stdout)?.[1]
    assert.is(await on('c7'), '10.2.3.0/24')
    assert.is((await h1.api(`/ip/${c7}`)).text.trim(), '10.2.3.0/24', 'IPAM holds the claim for c7')
    assert.is((await h1.docker(['exec', 'c9', 'ping', '-c', '1', '-W', '5', '10.2.3.0'], { allowFail: true })).code, 0, 'a neighbour reaches it')
    const clash = await user(h1, 'docker run --rm -e WEAVE_CIDR=ip:10.2.3.0/24 busybox true', { allowFail: true })
    assert.is.not(clash.code, 0, 'nobody else can claim it')
    await h1.docker(['restart', '-t', '1', 'c7'])
    const again = await h1.weave(['attach', '10.2.3.0/24', 'c7'], { allowFail: true })
    assert.is(again.code, 0, again.stderr)
    assert.is(await on('c7'), '10.2.3.0/24')
    assert.is((await h1.api(`/ip/${c7}`)).text.trim(), '10.2.3.0/24')
    await h1.docker(['rm', '-f', 'c7', 'c9'])
  })

  test('trust is mutual: h2 without --trusted-subnets → encrypted again', async () => {
    assert.is((await h2.weave(['stop'])).code, 0)
    const b = await h2.launchWeave([...COMMON, h1.underlayIp])
    assert.is(b.code, 0, b.stderr)
    await user(h2, 'docker start c2')
    const c2ip = await ethweIp(h2, 'c2')
    assert.ok(c2ip)
    const conns = await sleeveEstablished(h1)
    assert.match(conns, /established encrypted sleeve mtu=\d+ encrypted (aes-256-gcm|chacha20-poly1305)/, conns)
    assert.match((await h2.weave(['status'])).stdout, /^ TrustedSubnets: none$/m)
    const seen = await capture(c2ip)
    assert.match(seen, /UDP/, 'the capture saw sleeve datagrams')
    assert.not.ok(seen.includes(KNOWN), 'the marker is sealed on the wire')
  })

  test.run()
}
