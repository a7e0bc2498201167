/**
 * The Docker proxy as a user meets it, on two lab hosts with their own dockerd: `weave launch` on
 * both (the second naming the first), `eval $(weave env)`, then the real docker client.
 * Containers get `ethwe` with an IPAM address before their command runs and reach each other
 * across hosts; WEAVE_CIDR picks subnets or exact addresses (isolated from the default subnet),
 * and a bad one fails before anything exists; leases follow the container (kept over a restart,
 * released on removal); old and new API versions pass through.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as path from 'node:path'
import { createLab, labUnavailableReason, REPO_ROOT, type Lab, type LabHost } from '../lab'
import { skipFile } from '../skip'

const WEAVE = path.join(REPO_ROOT, 'weave')
const skip = labUnavailableReason({ docker: true, ovs: false })
let lab: Lab | undefined
let h: LabHost
let h2: LabHost

/** A shell line in a host (h1 by default), after `eval $(weave env)`, as a user would type it. */
function user(script: string, opts: { allowFail?: boolean; env?: Record<string, string>; host?: LabHost } = {}) {
  const on = opts.host ?? h
  return on.sh(`eval "$(${WEAVE} env)" && ${script}`, { env: on.weaveEnv(opts.env), allowFail: opts.allowFail, timeoutMs: 120_000 })
}

const inet = (out: string) => /inet (\d+\.\d+\.\d+\.\d+\/\d+)/.exec(out)?.[1]

