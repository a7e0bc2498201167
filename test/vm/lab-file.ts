/**
 * Running one lab test file inside the VM from a host-side uvu test (lab/vm.test, lab/vm-esp.test):
 * the inner output streams to stdout with a prefix, the VM's time and kernel are printed, and the
 * result is checked the same way for every caller.
 */
import * as assert from 'uvu/assert'
import { Writable } from 'node:stream'
import { StringDecoder } from 'node:string_decoder'
import { runInVm, vmUnavailableReason } from './run'

/** Why a host-side VM test must skip here, or undefined. */
export function vmTestSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (the VM reads the machine\'s files through 9p as its user)'
  return vmUnavailableReason()
}

/** Writes `prefix`-ed lines to stdout as they arrive. */
function prefixedStdout(prefix: string): Writable {
  let partial = ''
  const utf8 = new StringDecoder('utf8') // a character may straddle two chunks
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      const lines = (partial + utf8.write(chunk)).split('\n')
      partial = lines.pop() ?? ''
      for (const l of lines) process.stdout.write(`${prefix}${l}\n`)
      done()
    },
    final(done) {
      if (partial) process.stdout.write(`${prefix}${partial}\n`)
      done()
    },
  })
}

/**
 * Runs `node scripts/run-tests.js PATTERN` in the VM (which must select exactly one test), within
 * `minutes`, and asserts: finished in time, exit 0, `1 passed, 0 failed`, and `mustPrint` in the
 * output (proof the inner test ran the case meant here, not a skip).
 */
export async function assertLabFilePassesInVm(o: { pattern: string; prefix: string; minutes: number; mustPrint: RegExp; what: string }): Promise<void> {
  const out = prefixedStdout(o.prefix)
  const r = await runInVm({
    argv: ['node', 'scripts/run-tests.js', o.pattern],
    timeoutMs: o.minutes * 60_000, memMb: 2048, cpus: 2, stream: out,
    env: { WEAVE_TEST_TIMEOUT_MS: String((o.minutes - 1) * 60_000) },
  })
  out.end()
  console.log(`  VM run: exit ${r.exitCode} in ${r.seconds.toFixed(0)} s (kernel ${r.kernel})`)
  if (r.exitCode === 124 || r.exitCode === 125) console.log(`  console:\n${r.console}`)
  assert.not.ok(r.timedOut, 'the VM run finished in time')
  assert.match(r.output, o.mustPrint, o.what)
  assert.match(r.output, /\n1 passed, 0 failed\n/, 'the inner test passed')
  assert.is(r.exitCode, 0)
}
