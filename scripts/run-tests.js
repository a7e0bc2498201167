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
  // (none: root, every tool, qemu and the stock kernel are installed by .ci/run)
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
      // uvu prints "Total: N", "Passed: N", "Skipped: N" at the end of a file's run.
      const num = (label) => { const m = out.match(new RegExp(`${label}:\\s+(\\d+)`, 'g')); return m ? Number(m[m.length - 1].replace(/\D+/g, '')) : 0 }
      let total = num('Total'), passed = num('Passed'), skipped = num('Skipped')
      let failed = total - passed // uvu's Total leaves skipped tests out
      if ((code !== 0 || signal) && failed === 0) failed = 1 // crashed, hung or printed no totals
      // `# skip: TITLE: REASON` lines come from test/skip.ts; uvu counted them under Skipped.
      const skips = [...out.matchAll(/^# skip: (.*)$/gm)].map((m) => m[1])
      const refused = inCi ? skips.filter((s) => !ALLOWED_IN_CI.some((re) => re.test(s))) : []
      for (const s of refused) process.stdout.write(`FAIL under CI: skipped, but CI installs everything: ${s}\n`)
      failed += refused.length
      skipped -= refused.length
      resolve({ file, passed, failed, skipped, skips, seconds: (Date.now() - started) / 1000 })
    })
  })
}

async function main() {
  let files = layers.flatMap((l) => walk(path.join(root, l)))
  if (patterns.length) files = files.filter((f) => patterns.some((p) => p.test(f)))
  const results = []
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
  process.exitCode = failed || files.length === 0 ? 1 : 0
}
main()
