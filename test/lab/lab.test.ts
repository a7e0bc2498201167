/**
 * The lab itself: hosts with dockerd + busybox + OVS reach each other over the underlay, faults
 * bite and heal, and teardown (or the sweep, after a killed run) leaves nothing behind.
 */
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { runSync } from './exec'
import { isAlive } from './procs'
import { createLab, delay, FaultUnavailable, labUnavailableReason, presentLabs, sweep, waitFor, withLab, type Lab } from './index'
import { skipFile } from '../skip'

const why = labUnavailableReason({ docker: true, ovs: true })

/** What of the root namespace a lab could change, normalised (counters and timestamps dropped). */
function rootSnapshot() {
  const ipt = runSync(['iptables-save'], { allowFail: true }).stdout.split('\n')
    .filter((l) => !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]/g, '')).join('\n')
  const nft = runSync(['nft', 'list', 'ruleset'], { allowFail: true }).stdout
    .replace(/counter packets \d+ bytes \d+/g, 'counter')
  return { ipt, nft }
}

function leftovers(prefix: string, dir: string): string[] {
  const out: string[] = []
  const ns = fs.existsSync('/var/run/netns') ? fs.readdirSync('/var/run/netns').filter((n) => n.startsWith(prefix + '-')) : []
  if (ns.length) out.push(`namespaces ${ns.join(' ')}`)
  const links = runSync(['ip', '-o', 'link', 'show']).stdout.split('\n')
    .map((l) => /^\d+:\s+([^:@]+)/.exec(l)?.[1]).filter((l): l is string => !!l && (l === prefix + 'br' || new RegExp(`^${prefix}v\\d+$`).test(l)))
  if (links.length) out.push(`links ${links.join(' ')}`)
  const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(dir + '/') || l.includes(`/netns/${prefix}-`))
  if (mounts.length) out.push(`mounts ${mounts.length}`)
  if (fs.existsSync(dir)) out.push(`dir ${dir}`)
  const cg = fs.readdirSync('/sys/fs/cgroup').flatMap((c) => {
    try { return fs.readdirSync(path.join('/sys/fs/cgroup', c)).filter((e) => e.startsWith(prefix + '-')).map((e) => `${c}/${e}`) } catch { return [] }
  })
  if (cg.length) out.push(`cgroups ${cg.join(' ')}`)
  return out
}

const pingAll = async (lab: Lab) => {
  const pairs = lab.hosts.flatMap((a) => lab.hosts.filter((b) => b !== a).map((b) => [a, b] as const))
  return Promise.all(pairs.map(async ([a, b]) => `${a.name}->${b.name}:${await a.ping(b.underlayIp, { count: 1, timeoutS: 2 })}`))
}