if (skip) {
  skipFile('docker proxy e2e', skip)
} else {
  test.before(async () => {
    lab = await createLab({ hosts: 2, docker: true })
    ;[h, h2] = lab.hosts
    const a = await h.launchWeave(['--ipalloc-init', 'consensus=2'])
    assert.is(a.code, 0, a.stderr)
    const b = await h2.launchWeave(['--ipalloc-init', 'consensus=2', h.underlayIp])
    assert.is(b.code, 0, b.stderr)
  })
  test.after(async () => {
    for (const x of lab?.hosts ?? []) await x.weave(['stop'], { allowFail: true })
    await lab?.teardown()
  })

  test('weave env points DOCKER_HOST at the proxy and remembers the original', async () => {
    const r = await h.weave(['env'])
    assert.match(r.stdout, new RegExp(`^export DOCKER_HOST=unix://${h.weaveEnv().WEAVE_RUN_DIR}/weave.sock ORIG_DOCKER_HOST=${h.dockerHost}\\n$`))
    const c = await h.weave(['config'])
    assert.match(c.stdout, /^-H=unix:\/\/.*weave\.sock\n$/)
  })

  test('docker run: ethwe is up with a 10.32.0.0/12 address when the command starts', async () => {
    const r = await user('docker run --rm busybox sh -c "ip -4 addr show ethwe; cat /sys/class/net/ethwe/operstate"')
    const addr = inet(r.stdout)
    assert.ok(addr, `no address in: ${r.stdout}\n${h.weaverLog(10)}`)
    assert.match(addr, /^10\.(3[2-9]|4[0-7])\.\d+\.\d+\/12$/)
    assert.match(r.stdout, /\bup\b/)
  })

  test('containers started through the proxy on two hosts ping each other by address', async () => {
    await user('docker run -d --name a1 busybox sleep 600')
    await user('docker run -d --name b1 busybox sleep 600', { host: h2 })
    const ipA = inet((await user('docker exec a1 ip -4 addr show ethwe')).stdout)!
    const ipB = inet((await user('docker exec b1 ip -4 addr show ethwe', { host: h2 })).stdout)!
    assert.ok(ipA && ipB && ipA !== ipB, `${ipA} ${ipB}`)
    const ping = await user(`docker exec a1 ping -c 3 -w 20 ${ipB.split('/')[0]}`, { allowFail: true })
    assert.is(ping.code, 0, ping.stdout + ping.stderr + h.weaverLog(10))
    const back = await user(`docker exec b1 ping -c 1 -w 10 ${ipA.split('/')[0]}`, { allowFail: true, host: h2 })
    assert.is(back.code, 0, back.stdout)
  })

  test('WEAVE_CIDR=net:10.32.2.0/24 containers reach each other across hosts, not the default subnet', async () => {
    await user('docker run -d --name s1 -e WEAVE_CIDR=net:10.32.2.0/24 busybox sleep 600')
    await user('docker run -d --name s2 -e WEAVE_CIDR=net:10.32.2.0/24 busybox sleep 600', { host: h2 })
    const s2 = inet((await user('docker exec s2 ip -4 addr show ethwe', { host: h2 })).stdout)!
    assert.match(s2, /^10\.32\.2\.\d+\/24$/)
    const ok = await user(`docker exec s1 ping -c 2 -w 15 ${s2.split('/')[0]}`, { allowFail: true })
    assert.is(ok.code, 0, ok.stdout)
    const b1 = inet((await user('docker exec b1 ip -4 addr show ethwe', { host: h2 })).stdout)!
    const cut = await user(`docker exec s1 ping -c 2 -w 3 ${b1.split('/')[0]}`, { allowFail: true })
    assert.is.not(cut.code, 0, 'the isolated subnet must not reach the default subnet')
    await user('docker rm -f a1 s1')
    await user('docker rm -f b1 s2', { host: h2 })
  })

  test('docker run --rm busybox true succeeds (a command that exits at once)', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await user('docker run --rm busybox true', { allowFail: true })
      assert.is(r.code, 0, r.stderr + h.weaverLog(10))
    }
  })

  test('WEAVE_CIDR=net:10.32.2.0/24 and ip:10.32.2.50/24', async () => {
    const a = await user('docker run --rm -e WEAVE_CIDR=net:10.32.2.0/24 busybox ip -4 addr show ethwe')
    assert.match(inet(a.stdout) ?? '', /^10\.32\.2\.\d+\/24$/)
    const b = await user('docker run --rm -e WEAVE_CIDR=ip:10.32.2.50/24 busybox ip -4 addr show ethwe')
    assert.is(inet(b.stdout), '10.32.2.50/24')
  })

  test('a bad WEAVE_CIDR fails at docker run, quoting the token, and creates nothing', async () => {
    const before = (await user('docker ps -aq')).stdout
    const r = await user('docker run --name badcidr -e "WEAVE_CIDR=net:default bogus/99" busybox true', { allowFail: true })
    assert.is.not(r.code, 0)
    assert.match(r.stderr, /bogus\/99/)
    const after = (await user('docker ps -aq')).stdout
    assert.is(after, before)
  })

  test('a restart keeps the address; docker rm -f releases the lease', async () => {
    const id = (await user('docker run -d --name keeper busybox sleep 600')).stdout.trim()
    const first = inet((await user('docker exec keeper ip -4 addr show ethwe')).stdout)
    assert.ok(first)
    const lease = await h.api(`/ip/${id}`)
    assert.is(lease.status, 200)
    assert.match(lease.text, new RegExp(first.split('/')[0].replace(/\./g, '\\.')))
    await user('docker restart -t 1 keeper')
    const again = inet((await user('docker exec keeper ip -4 addr show ethwe')).stdout)
    assert.is(again, first)
    await user('docker rm -f keeper')
    // Released through the events stream: give it a moment.
    // (The IPAM lookup answers 200 with an empty body once the id holds nothing.)
    let held = first
    for (let i = 0; i < 50 && held; i++) {
      held = (await h.api(`/ip/${id}`)).text.trim()
      if (held) await new Promise((r) => setTimeout(r, 100))
    }
    assert.is(held, '', 'lease released')
  })

  test('an old pinned client (API 1.24) and the newest both work through the proxy', async () => {
    const old = await user('DOCKER_API_VERSION=1.24 docker run --rm busybox ip -4 addr show ethwe')
    assert.ok(inet(old.stdout), old.stdout)
    const v = await user('docker version --format "{{.Server.APIVersion}}"')
    assert.match(v.stdout.trim(), /^1\.\d+$/)
  })

  test('with IPAM not ready, docker run fails saying so, and leaves no container running', async () => {
    // h2 starts over alone, told the cluster has 3 peers: consensus cannot happen.
    const reset = await h2.weave(['reset'], { allowFail: true })
    assert.is(reset.code, 0, reset.stderr)
    const l = await h2.launchWeave(['--ipalloc-init', 'consensus=3', '--attach-timeout', '3'])
    assert.is(l.code, 0, l.stderr)
    const r = await user('docker run --rm busybox true', { allowFail: true, host: h2 })
    assert.is.not(r.code, 0)
    assert.match(r.stderr, /awaiting consensus/)
    assert.is((await user('docker ps -q', { host: h2 })).stdout.trim(), '', 'the container was stopped')
  })

  test('status shows the proxy address; report has it', async () => {
    const s = await h.weave(['status'])
    assert.match(s.stdout, /Service: proxy\n\s+Address: unix:\/\/.*weave\.sock/)
    const r = await h.api('/report')
    assert.ok((r.body as { Proxy: { Addresses: string[] } }).Proxy.Addresses.length >= 1)
  })
}

test.run()
