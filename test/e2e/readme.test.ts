/**
 * README.md keeps exactly two set-up commands, and they stay true: the first installs, builds and
 * launches the router (here: its launch part, run inside a network namespace with its own state
 * and run dirs, since the install already happened to run this test), the second is the test
 * command package.json defines, which installs missing Debian packages first.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { skipTest } from '../skip'

const root = path.join(__dirname, '..', '..', '..')
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8')

function setupCommands(): string[] {
  const section = readme.split(/^## /m).find((s) => s.startsWith('Set up'))
  assert.ok(section, 'README has a "Set up" section')
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1].trim())
}

test('README has exactly two set-up commands: install+launch, and the tests', () => {
  const cmds = setupCommands()
  assert.is(cmds.length, 2, `found: ${JSON.stringify(cmds)}`)
  assert.not.match(cmds[0], /\n/, 'one line')
  assert.match(cmds[0], /^npm install && \.\/weave launch$/)
  assert.is(cmds[1], 'npm test')
  // each said in one line: the data plane without Open vSwitch, the proxy and the plugin without Docker
  assert.match(readme, /^Without Open vSwitch .*sleeve.*$/m)
  assert.match(readme, /^Without a Docker socket the Docker API proxy is off\.$/m)
  assert.match(readme, /^Without a Docker socket the Docker network plugin is off\.$/m)
})

test('the test command installs missing Debian packages, then runs every layer', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'))
  assert.is(pkg.scripts.test, 'bash scripts/test.sh')
  const script = fs.readFileSync(path.join(root, 'scripts', 'test.sh'), 'utf8')
  assert.match(script, /system-packages\.sh/)
  const pkgs = fs.readFileSync(path.join(root, 'scripts', 'system-packages.sh'), 'utf8')
  for (const p of ['iproute2', 'iptables', 'docker.io', 'openvswitch-switch', 'iperf3', 'busybox-static']) assert.ok(pkgs.includes(p), p)
  assert.ok(pkg.scripts.install && pkg.scripts.prepare, 'npm install builds native parts and TypeScript')
})

if (process.getuid?.() !== 0) {
  skipTest('README launch', 'needs root for a network namespace')
} else {
  test('the launch part works with no Open vSwitch and no Docker: proxy off, router up', () => {
    const launch = setupCommands()[0].split('&&')[1].trim().split(/\s+/)
    const ns = `wreadme${process.pid}`
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-readme-'))
    const env = {
      ...process.env,
      WEAVE_STATE_DIR: path.join(dir, 'state'),
      WEAVE_RUN_DIR: path.join(dir, 'run'),
      DOCKER_HOST: 'unix:///nonexistent/docker.sock', // "no Docker", whatever this machine has
      PATH: '/usr/sbin:/usr/bin:/sbin:/bin', // no ovs-vsctl needed either
    }
    const run = (cmd: string[]) => spawnSync('ip', ['netns', 'exec', ns, ...cmd], { cwd: root, env, encoding: 'utf8', timeout: 90_000 })
    try {
      assert.is(spawnSync('ip', ['netns', 'add', ns]).status, 0)
      spawnSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
      const r = run(launch.map((a) => (a === './weave' ? path.join(root, 'weave') : a)))
      assert.is(r.status, 0, r.stderr)
      assert.match(r.stdout, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}\n$/)
      const s = run([path.join(root, 'weave'), 'status'])
      assert.is(s.status, 0, s.stderr)
      assert.match(s.stdout, /Service: router/)
      assert.match(s.stdout, /Service: proxy\n\s+Status: off/)
      assert.match(s.stdout, /Service: plugin\n\s+Status: off/)
    } finally {
      run([path.join(root, 'weave'), 'stop'])
      spawnSync('ip', ['netns', 'del', ns])
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
}

test.run()