if (why) {
  skipFile('lab tests', why)
} else {
  test('3 hosts with dockerd, a busybox container and OVS reach each other; teardown leaves nothing', async () => {
    const before = rootSnapshot()
    const lab = await createLab({ hosts: 3, docker: true, ovs: true })
    let pids: number[] = []
    try {
      assert.match(lab.prefix, new RegExp(`^wlab${process.pid}`))
      const bridgeAddrs = runSync(['ip', '-o', 'addr', 'show', 'dev', lab.bridge]).stdout.trim()
      assert.is(bridgeAddrs, '', 'LAN bridge has no address in the root namespace')
      await Promise.all(lab.hosts.map(async (h) => {
        await h.docker(['run', '-d', '--name', `c-${h.name}`, 'busybox', 'sleep', '600'])
        const running = await h.docker(['inspect', '-f', '{{.State.Running}}', `c-${h.name}`])
        assert.is(running.stdout.trim(), 'true', `${h.name}: container runs`)
        const echo = await h.docker(['exec', `c-${h.name}`, 'echo', `hello-${h.name}`])
        assert.is(echo.stdout.trim(), `hello-${h.name}`)
        const br = await h.ovsVsctl(['list-ports', 'br-phy'])
        assert.is(br.stdout.trim(), 'eth0', `${h.name}: eth0 is in br-phy`)
        const routes = await h.exec(['ip', 'route', 'show', 'default'])
        assert.is(routes.stdout.trim(), '', `${h.name}: no default route`)
      }))
      const pings = await pingAll(lab)
      assert.equal(pings.filter((p) => !p.endsWith(':true')), [], `all pairs ping over the underlay: ${pings.join(' ')}`)

      // a vxlan tunnel through the userspace datapath works over the prepared underlay
      const [h1, h2] = lab.hosts
      for (const [h, me, peer] of [[h1, 1, h2], [h2, 2, h1]] as const) {
        await h.ovsVsctl(['add-br', 'br-t', '--', 'set', 'bridge', 'br-t', 'datapath_type=netdev',
          '--', 'add-port', 'br-t', 'vx0', '--', 'set', 'interface', 'vx0', 'type=vxlan',
          `options:remote_ip=${peer.underlayIp}`, 'options:key=42', 'options:dst_port=4789'])
        await h.exec(['ip', 'addr', 'add', `172.31.9.${me}/24`, 'dev', 'br-t'])
        await h.exec(['ip', 'link', 'set', 'dev', 'br-t', 'mtu', '1450', 'up'])
      }
      assert.ok(await h1.ping('172.31.9.2', { count: 3, timeoutS: 2 }), 'vxlan ping through OVS')
      pids = lab.pids()
      assert.ok(pids.length >= 9, `lab owns its daemons (${pids.length} pids)`)
    } finally {
      const report = await lab.teardown()
      pids = [...new Set([...pids, ...report.pids])]
    }
    assert.equal(pids.filter(isAlive), [], 'no lab process survives')
    assert.equal(leftovers(lab.prefix, lab.dir), [])
    const after = rootSnapshot()
    assert.fixture(after.ipt, before.ipt, 'iptables unchanged')
    assert.fixture(after.nft, before.nft, 'nft ruleset unchanged')
  })

  test('faults: link down/up, partition/heal, loss (plain and OVS hosts)', async () => {
    await withLab({ hosts: 3, ovs: ['h1', 'h2'] }, async (lab) => {
      const [h1, h2, h3] = lab.hosts
      const ok = (a: typeof h1, b: typeof h1) => a.ping(b.underlayIp, { count: 1, timeoutS: 1 })
      assert.ok(await ok(h1, h3), 'h1 -> h3 before faults')

      await lab.linkDown(h3)
      assert.not.ok(await ok(h1, h3), 'link down cuts h3 off')
      await lab.linkUp(h3)
      await waitFor('h3 back after link up', () => ok(h1, h3), 10_000)

      await lab.partition([h1], [h2, h3])
      const cut = await Promise.all([ok(h1, h2), ok(h2, h1), ok(h1, h3), ok(h3, h1), ok(h2, h3)])
      assert.equal(cut, [false, false, false, false, true], 'h1 is cut from h2 (both OVS) and h3; h2-h3 still talk')
      await lab.heal()
      assert.ok(await ok(h1, h2) && await ok(h1, h3), 'healed')

      await lab.netem(h2, { lossPct: 100 })
      assert.not.ok(await ok(h2, h3), '100% loss')
      await lab.netem(h2, {})
      assert.ok(await ok(h2, h3), 'loss cleared')
      try {
        await lab.netem(h3, { delayMs: 50 })
        await lab.netem(h3, {})
      } catch (err) {
        assert.instance(err, FaultUnavailable, 'delay either works or says why it cannot')
      }
    })
  })

  test('sweep removes what a killed run left behind', async () => {
    // a separate process brings a lab up (with dockerd) and is killed with SIGKILL: no teardown runs
    const script = `require(${JSON.stringify(path.join(__dirname, 'lab.js'))}).createLab({ hosts: 2, docker: ['h1'] })
      .then((l) => { console.log('UP ' + l.prefix); setInterval(() => {}, 1000) }, (e) => { console.error(e); process.exit(1) })`
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d) => { out += d })
    const exited = new Promise((r) => child.once('exit', r))
    let prefix: string
    try {
      prefix = await waitFor('the child lab', () => /UP (\S+)/.exec(out)?.[1], 60_000)
      assert.ok(presentLabs().includes(prefix))
    } finally {
      child.kill('SIGKILL')
      await exited
    }
    assert.ok(presentLabs().includes(prefix), 'SIGKILL left the lab behind')
    const reports = sweep()
    assert.ok(reports.some((r) => r.prefix === prefix && r.killed > 0), 'sweep found it and killed its daemons')
    await delay(100)
    assert.equal(leftovers(prefix, `/tmp/${prefix}`), [])
  })

  // the test runs from dist/, so dist/cli/main.js is built with it: no reason to skip
  test('weave launch in a lab host; its API answers over the unix socket; stop', async () => {
    await withLab({ hosts: 2 }, async (lab) => {
      const [h1] = lab.hosts
      const launched = await h1.launchWeave([], {}).catch((err: Error) => err)
      if (launched instanceof Error) assert.unreachable(`weave launch failed: ${launched.message}\nweaver.log:\n${h1.weaverLog()}`)
      const st = await waitFor('weaver API /status', async () => {
        const r = await h1.api('/status').catch(() => undefined)
        return r && r.status === 200 ? r : undefined
      }, 30_000, 200)
      assert.is(st.status, 200)
      const inside = await h1.exec(['busybox', 'wget', '-qO-', 'http://127.0.0.1:6784/status'])
      assert.ok(inside.stdout.length > 0, 'the API also answers on 127.0.0.1:6784 inside the host')
      assert.ok(lab.pids().length > 0, 'the weaver daemon runs in the lab')
      await h1.weave(['stop'])
      await waitFor('weaver stopped', async () => (await h1.api('/status').then(() => false, () => true)), 15_000, 200)
    })
  })
}

test.run()
