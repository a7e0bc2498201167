/**
 * Weave parity of the Docker API proxy on one lab host with its own dockerd and the real router
 * (`weave launch --rewrite-inspect`), through the docker client:
 * - `--rewrite-inspect`: `docker inspect` shows the container's ethwe address, prefix and MAC;
 * - `--net=host` and `--net=container:…` containers are left alone: no /w/w, no /w bind, no
 *   ethwe in the namespace they join;
 * - an image committed from a weavewait-wrapped container (entrypoint already /w/w) starts through
 *   the proxy, gets ethwe, and has /w/w once;
 * - `docker ps -a` over many containers (a large answer) and `docker logs`/`docker events` (chunked
 *   streams) through the proxy show exactly what the engine shows.
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

function viaProxy(script: string, opts: { allowFail?: boolean } = {}) {
  return h.sh(`eval "$(${WEAVE} env)" && ${script}`, { env: h.weaveEnv(), allowFail: opts.allowFail, timeoutMs: 120_000 })
}
const direct = (script: string) => h.sh(`docker -H ${h.dockerHost!} ${script}`, { timeoutMs: 120_000 })
const inspect = async (c: string, fmt: string) => (await viaProxy(`docker inspect -f '${fmt}' ${c}`)).stdout.trim()
const hasEthwe = async (c: string) => (await direct(`exec ${c} ip link show ethwe`).catch(() => ({ code: 1 }))).code === 0

if (skip) {
  skipFile('parity proxy e2e', skip)
} else {
  test.before(async () => {
    lab = await createLab({ hosts: 1, docker: true })
    h = lab.hosts[0]
    const a = await h.launchWeave(['--ipalloc-range', '10.2.0.0/16', '--ipalloc-init', 'consensus=1', '--rewrite-inspect'])
    assert.is(a.code, 0, a.stderr)
  })
  test.after(async () => {
    await h?.weave(['stop'], { allowFail: true })
    await lab?.teardown()
  })

  test('--rewrite-inspect: docker inspect shows the ethwe address, prefix and MAC', async () => {
    await viaProxy('docker run -d --name c1 busybox sleep 600')
    const link = (await direct('exec c1 ip -o addr show ethwe')).stdout
    const ip = /inet (\d+\.\d+\.\d+\.\d+)\/(\d+)/.exec(link)
    const mac = /link\/ether ([0-9a-f:]{17})/.exec((await direct('exec c1 ip -o link show ethwe')).stdout)?.[1]
    assert.ok(ip && mac, link)
    assert.is(await inspect('c1', '{{.NetworkSettings.IPAddress}} {{.NetworkSettings.IPPrefixLen}} {{.NetworkSettings.MacAddress}}'), `${ip[1]} ${ip[2]} ${mac}`)
    const engine = (await direct(`inspect -f '{{.NetworkSettings.IPAddress}}' c1`)).stdout.trim()
    assert.is.not(engine, ip[1], 'the engine itself knows nothing of the weave address')
  })

  test('--net=host and --net=container: are left alone (no /w/w, no /w bind, no ethwe)', async () => {
    await viaProxy('docker run -d --name n1 --net=host busybox sleep 600')
    await viaProxy('docker run -d --name c0 -e WEAVE_CIDR=none busybox sleep 600')
    await viaProxy('docker run -d --name n2 --net=container:c0 busybox sleep 600')
    for (const c of ['n1', 'n2']) {
      assert.is(await inspect(c, '{{.Path}} {{join .Args " "}}'), 'sleep 600', `${c}: its command is untouched`)
      assert.not.match(await inspect(c, '{{range .Mounts}}{{.Destination}} {{end}}'), /\/w\b/, `${c}: no weavewait bind`)
      assert.is(await inspect(c, '{{.State.Running}}'), 'true')
    }
    await new Promise((r) => setTimeout(r, 1000)) // an attach by the start event would be done by now
    assert.not.ok(await hasEthwe('c0'), 'the namespace n2 joined got no ethwe')
    assert.not.match((await h.exec(['ip', '-o', 'link', 'show'])).stdout, /: ethwe[:@]/, 'the host namespace (n1) got no ethwe')
    await direct('rm -f n1 n2 c0')
  })

  test('an image committed from a wrapped container starts through the proxy, /w/w once', async () => {
    await viaProxy('docker run -d --name c3 busybox sleep 600')
    assert.is(await inspect('c3', '{{.Path}}'), '/w/w')
    await direct('commit c3 wrapped:1')
    assert.match((await direct(`image inspect -f '{{json .Config.Entrypoint}}' wrapped:1`)).stdout, /\/w\/w/, 'the committed image carries /w/w')
    const r = await viaProxy('docker run -d --name c4 wrapped:1', { allowFail: true })
    assert.is(r.code, 0, r.stderr)
    assert.is(await inspect('c4', '{{.State.Running}}'), 'true')
    assert.is(await inspect('c4', '{{.Path}}'), '/w/w')
    assert.not.match(await inspect('c4', '{{join .Args " "}}'), /\/w\/w/, '/w/w is not doubled')
    assert.ok(await hasEthwe('c4'), 'c4 got ethwe')
    const once = await viaProxy('docker run --rm wrapped:1 sh -c "ip -4 addr show ethwe"', { allowFail: true })
    assert.is(once.code, 0, once.stderr)
    assert.match(once.stdout, /inet 10\.2\./)
    await direct('rm -f c3 c4')
  })

  test('large and chunked answers: docker ps, logs and events through the proxy equal the engine\'s', async () => {
    await h.sh(`for i in $(seq 1 80); do docker -H ${h.dockerHost!} create --name bulk$i --label parity=bulk busybox true >/dev/null; done`, { timeoutMs: 120_000 })
    const ps = 'ps -a --no-trunc --filter label=parity=bulk --format "{{json .}}"'
    const [p1, p2] = [await viaProxy(`docker ${ps}`), await direct(ps)]
    assert.is(p1.stdout.split('\n').filter(Boolean).length, 80)
    assert.is(p1.stdout, p2.stdout, 'docker ps -a through the proxy is the engine\'s')
    assert.ok(p1.stdout.length > 16_000, `a large answer (${p1.stdout.length} bytes)`)
    await direct('run --name big busybox sh -c "yes 0123456789abcdef | head -c 3000000"')
    const sum = 'logs big | md5sum'
    const [l1, l2] = [await viaProxy(`docker ${sum}`), await h.sh(`docker -H ${h.dockerHost!} ${sum}`)]
    assert.is(l1.stdout, l2.stdout, 'docker logs (3 MB, chunked) through the proxy is the engine\'s')
    const until = Math.floor(Date.now() / 1000)
    const ev = `events --since 0 --until ${until} --filter label=parity=bulk --format "{{json .}}"`
    const [e1, e2] = [await viaProxy(`docker ${ev}`), await direct(ev)]
    assert.ok(e1.stdout.split('\n').filter(Boolean).length >= 80, 'the create events')
    assert.is(e1.stdout, e2.stdout, 'docker events (chunked) through the proxy is the engine\'s')
    await h.sh(`docker -H ${h.dockerHost!} rm -f big $(docker -H ${h.dockerHost!} ps -aq --filter label=parity=bulk) >/dev/null`)
  })

  test.run()
}
