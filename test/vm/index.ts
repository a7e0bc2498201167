/**
 * The stock-kernel VM lab: the only door other tests and benchmarks import.
 *
 * ```ts
 * import { runInVm, vmUnavailableReason } from '../vm'
 * const why = vmUnavailableReason()           // skip with this line when set
 * const r = await runInVm({ argv: ['node', 'scripts/run-tests.js', 'lab/fastdp'], timeoutMs: 600_000 })
 * r.exitCode; r.output                        // the command's exit code and output
 * ```
 *
 * - qemu (software emulation) boots Debian's linux-image-amd64 with no network device; the
 *   machine's root is the VM's root, read-only, with a tmpfs overlay (nothing survives a run).
 *   The command runs as root from the repository directory with this node on PATH, after
 *   `modprobe openvswitch vxlan veth esp4 xfrm_user ...`; WEAVE_VM=1 is set inside.
 * - Build (`npx tsc -p .`) before running: the VM runs the machine's dist/.
 * - `npm run vm -- CMD...` runs one command in the VM and exits with its code.
 * - Kernel and initramfs are cached under /var/cache/weave-ts-vm/VERSION (WEAVE_VM_CACHE overrides).
 */
export { runInVm, vmAvailable, vmUnavailableReason, prepareVmImages, VM_REPO_ROOT,
  type VmRunOptions, type VmResult, type VmImages } from './run'
export { shQuote } from './guest'
export { vmTestSkipReason, assertLabFilePassesInVm } from './lab-file'
