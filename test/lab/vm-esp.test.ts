/**
 * Host side of encrypted fastdp (issue 9): boots the stock-kernel VM (test/vm), whose kernel has
 * esp4, and runs test/lab/fastdp-esp.test.ts inside it; checks that the ESP case (not the
 * no-ESP one) ran and passed. Skips with the reason where the VM cannot run. Inner output is
 * prefixed `vm-esp| `. Takes a few minutes under software emulation.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Writable } from 'node:stream'
import { runInVm, vmUnavailableReason } from '../vm'

function unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (the VM reads the machine\'s files through 9p as its user)'
  return vmUnavailableReason()
}

function prefixed(prefix: string): Writable {
  let partial = ''
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      const lines = (partial + chunk.toString('utf8')).split('\n')
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
  test(`VM encrypted fastdp skipped: ${why}`, () => { console.log(`skip: ${why}`) })
} else {
  test('in the stock-kernel VM: fastdp encrypted by kernel ESP — no plaintext on the underlay, keys rotate under a transfer', async () => {
    const out = prefixed('vm-esp| ')
    const r = await runInVm({
      argv: ['node', 'scripts/run-tests.js', 'lab/fastdp-esp'],
      timeoutMs: 18 * 60_000, memMb: 2048, cpus: 2, stream: out,
      env: { WEAVE_TEST_TIMEOUT_MS: String(17 * 60_000) },
    })
    out.end()
    console.log(`  VM run: exit ${r.exitCode} in ${r.seconds.toFixed(0)} s (kernel ${r.kernel})`)
    if (r.exitCode === 124 || r.exitCode === 125) console.log(`  console:\n${r.console}`)
    assert.not.ok(r.timedOut, 'the VM run finished in time')
    assert.match(r.output, /fastdp-esp: encrypted fastdp ok/, 'the ESP case ran inside the VM and got to its end')
    assert.match(r.output, /\n1 passed, 0 failed\n/, 'the inner test passed')
    assert.is(r.exitCode, 0)
  })
}

test.run()
