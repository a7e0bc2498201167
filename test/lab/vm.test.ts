/**
 * Host side of the stock-kernel VM lab (issue 9): boots the VM (test/vm) and runs inside it the
 * lab test that needs the kernel's Open vSwitch datapath, then checks it passed and really ran on
 * the `system` datapath. Skips with the reason where qemu or the stock kernel are missing.
 * The inner output streams through prefixed with `vm| `.
 *
 * Under software emulation the VM is 10-100x slower than the host: 193 s in CI on a quiet
 * machine, 410 s on the shared machine under load.
 */
import { test } from 'uvu'
import { assertLabFilePassesInVm, vmTestSkipReason } from '../vm'
import { skipFile } from '../skip'

const why = vmTestSkipReason()
if (why) {
  skipFile('VM lab', why)
} else {
  test('in the stock-kernel VM: fastdp on the kernel datapath — 3 hosts all fastdp, pings across, fallback and back', () =>
    assertLabFilePassesInVm({
      pattern: 'lab/kernel-datapath', prefix: 'vm| ', minutes: 12,
      mustPrint: /kernel-datapath: datapath=system/, what: 'the inner test ran on the kernel datapath',
    }))
}

test.run()
