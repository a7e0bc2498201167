/**
 * Host side of encrypted fastdp (issue 9): boots the stock-kernel VM (test/vm), whose kernel has
 * esp4, and runs test/lab/fastdp-esp.test.ts inside it; checks that the ESP case (not the
 * no-ESP one) ran and passed. Skips with the reason where the VM cannot run. Inner output is
 * prefixed `vm-esp| `. Took 221 s in CI on a quiet machine.
 */
import { test } from 'uvu'
import { assertLabFilePassesInVm, vmTestSkipReason } from '../vm'
import { skipFile } from '../skip'

const why = vmTestSkipReason()
if (why) {
  skipFile('VM encrypted fastdp', why)
} else {
  test('in the stock-kernel VM: fastdp encrypted by kernel ESP — no plaintext on the underlay, keys rotate under a transfer', () =>
    assertLabFilePassesInVm({
      pattern: 'lab/fastdp-esp', prefix: 'vm-esp| ', minutes: 18,
      mustPrint: /fastdp-esp: encrypted fastdp ok/, what: 'the ESP case ran inside the VM and got to its end',
    }))
}

test.run()
