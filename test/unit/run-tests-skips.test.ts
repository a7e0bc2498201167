// scripts/run-tests.js counts skips: a file using test/skip.ts really runs under uvu here (a child
// node process), and its output goes through the runner's accounting, outside and under CI.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'

interface Counts { passed: number; failed: number; skipped: number; skips: string[]; refused: string[] }
type Account = (out: string, code: number | null, signal: string | null, ci: boolean, allowed?: RegExp[]) => Counts

const ROOT = path.join(__dirname, '..', '..', '..')
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { accountOutput } = require(path.join(ROOT, 'scripts', 'run-tests.js')) as { accountOutput: Account }

/** Runs a tiny uvu file that passes one test and skips what `body` registers; its stdout. */
function runFile(body: string): { out: string; code: number | null } {
  const skip = JSON.stringify(path.join(ROOT, 'dist', 'test', 'skip.js'))
  const src = `const { test, suite } = require('uvu'); const { skipFile, skipTest } = require(${skip});
    test('passes', () => {}); ${body}; test.run()`
  const r = spawnSync(process.execPath, ['-e', src], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 })
  return { out: r.stdout, code: r.status }
}

test('a skip is counted and listed with its reason; the file still passes outside CI', () => {
  const { out, code } = runFile(`skipFile('thing lab', 'needs root (network namespaces)')`)
  assert.is(code, 0, out)
  const c = accountOutput(out, code, null, false)
  assert.equal({ passed: c.passed, failed: c.failed, skipped: c.skipped }, { passed: 1, failed: 0, skipped: 1 })
  assert.equal(c.skips, ['thing lab: needs root (network namespaces)'])
  assert.equal(c.refused, [])
})

test('under CI a skip not on the allow-list is a failure; an allowed one stays a skip', () => {
  const { out, code } = runFile(`skipTest('a', 'no foo here'); skipTest('b', 'no bar module here')`)
  const c = accountOutput(out, code, null, true, [/^b: no bar module/])
  assert.equal({ passed: c.passed, failed: c.failed, skipped: c.skipped }, { passed: 1, failed: 1, skipped: 1 })
  assert.equal(c.refused, ['a: no foo here'])
})

test('a skip on a named suite is counted by uvu too (the suite is what the file runs)', () => {
  const { out, code } = runFile(`const s = suite('lab'); skipFile('lab', 'missing tools: ip', s); s.run()`)
  const c = accountOutput(out, code, null, false)
  assert.is(c.skipped, 1, out)
  assert.equal(c.skips, ['lab: missing tools: ip'])
})

test('a file that crashed or printed no totals counts as one failure', () => {
  assert.is(accountOutput('', 1, null, false).failed, 1)
  assert.is(accountOutput('Total: 2\nPassed: 2\nSkipped: 0\n', null, 'SIGKILL', false).failed, 1)
  assert.is(accountOutput('Total: 3\nPassed: 1\nSkipped: 0\n', 1, null, false).failed, 2)
})

test.run()
