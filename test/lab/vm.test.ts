/**
 * Host side of the stock-kernel VM lab (issue 9): boots the VM (test/vm) and runs inside it the
 * lab tests that need the kernel's Open vSwitch datapath, then checks they all passed and really
 * ran on the `system` datapath. Skips with the reason where qemu or the stock kernel are missing.
 * The inner output streams through prefixed with `vm| `.
 *
 * Under software emulation the VM is 10-100x slower than the host: this file took 410 s on the
 * shared 2-core machine under load (the inner test 350 s); the VM run's time is printed.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Writable } from 'node:stream'
import { StringDecoder } from 'node:string_decoder'
import { runInVm, vmUnavailableReason } from '../vm'

function unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (the VM reads the machine\'s files through 9p as its user)'
  return vmUnavailableReason()
}

/** Writes `vm| `-prefixed lines to stdout as they arrive. */
function prefixed(prefix: string): Writable {
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

const why = unavailable()
if (why) {
  test(`VM lab skipped: ${why}`, () => { console.log(`skip: ${why}`) })
} else {
  test('in the stock-kernel VM: fastdp on the kernel datapath — 3 hosts all fastdp, pings across, fallback and back', async () => {
    const out = prefixed('vm| ')
    const r = await runInVm({
      argv: ['node', 'scripts/run-tests.js', 'lab/kernel-datapath'],
      timeoutMs: 12 * 60_000, memMb: 2048, cpus: 2, stream: out,
      env: { WEAVE_TEST_TIMEOUT_MS: String(11 * 60_000) },
    })
    out.end()
    console.log(`  VM run: exit ${r.exitCode} in ${r.seconds.toFixed(0)} s (kernel ${r.kernel})`)
    if (r.exitCode === 124 || r.exitCode === 125) console.log(`  console:\n${r.console}`)
    assert.not.ok(r.timedOut, 'the VM run finished in time')
    assert.match(r.output, /kernel-datapath: datapath=system/, 'the inner test ran on the kernel datapath')
    assert.match(r.output, /\n1 passed, 0 failed\n/, 'the inner test passed')
    assert.is(r.exitCode, 0)
  })
}

test.run()
