/**
 * The Docker network plugin on one lab host with its own dockerd, after the basics (plugin.test.ts):
 * what a plugin container gets beyond Docker's own work (the multicast isolation rules, as attach
 * gives; `weave ps` lists it), that `docker run --rm` leaves no veth behind, a SIGKILLed router
 * restarted by `weave launch`'s supervisor (running containers keep working, new ones get fresh
 * addresses, no rule added twice), and the start-up lease GC: a container removed while the
 * router was down gives its address back once the router is up again.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { createLab, labUnavailableReason, REPO_ROOT, waitFor, type Lab, type LabHost } from './index'
import { run } from './exec'
import { skipFile } from '../skip'

const it = suite('docker plugin recovery lab')
const SUBNET = '10.32.0.0/16'
let lab: Lab
let h: LabHost

function why(): string | undefined {
  if (!fs.existsSync(path.join(REPO_ROOT, 'dist', 'cli', 'main.js'))) return 'weave is not built (dist/cli/main.js)'
  return labUnavailableReason({ docker: true })
}

async function launch(): Promise<void> {
  await h.launchWeaveWait(['--ipalloc-init', 'consensus=1', '--ipalloc-default-subnet', SUBNET])
  await waitFor('docker network weave', async () => (await h.docker(['network', 'inspect', 'weave'], { allowFail: true })).code === 0, 30_000, 200)
}

async function ipOf(name: string): Promise<string> {
  return (await h.docker(['inspect', '-f', '{{(index .NetworkSettings.Networks "weave").IPAddress}}', name])).stdout.trim()
}

async function pingFrom(name: string, target: string): Promise<boolean> {
  return (await h.docker(['exec', name, 'ping', '-c', '1', '-W', '1', target], { allowFail: true, timeoutMs: 20_000 })).code === 0
}

/** The container's iptables INPUT rules (`-A ...` lines). */
async function inputRules(name: string): Promise<string[]> {
  const pid = await h.containerPid(name)
  const r = await run(['nsenter', `--net=/proc/${pid}/ns/net`, 'iptables', '-w', '5', '-S', 'INPUT'])
  return r.stdout.split('\n').filter((l) => l.startsWith('-A '))
}

/** The endpoint leases (`docker-ep-…`) IPAM holds: id → addresses. */
async function endpointLeases(): Promise<Map<string, string[]>> {
  const owned = JSON.parse((await h.api('/ip')).text) as { owned: Array<{ containerid: string; addrs: string[] }> }
  return new Map(owned.owned.filter((o) => o.containerid.startsWith('docker-ep-')).map((o) => [o.containerid, o.addrs.map((a) => a.split('/')[0])]))
}

const leasedAddresses = async () => [...(await endpointLeases()).values()].flat().sort()
const routerPid = () => Number(fs.readFileSync(path.join(h.weaveRunDir, 'weaver.pid'), 'utf8').trim())

