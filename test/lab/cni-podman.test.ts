/**
 * podman (Debian's, CNI backend: libcni, as CRI runtimes use) on two lab hosts, each with its own
 * router and `weave setup-cni`: `podman run --network weave` containers get addresses in the
 * range and ping each other across the hosts; `-p 8080:80` reaches a container from the other host
 * through portmap; removal runs DEL: the address is freed, no veth is left, portmap's DNAT rules go.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {
  BUSYBOX, buildBusyboxTar, createLab, labUnavailableReason, podmanId, podmanUnavailableReason, REPO_ROOT, setupCni, startPodman,
  waitFor, type HostPodman, type Lab, type LabHost,
} from '../lab'
import { skipFile } from '../skip'

function reasonToSkip(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)'
  if (!fs.existsSync(path.join(REPO_ROOT, 'dist', 'cni', 'main.js'))) return 'weave is not built (dist/cni/main.js)'
  return labUnavailableReason({}) ?? podmanUnavailableReason()
}

const INRANGE = /^10\.(3[2-9]|4[0-7])\.\d+\.\d+$/

const why = reasonToSkip()
if (why) skipFile('cni podman lab', why)
else {
  let lab: Lab
  const pm: HostPodman[] = []
  let h1: LabHost, h2: LabHost

  /** The container's address on eth0 (no prefix). */
  async function ipOf(p: HostPodman, name: string): Promise<string> {
    const r = await p.podman(['exec', name, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'])
    const m = /inet (\d+\.\d+\.\d+\.\d+)\/\d+/.exec(r.stdout)
    if (!m) throw new Error(`${name} has no IPv4 address on eth0: ${r.stdout}`)
    return m[1]
  }
  const lease = async (h: LabHost, id: string) => (await h.api(`/ip/${id}`)).text.trim()
  const hasVeth = async (h: LabHost, id: string) => (await h.exec(['ip', 'link', 'show', `vethwepl${id.slice(0, 7)}`], { allowFail: true })).code === 0
  const natRules = async (h: LabHost) => (await h.exec(['iptables', '-w', '-t', 'nat', '-S'])).stdout

  test.before(async () => {
    lab = await createLab({ hosts: 2 })
    ;[h1, h2] = lab.hosts as [LabHost, LabHost]
    const a = await h1.launchWeave(['--ipalloc-init', 'consensus=2'])
    assert.is(a.code, 0, a.stderr)
    const b = await h2.launchWeave(['--ipalloc-init', 'consensus=2', h1.underlayIp])
    assert.is(b.code, 0, b.stderr)
    const tar = await buildBusyboxTar(lab.dir)
    for (const h of [h1, h2]) pm.push(await startPodman(h, await setupCni(h), tar))
  })
  test.after(async () => {
    for (const p of pm) p.removeAllSync() // their DELs run while the routers still answer
    await lab?.teardown()
  })

  test('podman run --network weave: addresses in the range, ping across hosts, clean removal', async () => {
    const [p1, p2] = pm
    await p1.podman(['run', '-d', '--name', 'a', '--network', 'weave', BUSYBOX, 'sleep', '600'])
    await p2.podman(['run', '-d', '--name', 'b', '--network', 'weave', BUSYBOX, 'sleep', '600'])
    const [ipA, ipB] = [await ipOf(p1, 'a'), await ipOf(p2, 'b')]
    assert.match(ipA, INRANGE)
    assert.match(ipB, INRANGE)
    assert.is.not(ipA, ipB)
    const [idA, idB] = [await podmanId(p1, 'a'), await podmanId(p2, 'b')]
    assert.is(await lease(h1, idA), `${ipA}/12`, 'IPAM holds a\'s address under its container id')
    await waitFor('a pings b across the hosts', async () =>
      (await p1.podman(['exec', 'a', 'ping', '-c', '1', '-W', '2', ipB], { allowFail: true })).code === 0, 30_000, 500)
    const back = await p2.podman(['exec', 'b', 'ping', '-c', '1', '-W', '2', ipA], { allowFail: true })
    assert.is(back.code, 0, back.stdout + back.stderr)

    await p1.podman(['rm', '-f', '-t', '0', 'a'])
    await p2.podman(['rm', '-f', '-t', '0', 'b'])
    assert.is(await lease(h1, idA), '', 'a\'s address is freed')
    assert.is(await lease(h2, idB), '', 'b\'s address is freed')
    assert.not.ok(await hasVeth(h1, idA), 'no veth left for a')
    assert.not.ok(await hasVeth(h2, idB), 'no veth left for b')
  })

  test('podman run -p 8080:80 is reached from the other host through portmap; DEL removes the DNAT', async () => {
    const [p1] = pm
    await p1.podman(['run', '-d', '--name', 'web', '--network', 'weave', '-p', '8080:80', BUSYBOX,
      'sh', '-c', 'echo hello-from-pod > /var/www/index.html && exec httpd -f -p 80 -h /var/www'])
    const ip = await ipOf(p1, 'web')
    const id = await podmanId(p1, 'web')
    assert.match(await natRules(h1), new RegExp(`DNAT.*--to-destination ${ip.replace(/\./g, '\\.')}:80`))
    const got = await waitFor('http from h2 to h1:8080', async () => {
      // nc, not busybox wget: the static busybox's wget exits 1 silently inside lab hosts here
      const r = await h2.exec(['sh', '-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 ${h1.underlayIp} 8080`], { allowFail: true })
      return r.code === 0 && r.stdout.includes('200 OK') ? r.stdout : undefined
    }, 20_000, 500)
    assert.match(got, /\r\n\r\nhello-from-pod\n$/)
    await p1.podman(['rm', '-f', '-t', '0', 'web'])
    const after = await natRules(h1)
    assert.not.match(after, new RegExp(ip.replace(/\./g, '\\.')), 'no NAT rule names the removed container')
    assert.not.match(after, /--dport 8080/, 'no DNAT for 8080 left')
    assert.is(await lease(h1, id), '')
    assert.not.ok(await hasVeth(h1, id))
  })
}

test.run()
