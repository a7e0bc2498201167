/**
 * The Docker API proxy against a real dockerd in a lab host, driven by the real docker client.
 * The proxy runs in this process between two unix sockets (socket files need no namespace); its
 * onStarted hook stands in for the daemon: it puts a veth `ethwe` with an address into the
 * container, as router/net will, so weavewait lets the command run.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as path from 'node:path'
import { createProxy, installWeavewait, weavewaitBuildPath, type ContainerEvent, type Proxy, type ProxyHooks, type StartedContainer } from '../../proxy'
import { memoryLogger, systemClock } from '../../router/deps'
import { run, type ExecOptions, type ExecResult } from './exec'
import { createLab, labUnavailableReason, waitFor, type Lab, type LabHost } from './index'
import { skipFile } from '../skip'

const why = labUnavailableReason({ docker: true })
// Each lab binds its own installed copy (a rebuild of the shared build file must not race a test).
let weavewaitDir = ''
const it = suite('proxy lab')

let lab: Lab
let host: LabHost
const proxies: Proxy[] = []
let attachCount = 0

/** What the daemon will do on start: a veth pair, one end renamed ethwe inside the container. */
async function attachByHand(h: LabHost, c: StartedContainer, address: string): Promise<void> {
  const n = ++attachCount
  const outer = `vethwepl${n}`, inner = `wetmp${n}`
  await h.exec(['ip', 'link', 'add', outer, 'type', 'veth', 'peer', 'name', inner])
  await h.exec(['ip', 'link', 'set', inner, 'netns', String(c.pid)])
  await h.exec(['ip', 'link', 'set', outer, 'up'])
  const inCtr = (args: string[]) => run(['nsenter', '-t', String(c.pid), '-n', 'ip', ...args])
  await inCtr(['link', 'set', inner, 'name', 'ethwe'])
  await inCtr(['addr', 'add', address, 'dev', 'ethwe'])
  await inCtr(['link', 'set', 'ethwe', 'up'])
}