if (why()) {
  skipFile('docker plugin recovery lab', why()!)
} else {
  it.before(async () => {
    lab = await createLab({ hosts: 1, docker: true })
    h = lab.hosts[0]
    await launch()
  })
  it.after(async () => {
    await lab?.teardown()
  })

  it('docker run --rm on weave leaves no veth and no lease behind', async () => {
    const before = await leasedAddresses()
    for (let i = 0; i < 3; i++) await h.docker(['run', '--rm', '--net=weave', 'busybox', 'true'], { timeoutMs: 60_000 })
    // The pair is removed in the background (the netlink worker), right after DeleteEndpoint's answer.
    await waitFor('endpoint veths removed', async () => !/vethwep[lg]/.test((await h.exec(['ip', '-o', 'link', 'show'])).stdout), 10_000, 100)
    assert.equal(await leasedAddresses(), before)
  })

  it('a plugin container gets the multicast isolation rules and is listed by weave ps', async () => {
    await h.docker(['run', '-d', '--net=weave', '--name', 'm1', 'busybox', 'sleep', '3600'], { timeoutMs: 60_000 })
    await h.docker(['run', '-d', '--net=weave', '--name', 'm2', 'busybox', 'sleep', '3600'], { timeoutMs: 60_000 })
    for (const name of ['m1', 'm2']) {
      // Applied on the container's start event, in the background.
      await waitFor(`${name}: multicast rules`, async () => (await inputRules(name)).length >= 2, 10_000, 100)
      const rules = await inputRules(name)
      assert.equal(rules, [
        '-A INPUT -s 10.32.0.0/16 -d 224.0.0.0/4 -i ethwe0 -j ACCEPT',
        '-A INPUT -d 224.0.0.0/4 -i ethwe0 -j DROP',
      ], `${name}: ${rules.join('; ')}`)
    }
    const ps = (await h.weave(['ps'])).stdout
    for (const name of ['m1', 'm2']) {
      const id = (await h.docker(['inspect', '-f', '{{.Id}}', name])).stdout.trim().slice(0, 12) // Docker's short form, as Weave prints it
      const mac = (await h.docker(['inspect', '-f', '{{(index .NetworkSettings.Networks "weave").MacAddress}}', name])).stdout.trim()
      const line = ps.split('\n').find((l) => l.startsWith(`${id} `))
      assert.ok(line, `weave ps lists ${name} (${id}):\n${ps}`)
      assert.is(line, `${id} ${mac} ${await ipOf(name)}/16`)
    }
  })

  it('SIGKILLed router: the supervisor restarts it; containers keep working, new ones get fresh addresses', async () => {
    const a1 = await ipOf('m1')
    const a2 = await ipOf('m2')
    const rulesBefore = await inputRules('m1')
    const old = routerPid()
    process.kill(old, 'SIGKILL')
    // Container to container on this host is the kernel's bridge alone: no router needed.
    assert.ok(await pingFrom('m1', a2), 'm1 → m2 with the router dead')
    await waitFor('the supervisor restarted the router', async () => {
      const pid = (() => { try { return routerPid() } catch { return 0 } })()
      return pid !== old && pid > 0 && (await h.api('/report').then((r) => r.status === 200, () => false))
    }, 30_000, 200)
    assert.ok(await pingFrom('m1', a2), 'm1 → m2 after the restart')
    await h.docker(['run', '-d', '--net=weave', '--name', 'm3', 'busybox', 'sleep', '3600'], { timeoutMs: 60_000 })
    const a3 = await ipOf('m3')
    assert.match(a3, /^10\.32\./)
    assert.ok(a3 !== a1 && a3 !== a2, `m3 got ${a3}; m1 ${a1}, m2 ${a2}`)
    await waitFor('m3 → m1', () => pingFrom('m3', a1), 5_000, 100)
    assert.equal(await ipOf('m1'), a1)
    // The restarted router went over m1 again (names, ARP): its rules are checked, not added twice.
    await new Promise((res) => setTimeout(res, 1000))
    assert.equal(await inputRules('m1'), rulesBefore)
  })

  it('a container removed while the router is down gives its address back after the restart', async () => {
    const a2 = await ipOf('m2')
    assert.ok((await leasedAddresses()).includes(a2))
    await h.weave(['stop'])
    // Docker's ReleaseAddress reaches only the router-down responder: the lease stays in the ring's state.
    await h.docker(['rm', '-f', 'm2'], { timeoutMs: 60_000 })
    await launch()
    assert.ok((await leasedAddresses()).includes(a2), 'restored from the state file')
    const t0 = Date.now()
    // The GC waits out Docker's 30 s of retries of calls to a missing plugin socket first.
    await waitFor('m2\'s lease released', async () => !(await leasedAddresses()).includes(a2), 60_000, 500)
    console.log(`  m2's lease released ${Date.now() - t0} ms after the relaunch`)
    const live = (await Promise.all(['m1', 'm3'].map(ipOf))).sort()
    assert.equal(await leasedAddresses(), live, 'exactly the running containers\' addresses stay leased')
  })
}

it.run()
