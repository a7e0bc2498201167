/**
 * Host side of the kernel vxlan path on a stock kernel (issue 21): boots the VM (test/vm) once and
 * runs test/lab/kvxlan-vm.test.ts inside it — a mesh of an OVS kernel-datapath host and two kernel
 * vxlan hosts (pings and TCP across them, each connection's data path shown, TSO segments through
 * vxlan-6784), then the two vxlan hosts with a password (the kernel path under kernel ESP: ESP on
 * the wire, no clear vxlan, transfer intact). Checks both parts ran and passed; skips with the
 * reason where the VM cannot run. Inner output is prefixed `vm-kvxlan| `. 14 minutes at most:
 * scripts/run-tests.js ends a file at 15.
 */
import { test } from 'uvu'
import { assertLabFilePassesInVm, vmTestSkipReason } from '../vm'
import { skipFile } from '../skip'

const why = vmTestSkipReason()
if (why) {
  skipFile('VM kernel vxlan path', why)
} else {
  test('in the stock-kernel VM: kernel vxlan hosts with an OVS kernel-datapath host, TSO through vxlan-6784, kernel ESP on the kernel path', () =>
    assertLabFilePassesInVm({
      pattern: 'lab/kvxlan-vm', prefix: 'vm-kvxlan| ', minutes: 14,
      mustPrint: /kvxlan-vm: mixed ok[\s\S]*kvxlan-vm: esp ok/, what: 'both parts (mixed mesh, then ESP) ran inside the VM and got to their ends',
    }))
}

test.run()
