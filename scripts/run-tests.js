#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) in its own process, so a crashed or
// hung file cannot take the others with it, and prints the totals as `N passed, N failed`.
// Usage: node scripts/run-tests.js [PATTERN...]  (regexps matched against the file path)
'use strict'
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..', 'dist', 'test')
const layers = ['unit', 'sim', 'lab', 'e2e'] // cheap first: a broken core shows up before the lab starts
const perFileTimeoutMs = Number(process.env.WEAVE_TEST_TIMEOUT_MS || 15 * 60_000)
const patterns = process.argv.slice(2).map((p) => new RegExp(p))
// Under CI every package the tests need is installed (.ci/run), so a skip means something broke,
// unless its reason matches one of these (each with why it cannot be installed on CI's machine).
const ALLOWED_IN_CI = [
  // The machine's own kernel (a VM kernel without modules) cannot be changed by a package; these
  // cases run instead inside the stock-kernel VM (test/lab/vm.test, vm-esp.test, vm-kvxlan.test),
  // which CI runs, so they are not lost.
  /^kernel datapath: no openvswitch kernel module here/,
  /^encrypted fastdp: no esp4 module in this kernel/,
  /^kernel vxlan path in the VM: no (openvswitch|esp4) kernel module here/,
  /^a datapath type the host lacks is reported by datapathProblems: the kernel openvswitch module is loaded/,
]
const inCi = process.env.CI === 'true'

function walk(dir) {
  if (!fs.existsSync(dir)) return []
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    return e.isDirectory() ? walk(p) : e.name.endsWith('.test.js') ? [p] : []
  }).sort()
}

function runFile(file) {
  return new Promise((resolve) => {
    const started = Date.now()
    let out = ''
    const child = spawn(process.execPath, ['--enable-source-maps', file], { stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    const onData = (d) => { out += d; process.stdout.write(d) }
    child.stdout.on('data', onData)
    child.stderr.on('data', (d) => process.stderr.write(d))
    const timer = setTimeout(() => {
      process.stderr.write(`\n${file}: timed out after ${perFileTimeoutMs / 1000}s, killing it (SIGINT first so its lab tears down)\n`)
      try { process.kill(-child.pid, 'SIGINT') } catch {}
      setTimeout(() => { try { process.kill(-child.pid, 'SIGKILL') } catch {} }, 20_000).unref()
    }, perFileTimeoutMs)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      const counts = accountOutput(out, code, signal, inCi)
      for (const s of counts.refused) process.stdout.write(`FAIL under CI: skipped, but CI installs everything: ${s}\n`)
      resolve({ file, ...counts, seconds: (Date.now() - started) / 1000 })
    })
  })
}

/**
 * What one file's run counts for: uvu prints "Total: N", "Passed: N", "Skipped: N" at the end;
 * `# skip: TITLE: REASON` lines come from test/skip.ts (uvu counted them under Skipped). A file that
 * crashed, hung or printed no totals counts as one failure. Under CI a skip whose reason is not on
 * ALLOWED_IN_CI is a failure (listed in `refused`). Pure: test/unit/run-tests-skips.test.ts.
 */
function accountOutput(out, code, signal, ci, allowed = ALLOWED_IN_CI) {
  const num = (label) => { const m = out.match(new RegExp(`${label}:\\s+(\\d+)`, 'g')); return m ? Number(m[m.length - 1].replace(/\D+/g, '')) : 0 }
  const total = num('Total'), passed = num('Passed')
  let skipped = num('Skipped')
  let failed = total - passed // uvu's Total leaves skipped tests out
  if ((code !== 0 || signal) && failed === 0) failed = 1
  const skips = [...out.matchAll(/^# skip: (.*)$/gm)].map((m) => m[1])
  const refused = ci ? skips.filter((s) => !allowed.some((re) => re.test(s))) : []
  failed += refused.length
  skipped -= refused.length
  return { passed, failed, skipped, skips, refused }
}

/**
 * ESLint over the whole tree (eslint.config.mjs), counted as one test: a full run lints before the
 * tests; a run of chosen files lints only with the pattern `lint`.
 */
function runLint() {
  return new Promise((resolve) => {
    const started = Date.now()
    const repo = path.join(__dirname, '..')
    console.log('\n=== lint (eslint .)')
    const child = spawn(process.execPath, [path.join(repo, 'node_modules', 'eslint', 'bin', 'eslint.js'), '.', '--max-warnings', '0'], { cwd: repo, stdio: ['ignore', 'inherit', 'inherit'] })
    child.on('close', (code) => {
      const ok = code === 0
      if (ok) console.log('lint: no problems')
      resolve({ file: path.join(root, 'lint (eslint .)'), passed: ok ? 1 : 0, failed: ok ? 0 : 1, skipped: 0, skips: [], seconds: (Date.now() - started) / 1000 })
    })
  })
}

async function main() {
  let files = layers.flatMap((l) => walk(path.join(root, l)))
  if (patterns.length) files = files.filter((f) => patterns.some((p) => p.test(f)))
  const results = []
  if (!patterns.length || patterns.some((p) => p.test('lint'))) results.push(await runLint())
  for (const f of files) {
    console.log(`\n=== ${path.relative(process.cwd(), f)}`)
    results.push(await runFile(f))
  }
  console.log('\n=== summary')
  for (const r of results) console.log(`${r.failed ? 'FAIL' : 'ok  '} ${path.relative(root, r.file)}  ${r.passed} passed, ${r.failed} failed, ${r.skipped} skipped (${r.seconds.toFixed(1)}s)`)
  const allSkips = results.flatMap((r) => r.skips.map((s) => `${path.relative(root, r.file)}: ${s}`))
  if (allSkips.length) console.log(`\n=== skipped\n${allSkips.join('\n')}`)
  const sum = (k) => results.reduce((a, r) => a + r[k], 0)
  const passed = sum('passed'), failed = sum('failed'), skipped = sum('skipped')
  console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`)
  process.exitCode = failed || results.length === 0 ? 1 : 0
}
module.exports = { accountOutput, ALLOWED_IN_CI }
if (require.main === module) main()