async function startProxy(name: string, hooks: ProxyHooks): Promise<string> {
  const socketPath = path.join(host.dir, `${name}.sock`)
  const p = createProxy(
    { socketPath, docker: { socketPath: host.dockerHost!.replace(/^unix:\/\//, '') }, weavewaitDir, defaultIpalloc: true, attachTimeoutMs: 20_000 },
    { clock: systemClock(), logger: memoryLogger(), hooks },
  )
  await p.start()
  proxies.push(p)
  return `unix://${socketPath}`
}

let viaProxy: string
let noAttachProxy: string
let failingProxy: string
const started: StartedContainer[] = []
const events: ContainerEvent[] = []

/** The docker client through `hostUrl`. */
function docker(hostUrl: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return run(['docker', '-H', hostUrl, ...args], { timeoutMs: 60_000, ...opts })
}

if (why) {
  skipFile('proxy lab', why, it)
} else {
  it.before(async () => {
    // uvu reports a failed hook only as failed tests; say why.
    try {
      lab = await createLab({ hosts: 1, docker: true })
      host = lab.hosts[0]
      weavewaitDir = installWeavewait(path.join(host.dir, 'weavewait'))
      viaProxy = await startProxy('weave', {
        onStarted: async (c) => { started.push(c); await attachByHand(host, c, `10.32.0.${10 + started.length}/12`) },
        onEvent: (e) => { events.push(e) },
      })
      noAttachProxy = await startProxy('noattach', {})
      failingProxy = await startProxy('failing', { onStarted: async () => { throw new Error('IPAM is not ready') } })
    } catch (err) {
      console.error(`test/lab/proxy: setup failed: ${(err as Error).stack}`)
      throw err
    }
  })

  it.after(async () => {
    for (const p of proxies) await p.stop().catch(() => {})
    await lab?.teardown()
  })

  it('docker version through the proxy, newest and pinned 1.24', async () => {
    const r = await docker(viaProxy, ['version', '--format', '{{.Server.APIVersion}}'])
    assert.match(r.stdout.trim(), /^1\.\d+$/)
    const pinned = await docker(viaProxy, ['version', '--format', '{{.Client.APIVersion}} {{.Server.Version}}'], { env: { DOCKER_API_VERSION: '1.24' } })
    assert.match(pinned.stdout, /^1\.24 /)
    const ps = await docker(viaProxy, ['ps', '-a'], { env: { DOCKER_API_VERSION: '1.24' } })
    assert.match(ps.stdout, 'CONTAINER ID')
  })

  it('docker run --rm echo: /w/w waits for ethwe, which is up when the command starts', async () => {
    const r = await docker(viaProxy, ['run', '--rm', 'busybox', 'sh', '-c', 'ip -o -4 addr show ethwe; cat /sys/class/net/ethwe/operstate; echo hi'])
    assert.match(r.stdout, /ethwe\s+inet 10\.32\.0\.\d+\/12/)
    assert.match(r.stdout, /\nhi\n$/)
    assert.ok(started.length >= 1)
    assert.ok(started[started.length - 1].pid > 0)
    assert.equal(started[started.length - 1].items, [{ kind: 'net-default' }])
  })

  it('a created container has /w/w once and a read-only /w bind', async () => {
    const id = (await docker(viaProxy, ['create', '-e', 'WEAVE_CIDR=ip:10.32.2.50/24', 'busybox', 'echo', 'x'])).stdout.trim()
    try {
      const ep = JSON.parse((await docker(viaProxy, ['inspect', '--format', '{{json .Config.Entrypoint}}', id])).stdout)
      assert.equal(ep, ['/w/w'])
      const mounts = JSON.parse((await docker(viaProxy, ['inspect', '--format', '{{json .Mounts}}', id])).stdout) as Array<{ Destination: string; RW: boolean; Source: string }>
      const w = mounts.find((m) => m.Destination === '/w')
      assert.ok(w, JSON.stringify(mounts))
      assert.is(w.RW, false)
      assert.is(w.Source, weavewaitDir)
      // Starting it passes the claimed address to the hook.
      await docker(viaProxy, ['start', '-a', id])
      assert.equal(started[started.length - 1].items, [{ kind: 'ip', cidr: '10.32.2.50/24' }])
    } finally {
      await host.docker(['rm', '-f', id], { allowFail: true })
    }
  })

  it('docker run -d then docker logs -f streams until the container exits', async () => {
    const id = (await docker(viaProxy, ['run', '-d', 'busybox', 'sh', '-c', 'for i in 1 2 3; do echo line$i; sleep 0.3; done'])).stdout.trim()
    try {
      const r = await docker(viaProxy, ['logs', '-f', id])
      assert.is(r.stdout, 'line1\nline2\nline3\n')
    } finally {
      await host.docker(['rm', '-f', id], { allowFail: true })
    }
  })

  it('hijacked streams: run -i with piped stdin, exec, exec -i, attach', async () => {
    const echo = await docker(viaProxy, ['run', '-i', '--rm', 'busybox', 'cat'], { input: 'through the hijack\nsecond line\n' })
    assert.is(echo.stdout, 'through the hijack\nsecond line\n')
    const id = (await docker(viaProxy, ['run', '-d', 'busybox', 'sleep', '600'])).stdout.trim()
    try {
      assert.is((await docker(viaProxy, ['exec', id, 'echo', 'exec ok'])).stdout, 'exec ok\n')
      assert.is((await docker(viaProxy, ['exec', '-i', id, 'cat'], { input: 'exec stdin\n' })).stdout, 'exec stdin\n')
      const pinned = await docker(viaProxy, ['exec', '-i', id, 'cat'], { input: 'pinned\n', env: { DOCKER_API_VERSION: '1.24' } })
      assert.is(pinned.stdout, 'pinned\n')
    } finally {
      await host.docker(['rm', '-f', id], { allowFail: true })
    }
    // attach to a container that reads stdin (start -ai uses the same hijack)
    const cid = (await docker(viaProxy, ['create', '-i', 'busybox', 'sh', '-c', 'read x; echo got $x'])).stdout.trim()
    try {
      const r = await docker(viaProxy, ['start', '-ai', cid], { input: 'abc\n' })
      assert.is(r.stdout, 'got abc\n')
    } finally {
      await host.docker(['rm', '-f', cid], { allowFail: true })
    }
  })

  it('docker run -it and exec -it through a pty', async () => {
    const tty = (cmd: string, input = '') => run(['script', '-qec', cmd, '/dev/null'], { input, timeoutMs: 60_000 })
    const r = await tty(`docker -H ${viaProxy} run -it --rm busybox sh -c 'tty; echo it-ok'`)
    assert.match(r.stdout, /\/dev\/pts\/\d+\r?\nit-ok/)
    const id = (await docker(viaProxy, ['run', '-d', 'busybox', 'sleep', '600'])).stdout.trim()
    try {
      const e = await tty(`docker -H ${viaProxy} exec -it ${id} sh`, 'echo exec-$((6*7))\nexit\n')
      assert.match(e.stdout, 'exec-42')
    } finally {
      await host.docker(['rm', '-f', id], { allowFail: true })
    }
  })

  it('docker restart re-attaches the new process; docker events streams through the proxy', async () => {
    const since = Math.floor(Date.now() / 1000) - 1
    const id = (await docker(viaProxy, ['run', '-d', 'busybox', 'sleep', '600'])).stdout.trim()
    try {
      const first = started[started.length - 1]
      assert.is(first.id, id)
      await docker(viaProxy, ['restart', '-t', '0', id])
      const second = started[started.length - 1]
      assert.is(second.id, id)
      assert.is.not(second.pid, first.pid)
      const addr = await docker(viaProxy, ['exec', id, 'ip', '-o', '-4', 'addr', 'show', 'ethwe'])
      assert.match(addr.stdout, /inet 10\.32\./)
      const ev = await docker(viaProxy, ['events', '--since', String(since), '--until', String(Math.floor(Date.now() / 1000) + 1), '--filter', `container=${id}`, '--format', '{{.Action}}'])
      const actions = ev.stdout.split('\n').filter(Boolean)
      assert.ok(actions.includes('create') && actions.filter((a) => a === 'start').length === 2 && actions.includes('restart'), actions.join(' '))
    } finally {
      await host.docker(['rm', '-f', id], { allowFail: true })
    }
  })

  it('docker build (streamed request body, streamed progress) passes through', async () => {
    const r = await docker(viaProxy, ['build', '-q', '-t', 'proxybuilt:1', '-'], { input: 'FROM busybox\nRUN echo built > /built\nCMD ["cat", "/built"]\n', env: { DOCKER_BUILDKIT: '0' } })
    assert.match(r.stdout, /sha256:[0-9a-f]{64}/)
    const out = await docker(viaProxy, ['run', '--rm', 'proxybuilt:1'])
    assert.is(out.stdout, 'built\n') // image Cmd taken over under /w/w
  })

  it('DOCKER_API_VERSION=1.24 client runs a container through the proxy', async () => {
    const r = await docker(viaProxy, ['run', '--rm', 'busybox', 'echo', 'pinned run'], { env: { DOCKER_API_VERSION: '1.24' } })
    assert.is(r.stdout, 'pinned run\n')
  })

  it('a bad WEAVE_CIDR fails docker run with the token quoted, creating nothing', async () => {
    const before = (await host.docker(['ps', '-aq'])).stdout
    const r = await docker(viaProxy, ['run', '--rm', '-e', 'WEAVE_CIDR=net:default bogus', 'busybox', 'true'], { allowFail: true })
    assert.is.not(r.code, 0)
    assert.match(r.stderr, '"bogus"')
    assert.is((await host.docker(['ps', '-aq'])).stdout, before)
  })

  it('--net=host and WEAVE_CIDR=none are left alone (no /w/w, no attach)', async () => {
    const n = started.length
    const r = await docker(viaProxy, ['run', '--rm', '-e', 'WEAVE_CIDR=none', 'busybox', 'sh', '-c', 'ls /w 2>&1; ip link show ethwe 2>&1; echo done'])
    assert.match(r.stdout, /done\n$/)
    assert.not.match(r.stdout, /\bw\n/)
    const host2 = await docker(viaProxy, ['run', '--rm', '--net=host', 'busybox', 'echo', 'hostnet'])
    assert.is(host2.stdout, 'hostnet\n')
    assert.is(started.length, n)
  })

  it('without an attach, weavewait times out with its message', async () => {
    const r = await docker(noAttachProxy, ['run', '--rm', '-e', 'WEAVEWAIT_TIMEOUT=1', 'busybox', 'echo', 'never'], { allowFail: true })
    assert.is(r.code, 3)
    assert.match(r.stderr, 'interface ethwe was not up and running with an address after 1 s')
    assert.not.match(r.stdout, 'never')
  })

  it('a failing attach fails docker run with the reason and leaves the container stopped', async () => {
    const r = await docker(failingProxy, ['run', '-d', '--name', 'failing1', 'busybox', 'sleep', '600'], { allowFail: true })
    assert.is.not(r.code, 0)
    assert.match(r.stderr, 'IPAM is not ready')
    const state = await host.docker(['inspect', '--format', '{{.State.Running}}', 'failing1'])
    assert.is(state.stdout.trim(), 'false')
    await host.docker(['rm', '-f', 'failing1'], { allowFail: true })
  })

  it('container events reach the hook (die, destroy)', async () => {
    const id = (await docker(viaProxy, ['run', '-d', 'busybox', 'true'])).stdout.trim()
    await host.docker(['rm', '-f', id])
    await waitFor('die and destroy events', () => events.some((e) => e.id === id && e.action === 'destroy') && events.some((e) => e.id === id && e.action === 'die'), 10_000)
  })
}

it.run()

/** weavewait on its own, in throwaway network namespaces (`unshare -n`: gone when the command ends). */
const ww = suite('weavewait')
const W = weavewaitBuildPath()
const whyRoot = process.getuid?.() === 0 ? undefined : 'needs root for unshare -n'
if (whyRoot) {
  skipFile('weavewait', whyRoot, ww)
} else {
  const inFreshNs = (script: string, env: Record<string, string> = {}) => run(['unshare', '-n', 'sh', '-c', script], { allowFail: true, env: { W, ...env }, timeoutMs: 20_000 })

  ww('no command: exit 2 with a usage message', async () => {
    const r = await run([W], { allowFail: true })
    assert.is(r.code, 2)
    assert.match(r.stderr, 'No command specified')
  })

  ww('no ethwe: exit 3 after the timeout, saying what it waited for', async () => {
    const t0 = Date.now()
    const r = await inFreshNs('"$W" echo never', { WEAVEWAIT_TIMEOUT: '0.3' })
    assert.is(r.code, 3)
    assert.ok(Date.now() - t0 >= 300)
    assert.match(r.stderr, 'interface ethwe was not up and running with an address after 0.3 s')
    assert.is(r.stdout, '')
    assert.is((await run([W, 'true'], { allowFail: true, env: { WEAVEWAIT_TIMEOUT: 'soon' } })).code, 2)
  })

  ww('ethwe up without an address is not enough; once addressed, the command runs with the same env', async () => {
    const r = await inFreshNs([
      // Running needs carrier: the peer end up too.
      'ip link add ethwe type veth peer name peer0 && ip link set peer0 up && ip link set ethwe up',
      '(sleep 0.4; ip addr add 10.32.9.9/12 dev ethwe) &',
      'FOO=bar "$W" sh -c \'echo "$FOO"; ip -o -4 addr show ethwe\'',
    ].join('\n'), { WEAVEWAIT_TIMEOUT: '5' })
    assert.is(r.code, 0, r.stderr)
    assert.match(r.stdout, /^bar\n.*inet 10\.32\.9\.9\/12/)
  })

  ww('a missing command exits 127', async () => {
    const r = await inFreshNs('ip link add ethwe type veth peer name peer0 && ip addr add 10.32.9.9/12 dev ethwe && ip link set peer0 up && ip link set ethwe up && "$W" /nonexistent/cmd')
    assert.is(r.code, 127)
    assert.match(r.stderr, 'cannot run /nonexistent/cmd')
  })
}
ww.run()
