/**
 * The shipped systemd unit (scripts/systemd/weave.service): systemd itself accepts it
 * (`systemd-analyze verify`), it starts the daemon entry the build makes, in the foreground
 * (not through `weave launch`'s supervisor), and restarts it unless the exit says a flag is bad.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { spawnSync } from 'node:child_process'
import { skipTest } from '../skip'
import { ROUTER_NODE_FLAGS } from '../../router'

const root = path.resolve(__dirname, '..', '..', '..')
const unit = path.join(root, 'scripts', 'systemd', 'weave.service')
const text = fs.readFileSync(unit, 'utf8')

test('the unit runs the daemon entry in the foreground and restarts it', () => {
  const exec = /^ExecStart=(.*)$/m.exec(text)?.[1] ?? ''
  assert.match(exec, /\/dist\/router\/main\.js /)
  assert.ok(fs.existsSync(path.join(root, 'dist', 'router', 'main.js')), 'the entry the unit names is what the build makes')
  assert.not.match(exec, /supervisor|weave launch/)
  // the same V8 flags as every other start of the router (router/node-flags.ts), before the entry
  const nodeArgs = exec.split(/\s+/).slice(1, exec.split(/\s+/).findIndex((w) => w.endsWith('/main.js')))
  assert.equal(nodeArgs, [...ROUTER_NODE_FLAGS])
  assert.match(text, /^Restart=always$/m)
  assert.match(text, /^RestartPreventExitStatus=2 3$/m)
})

const analyze = spawnSync('systemd-analyze', ['--version'])
if (analyze.error) skipTest('systemd-analyze verify', 'systemd-analyze is not installed')
else {
  test('systemd-analyze verify accepts it', () => {
    const r = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' })
    // A missing /usr/bin/node or /opt/weave-ts on this machine is reported but is not a unit error.
    const problems = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.trim() && !/is not executable|No such file|Command .* is not/.test(l))
    assert.equal(problems, [], problems.join('\n'))
  })
}

test.run()
