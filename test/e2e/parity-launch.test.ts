/**
 * Weave parity of `weave launch` on one lab host with its own dockerd, through the real `weave`
 * command and the docker client through the proxy:
 * - start-up lease GC: a container removed while the router was down loses its lease when the
 *   router starts again; a running one keeps it;
 * - a relaunch with another `--ipalloc-range` than the saved ring is refused by `weave launch`
 *   itself, saying what to do (`--ipalloc-range OLD` or `weave reset`), and starts nothing;
 * - `--name ::1a` (Weave's short MAC form), `-H tcp://…` and `-H unix://…` proxy listeners (docker
 *   through each gets ethwe), `--no-multicast-route` on launch (proxy containers) and on
 *   `weave attach`;
 * - the supervisor: a SIGKILLed router comes back by itself (resuming its stored targets, with
 *   what `weave connect` added), `weave stop` stops it for good, `--no-restart` leaves it dead;
 *   `--resume` starts with the stored targets, peers named at launch replace them;
 * - `--ipalloc-range ""`: no IPAM; `weave attach` needs an explicit address (and says so), the
 *   proxy attaches only containers with an explicit WEAVE_CIDR;
 * - weave's iptables rules, flushed under the running router, are put back within its re-check;
 *   hairpin mode turned on on the router's bridge port is detected and logged.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { createLab, labUnavailableReason, REPO_ROOT, type Lab, type LabHost } from '../lab'
import { skipFile } from '../skip'
import { ROUTER_NODE_FLAGS } from '../../router'

const WEAVE = path.join(REPO_ROOT, 'weave')
const RANGE = ['--ipalloc-range', '10.2.0.0/16', '--ipalloc-init', 'consensus=1']
const skip = labUnavailableReason({ docker: true, ovs: false })
let lab: Lab | undefined
let h: LabHost

function user(script: string, opts: { allowFail?: boolean } = {}) {
  return h.sh(`eval "$(${WEAVE} env)" && ${script}`, { env: h.weaveEnv(), allowFail: opts.allowFail, timeoutMs: 120_000 })
}
const lease = async (id: string) => (await h.api(`/ip/${id}`)).text.trim()

if (skip) {
  skipFile('parity launch e2e', skip)
} else {
  test.before(async () => {
    lab = await createLab({ hosts: 1, docker: true })
    h = lab.hosts[0]
    const a = await h.launchWeave(RANGE)
    assert.is(a.code, 0, a.stderr)
  })
  test.after(async () => {
    await h?.weave(['stop'], { allowFail: true })
    await lab?.teardown()
  })

  test('start-up lease GC: removed while the router was down → freed; running → kept', async () => {
    const gone = (await user('docker run -d --name gone busybox sleep 600')).stdout.trim()
    const kept = (await user('docker run -d --name kept busybox sleep 600')).stdout.trim()
    assert.match(await lease(gone), /^10\.2\./)
    const keptAddr = await lease(kept)
    assert.match(keptAddr, /^10\.2\./)
    assert.is((await h.weave(['stop'])).code, 0)
    await h.docker(['rm', '-f', 'gone']) // straight to the engine: the router is down
    const a = await h.launchWeave(RANGE)
    assert.is(a.code, 0, a.stderr)
    // The check runs in the background of the start: give it a moment.
    for (let i = 0; i < 50 && (await lease(gone)) !== ''; i++) await new Promise((r) => setTimeout(r, 100))
    assert.is(await lease(gone), '', `the removed container's lease is freed\n${h.weaverLog(10)}`)
    assert.is(await lease(kept), keptAddr, 'the running container keeps its lease')
    assert.match(h.weaverLog(30), /released the leases of 1 container\(s\) removed while the router was down/)
    await user('docker rm -f kept')
  })

  test('relaunch with another --ipalloc-range: weave launch says what to do and starts nothing', async () => {
    assert.is((await h.weave(['stop'])).code, 0)
    const r = await h.weave(['launch', '--ipalloc-range', '10.3.0.0/16', '--ipalloc-init', 'consensus=1'], { allowFail: true })
    const out = r.stdout + r.stderr
    assert.is.not(r.code, 0, out)
    assert.match(out, /is for range 10\.2\.0\.0\/16, but --ipalloc-range is 10\.3\.0\.0\/16/)
    assert.match(out, /--ipalloc-range 10\.2\.0\.0\/16/)
    assert.match(out, /weave reset/)
    assert.not.match(out, /exited \(code/, 'refused before any daemon started')
    const st = await h.weave(['status'], { allowFail: true })
    assert.is.not(st.code, 0, 'no router is running')
    // The advice works: with the old range it starts.
    const ok = await h.launchWeave(RANGE)
    assert.is(ok.code, 0, ok.stderr)
  })

  test('--name ::1a, -H tcp:// and -H unix:// listeners, --no-multicast-route on launch and attach', async () => {
    assert.is((await h.weave(['reset'])).code, 0)
    const extra = path.join(h.dir, 'extra.sock')
    const l = await h.launchWeave([...RANGE, '--name', '::1a', '-H', 'tcp://127.0.0.1:12375', '-H', `unix://${extra}`, '--no-multicast-route'])
    assert.is(l.code, 0, l.stderr)
    assert.is(l.stdout.trim(), '00:00:00:00:00:1a', 'launch prints the peer name')
    const rep = (await h.api('/report')).body as { Daemon: { PeerName: string } }
    assert.is(rep.Daemon.PeerName, '00:00:00:00:00:1a')
    const viaTcp = await h.sh('docker -H tcp://127.0.0.1:12375 run --rm busybox sh -c "ip -4 addr show ethwe; ip route"', { timeoutMs: 120_000 })
    assert.match(viaTcp.stdout, /inet 10\.2\./, viaTcp.stdout)
    assert.not.match(viaTcp.stdout, /224\.0\.0\.0\/4/, '--no-multicast-route: no multicast route in proxy containers')
    const viaUnix = await h.sh(`docker -H unix://${extra} run --rm busybox ip -4 addr show ethwe`, { timeoutMs: 120_000 })
    assert.match(viaUnix.stdout, /inet 10\.2\./, viaUnix.stdout)
    // weave attach: the multicast route unless told otherwise.
    await h.docker(['run', '-d', '--name', 'm1', 'busybox', 'sleep', '600'])
    await h.docker(['run', '-d', '--name', 'm2', 'busybox', 'sleep', '600'])
    assert.is((await h.weave(['attach', 'm1'])).code, 0)
    assert.is((await h.weave(['attach', '--no-multicast-route', 'm2'])).code, 0)
    assert.match((await h.docker(['exec', 'm1', 'ip', 'route'])).stdout, /224\.0\.0\.0\/4 dev ethwe/)
    const r2 = (await h.docker(['exec', 'm2', 'ip', 'route'])).stdout
    assert.match(r2, /dev ethwe/)
    assert.not.match(r2, /224\.0\.0\.0\/4/)
    await h.docker(['rm', '-f', 'm1', 'm2'])
  })

  const daemonPid = async () => ((await h.api('/report').catch(() => undefined))?.body as { Daemon?: { Pid?: number } } | undefined)?.Daemon?.Pid
  const targets = async () => (await h.api('/status/targets')).text.trim().split('\n').filter(Boolean).sort()
  const waitFor = async (what: string, fn: () => Promise<boolean>, ms = 30_000) => {
    const until = Date.now() + ms
    while (!(await fn())) {
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}\n${h.weaverLog(20)}`)
      await new Promise((r) => setTimeout(r, 200))
    }
  }
  const supervisorPid = () => { try { return Number(fs.readFileSync(path.join(h.weaveRunDir, 'supervisor.pid'), 'utf8')) } catch { return undefined } }
  const argv = (pid: number) => fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
  const alive = (pid: number) => { try { process.kill(pid, 0); return !/\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')) } catch { return false } }

  test('supervisor: SIGKILLed router comes back with its targets; weave stop ends it; --no-restart stays dead; --resume', async () => {
    assert.is((await h.weave(['reset'])).code, 0) // the last test named this peer ::1a
    const l = await h.launchWeave([...RANGE, '192.168.250.98'])
    assert.is(l.code, 0, l.stderr)
    assert.equal(await targets(), ['192.168.250.98:6783'], 'peers named at launch replace the stored ones')
    assert.is((await h.weave(['connect', '192.168.250.97'])).code, 0)
    const first = (await daemonPid())!
    assert.equal(argv(first).slice(1, 1 + ROUTER_NODE_FLAGS.length), [...ROUTER_NODE_FLAGS], 'the launched router has the V8 flags')
    const sup = supervisorPid()!
    assert.ok(sup && alive(sup), 'a supervisor runs')
    process.kill(first, 'SIGKILL')
    await waitFor('the router to come back', async () => { const p = await daemonPid(); return p !== undefined && p !== first })
    assert.equal(await targets(), ['192.168.250.97:6783', '192.168.250.98:6783'], 'the restart resumes the stored targets')
    assert.match(h.weaverLog(40), /\[supervisor\] the weave router exited \(signal SIGKILL\); restarting it/)
    // weave stop: stays down.
    const second = (await daemonPid())!
    // both starts of the router carry its V8 flags (router/node-flags.ts)
    assert.equal(argv(second).slice(1, 1 + ROUTER_NODE_FLAGS.length), [...ROUTER_NODE_FLAGS], 'the restarted router has the V8 flags')
    assert.is((await h.weave(['stop'])).code, 0)
    assert.not.ok(alive(second) || alive(sup), 'router and supervisor are gone')
    await new Promise((r) => setTimeout(r, 2500))
    assert.is(await daemonPid(), undefined, 'nothing restarted it after weave stop')
    // --resume: the stored targets; a named peer list replaces them.
    assert.is((await h.launchWeave([...RANGE, '--resume'])).code, 0)
    assert.equal(await targets(), ['192.168.250.97:6783', '192.168.250.98:6783'])
    assert.is((await h.weave(['stop'])).code, 0)
    // --no-restart: no supervisor, a killed router stays dead, and the next launch still works.
    assert.is((await h.launchWeave([...RANGE, '--no-restart', '192.168.250.96'])).code, 0)
    assert.equal(await targets(), ['192.168.250.96:6783'])
    assert.is(supervisorPid() !== undefined && alive(supervisorPid()!), false, 'no supervisor with --no-restart')
    process.kill((await daemonPid())!, 'SIGKILL')
    await new Promise((r) => setTimeout(r, 2500))
    assert.is(await daemonPid(), undefined, '--no-restart: it stays dead')
    const again = await h.launchWeave(RANGE)
    assert.is(again.code, 0, again.stderr)
  })

  test('--ipalloc-range "": explicit addresses only, and a clear error for the rest', async () => {
    assert.is((await h.weave(['reset'])).code, 0)
    const l = await h.launchWeave(['--ipalloc-range', ''])
    assert.is(l.code, 0, l.stderr)
    assert.match((await h.weave(['status'])).stdout, /Status: off \(--ipalloc-range ""\)/)
    await h.docker(['run', '-d', '--name', 'n1', 'busybox', 'sleep', '600'])
    const auto = await h.weave(['attach', 'n1'], { allowFail: true })
    assert.is.not(auto.code, 0)
    assert.match(auto.stderr, /IP allocation is off.*explicit address/)
    const ok = await h.weave(['attach', '10.9.1.5/24', 'n1'])
    assert.is(ok.stdout.trim(), '10.9.1.5')
    assert.match((await h.docker(['exec', 'n1', 'ip', '-4', 'addr', 'show', 'ethwe'])).stdout, /inet 10\.9\.1\.5\/24/)
    const plain = await user('docker run --rm busybox sh -c "ip link show ethwe || echo no-ethwe"')
    assert.match(plain.stdout, /no-ethwe/, 'no WEAVE_CIDR: left alone')
    const given = await user('docker run --rm -e WEAVE_CIDR=ip:10.9.1.6/24 busybox ip -4 addr show ethwe')
    assert.match(given.stdout, /inet 10\.9\.1\.6\/24/)
    await h.docker(['rm', '-f', 'n1'])
  })

  test('iptables: flushed rules are put back by the running router (re-checked every 10 s); hairpin on vethwe-bridge is logged', async () => {
    const rules = async () => (await h.exec(['iptables', '-S'])).stdout + (await h.exec(['iptables', '-t', 'nat', '-S'])).stdout
    assert.match(await rules(), /-A FORWARD -j WEAVE-FORWARD/)
    await h.exec(['iptables', '-F', 'FORWARD'])
    await h.exec(['iptables', '-F', 'WEAVE-FORWARD'])
    await h.exec(['iptables', '-t', 'nat', '-F', 'POSTROUTING'])
    assert.not.match(await rules(), /-A FORWARD -j WEAVE-FORWARD/)
    await waitFor('the rules to come back', async () => {
      const r = await rules()
      return /-A FORWARD -j WEAVE-FORWARD/.test(r) && /-A POSTROUTING -j WEAVE/.test(r) && /-A WEAVE-FORWARD /.test(r)
    }, 25_000)
    assert.match(h.weaverLog(20), /iptables: \d+ of weave's chains\/rules had gone/)
    await h.exec(['ip', 'link', 'set', 'vethwe-bridge', 'type', 'bridge_slave', 'hairpin', 'on'])
    await waitFor('the hairpin warning', async () => /hairpin mode is on on the bridge port vethwe-bridge/.test(h.weaverLog(20)), 25_000)
    await h.exec(['ip', 'link', 'set', 'vethwe-bridge', 'type', 'bridge_slave', 'hairpin', 'off'])
  })
}

test.run()
