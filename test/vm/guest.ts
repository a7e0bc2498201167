/**
 * The VM's second stage, written per run into the run's share (/vm inside the guest): it runs as
 * PID 1 in the overlay root (the machine's own files), mounts fresh kernel filesystems over the
 * host's copies seen through 9p, loads the lab's kernel modules, runs the command with its output
 * on the second serial port, records the exit code and powers the VM off.
 */

/** Modules the lab uses in the VM, loaded by one modprobe (each modprobe start costs ~0.3 s under emulation). */
export const LAB_MODULES = ['openvswitch', 'vxlan', 'vport-vxlan', 'veth', 'bridge', 'esp4', 'esp6', 'xfrm_user',
  'xfrm_algo', 'af_packet', 'tun', 'nf_tables', 'nft_chain_nat', 'iptable_filter', 'iptable_nat', 'sch_netem']

/** Quote `s` for a POSIX shell. */
export function shQuote(s: string): string {
  return /^[A-Za-z0-9_/.,:=+@%-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`
}

export interface Stage2Options {
  /** Shell text run by /bin/sh in `cwd`. */
  script: string
  cwd: string
  env: Record<string, string>
  path: string
  /** Copies to put over live directories: a tmpfs at `to`, filled from `from` (in the share). */
  snapshots?: { from: string; to: string }[]
}

/**
 * stage2.sh. Busybox mounts proc (util-linux's mount would read the host's /proc through 9p before
 * the fresh one is there). The command's stdout and stderr go to ttyS1 in raw mode (no CRLF);
 * ttyS0 is the kernel console, kept for diagnostics. `echo o` to sysrq powers off at once, and
 * qemu's -no-reboot makes that the end of the qemu process.
 */
export function stage2Script(o: Stage2Options): string {
  const snapLines = (o.snapshots ?? []).map(({ from, to }) =>
    `$bb mkdir -p ${shQuote(to)} && $bb mount -t tmpfs tmpfs ${shQuote(to)} && $bb cp -a ${shQuote(from)}/. ${shQuote(to)}/`).join('\n')
  const envLines = Object.entries(o.env).map(([k, v]) => `export ${k}=${shQuote(v)}`).join('\n')
  // A checkout under /tmp or /run (CI clones into /tmp) would vanish under the fresh tmpfs
  // mounted there: hold it by a bind mount first and put it back at the same path afterwards.
  const masked = /^\/(tmp|run)(\/|$)/.test(o.cwd)
  const q = shQuote(o.cwd)
  const keepCwd = masked ? `$bb mkdir -p /mnt/.weave-cwd && $bb mount --bind ${q} /mnt/.weave-cwd` : ''
  const restoreCwd = masked ? `$bb mkdir -p ${q} && $bb mount --bind /mnt/.weave-cwd ${q}` : ''
  return `#!/bin/busybox sh
bb=/bin/busybox
${keepCwd}
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t tmpfs -o mode=1777 tmpfs /tmp
$bb mount -t tmpfs -o mode=0755 tmpfs /run
$bb mkdir -p /dev/pts /dev/shm /run/lock /run/netns
$bb mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
$bb mount -t tmpfs -o mode=1777 tmpfs /dev/shm
[ -d /sys/fs/cgroup ] && $bb mount -t cgroup2 cgroup2 /sys/fs/cgroup
$bb mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
$bb hostname weave-vm
$bb ip link set lo up
export PATH=${shQuote(o.path)}
export HOME=/root TERM=dumb WEAVE_VM=1
modprobe -a -q ${LAB_MODULES.join(' ')} || echo "weave-vm: some of these modules did not load: ${LAB_MODULES.join(' ')}"
${restoreCwd}
${snapLines}
${envLines}
exec 3<>/dev/ttyS1
$bb stty raw -echo <&3
cd ${shQuote(o.cwd)} && /bin/sh /vm/cmd.sh </dev/null >&3 2>&3
echo $? >/vm/exit-code.tmp && $bb mv /vm/exit-code.tmp /vm/exit-code
exec 3>&-
$bb sync
echo o >/proc/sysrq-trigger
$bb sleep 30
`
}
