/**
 * The `weave` command end to end: launch, a refused second launch, status/report over the API,
 * bad commands and flags, stop, restart with the same peer name, recovery after SIGKILL.
 * Runs the real daemon inside a network namespace of its own (never the root namespace).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { skipFile } from '../skip'

const root = path.join(__dirname, '..', '..', '..')
const isRoot = process.getuid?.() === 0
const ns = `wcli${process.pid}`
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-launch-'))
const env = { ...process.env, WEAVE_STATE_DIR: path.join(dir, 'state'), WEAVE_RUN_DIR: path.join(dir, 'run'), DOCKER_HOST: 'unix:///nonexistent/docker.sock' }

function sh(cmd: string[], opts: { env?: NodeJS.ProcessEnv } = {}) {
  const r = spawnSync(cmd[0], cmd.slice(1), { encoding: 'utf8', env: opts.env ?? env, timeout: 90_000 })
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' }
}
/** Run the real `weave` command inside the test namespace. */
const weave = (...args: string[]) => sh(['ip', 'netns', 'exec', ns, path.join(root, 'weave'), ...args])
const pidFile = () => path.join(dir, 'run', 'weaver.pid')
/** Alive and not a zombie (PID 1 here may reap late). */
const alive = (pid: number) => {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return st.slice(st.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return false
  }
}
const daemonPid = () => (fs.existsSync(pidFile()) ? Number(fs.readFileSync(pidFile(), 'utf8')) : undefined)

function teardown() {
  const pid = daemonPid()
  if (pid) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch { /* already gone */ }
  }
  sh(['ip', 'netns', 'del', ns])
  fs.rmSync(dir, { recursive: true, force: true })
}

if (!isRoot) {
  skipFile('launch e2e', 'needs root for network namespaces')
} else {
  test.before(() => {
    const r = sh(['ip', 'netns', 'add', ns])
    assert.is(r.code, 0, r.stderr)
    sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up'])
  })
  test.after(teardown)

  let peerName = ''

  test('launch starts the daemon detached and prints its peer name', () => {
    const r = weave('launch')
    assert.is(r.code, 0, r.stderr)
    peerName = r.stdout.trim()
    assert.match(peerName, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/)
    const pid = daemonPid()
    assert.ok(pid && alive(pid), 'daemon process alive')
    assert.ok(fs.existsSync(path.join(dir, 'run', 'weaver.log')), 'log file written')
  })

  test('a second launch says the router is already running', () => {
    const r = weave('launch')
    assert.is.not(r.code, 0)
    assert.match(r.stderr, /already running \(pid \d+\)/)
  })

  test('status and report come from the running daemon', () => {
    const s = weave('status')
    assert.is(s.code, 0, s.stderr)
    assert.match(s.stdout, /Version: \d+\.\d+\.\d+/)
    assert.match(s.stdout, new RegExp(`Name: ${peerName}\\(`))
    const r = weave('report')
    assert.is(r.code, 0, r.stderr)
    const report = JSON.parse(r.stdout)
    assert.is(report.Daemon.PeerName, peerName)
    assert.is(report.Daemon.Pid, daemonPid())
  })

  test('the API also answers on 127.0.0.1:6784 inside the host', () => {
    const r = sh(['ip', 'netns', 'exec', ns, process.execPath, '-e',
      "require('http').get('http://127.0.0.1:6784/status', r => { let b=''; r.on('data', c => b += c); r.on('end', () => { process.stdout.write(String(r.statusCode) + '\\n' + b) }) })"])
    assert.is(r.code, 0, r.stderr)
    assert.match(r.stdout, /^200\n/)
    assert.match(r.stdout, /Service: router/)
  })

  test('unknown commands, flags and views fail clearly with a non-zero exit', () => {
    const a = weave('frobnicate')
    assert.is(a.code, 2)
    assert.match(a.stderr, /unknown command "frobnicate"/)
    const b = weave('status', '--frob')
    assert.is.not(b.code, 0)
    assert.match(b.stderr, /unknown flag --frob/)
    const c = weave('status', 'nosuchview')
    assert.is.not(c.code, 0)
    assert.match(c.stderr, /unknown status view "nosuchview"/)
  })

  test('help: the overview and one command', () => {
    const a = weave('--help')
    assert.is(a.code, 0)
    for (const c of ['launch', 'stop', 'status', 'report', 'version']) assert.match(a.stdout, new RegExp(`\\n  ${c}\\s`))
    const b = weave('help', 'launch')
    assert.is(b.code, 0)
    assert.match(b.stdout, /--password VALUE/)
    assert.is(weave('help', 'nosuch').code, 2)
  })

  test('env: refuses while the proxy is off; --restore prints the restoring line', () => {
    const a = weave('env')
    assert.is(a.code, 1)
    assert.match(a.stderr, /proxy is not running/)
    assert.is(a.stdout, '')
    const b = sh(['ip', 'netns', 'exec', ns, path.join(root, 'weave'), 'env', '--restore'], { env: { ...env, ORIG_DOCKER_HOST: 'unix:///var/run/docker.sock' } })
    assert.is(b.code, 0)
    assert.is(b.stdout, 'export DOCKER_HOST=unix:///var/run/docker.sock; unset ORIG_DOCKER_HOST\n')
    const c = weave('env', '--restore')
    assert.is(c.code, 0)
    assert.is(c.stdout, '')
    assert.match(c.stderr, /nothing to restore/)
  })

  test('version reports the command and the router', () => {
    const r = weave('version')
    assert.is(r.code, 0)
    assert.match(r.stdout, /weave script \d+\.\d+\.\d+\nweave router \d+\.\d+\.\d+/)
  })

  test('stop ends the daemon cleanly: pid file and socket gone, status says not running', () => {
    const pid = daemonPid()!
    const r = weave('stop')
    assert.is(r.code, 0, r.stderr)
    assert.not.ok(alive(pid), 'process gone')
    assert.not.ok(fs.existsSync(pidFile()), 'pid file removed')
    assert.not.ok(fs.existsSync(path.join(dir, 'run', 'api.sock')), 'socket removed')
    const s = weave('status')
    assert.is(s.code, 1)
    assert.match(s.stderr, /not running/)
    assert.match(fs.readFileSync(path.join(dir, 'run', 'weaver.log'), 'utf8'), /shutting down \(SIGTERM\)/)
  })

  test('a bad launch flag starts nothing', () => {
    const r = weave('launch', '--conn-limit', 'lots')
    assert.is(r.code, 2)
    assert.match(r.stderr, /connLimit: "lots"/)
    assert.is(daemonPid(), undefined)
  })

  test('relaunch keeps the peer name; a SIGKILLed daemon does not block the next launch', () => {
    const a = weave('launch')
    assert.is(a.code, 0, a.stderr)
    assert.is(a.stdout.trim(), peerName)
    process.kill(daemonPid()!, 'SIGKILL')
    spawnSync('sleep', ['0.2'])
    const b = weave('launch')
    assert.is(b.code, 0, b.stderr)
    assert.is(b.stdout.trim(), peerName)
    assert.is(weave('stop').code, 0)
  })
}

test.run()
