/**
 * qemu's command line for the lab VM. Software emulation (TCG), not KVM: /dev/kvm on this machine
 * is a software hypervisor that cannot boot a stock kernel (LAB-NOTES). No network device at all,
 * so nothing from inside the VM can leave the machine; the machine's root is shared read-only
 * (read-only matters: the guest sees the host's /proc and /sys through it) and one run directory
 * writable.
 */

export interface QemuOptions {
  vmlinux: string
  initramfs: string
  /** Host directory shared writable as `results` (mounted at /vm in the guest). */
  shareDir: string
  /** File that receives the kernel console (ttyS0). */
  consoleFile: string
  memMb: number
  cpus: number
  /** qemu -cpu model; default `max`. */
  cpuModel?: string
}

export const QEMU = 'qemu-system-x86_64'

/**
 * Kernel command line: quiet console; panic=-1 reboots at once on a panic, which -no-reboot turns
 * into qemu exiting instead of a hang until the timeout; mitigations cost time under emulation.
 */
export const KERNEL_CMDLINE = 'console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off no_timer_check'

export function qemuArgs(o: QemuOptions): string[] {
  return [
    '-accel', 'tcg,thread=multi', '-cpu', o.cpuModel ?? 'max', '-m', String(o.memMb), '-smp', String(o.cpus),
    '-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none', '-nic', 'none', '-no-reboot',
    '-kernel', o.vmlinux, '-initrd', o.initramfs, '-append', KERNEL_CMDLINE,
    '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    '-virtfs', `local,path=${o.shareDir},mount_tag=results,security_model=none,multidevs=remap`,
    '-serial', `file:${o.consoleFile}`,
    '-serial', 'stdio',
  ]
}
