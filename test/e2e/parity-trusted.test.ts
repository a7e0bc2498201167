/**
 * Weave parity of `--trusted-subnets` on two lab hosts with their own dockerd, both launched with
 * a password, through the real `weave` command and docker through the proxy:
 * - each trusts the other's underlay address: their sleeve traffic goes in clear (a marker sent
 *   between their containers shows in a capture of the underlay), `weave status` has Weave's
 *   `TrustedSubnets:` line, `weave report` has `Router.TrustedSubnets`, and `weave status
 *   connections` says `unencrypted`;
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
