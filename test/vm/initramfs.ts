/**
 * The VM's first stage: an initramfs with busybox-static, the few modules needed to reach the
 * machine's files (virtio PCI, 9p, overlayfs) and an /init that mounts the machine's root
 * read-only over 9p with a tmpfs overlay on top, mounts the run's writable share at /vm and
 * switch_roots into /vm/stage2.sh (written per run, see guest.ts).
 */
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { cpioArchive, type CpioEntry } from './cpio'
import { moduleLoadOrder } from './kernel'

const BUSYBOX = '/bin/busybox'
/** 9p message size: larger messages mean fewer round trips through the emulated virtio queue. */
const MSIZE = 512_000

/**
 * /init. The root share uses cache=loose (its files do not change while the VM runs, and reads are
 * much cheaper); the results share is uncached so the host sees what the guest writes.
 */
export const INIT_SCRIPT = `#!/bin/busybox sh
export PATH=/bin
busybox mount -t proc proc /proc
busybox mount -t devtmpfs devtmpfs /dev
fail() { echo "weave-vm init: $*" >/dev/console; echo o >/proc/sysrq-trigger; sleep 10; }
for m in /modules/*.ko; do insmod "$m" || fail "insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,msize=${MSIZE},cache=loose,ro hostroot /lower || fail "cannot mount the host root"
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot || fail "overlay"
mkdir -p /newroot/vm
mount -t 9p -o trans=virtio,version=9p2000.L,msize=${MSIZE} results /newroot/vm || fail "cannot mount the results share"
mount --move /dev /newroot/dev
umount /proc
exec switch_root /newroot /bin/busybox sh /vm/stage2.sh
`

const FIRST_STAGE_MODULES = ['virtio_pci', '9pnet_virtio', '9p', 'overlay']

/** Whether `file` is a statically linked ELF (no program interpreter named in it). */
function looksStatic(file: string): boolean {
  const head = fs.readFileSync(file).subarray(0, 4096)
  return !head.includes(Buffer.from('/lib64/ld-linux')) && !head.includes(Buffer.from('/lib/ld-linux'))
}

/** Why the initramfs cannot be built here, or undefined. */
export function initramfsUnavailableReason(): string | undefined {
  if (!fs.existsSync(BUSYBOX)) return `${BUSYBOX} is missing (apt-get install busybox-static)`
  if (!looksStatic(BUSYBOX)) return `${BUSYBOX} is not statically linked (apt-get install busybox-static)`
  return undefined
}

/** Cache key: kernel version, init script and busybox build. */
export function initramfsKey(version: string): string {
  const st = fs.statSync(BUSYBOX)
  return crypto.createHash('sha256').update(`${version}\n${INIT_SCRIPT}\n${st.size}:${st.mtimeMs}`).digest('hex').slice(0, 12)
}

/** Build the initramfs for kernel `version` into `out` (atomically). */
export function buildInitramfs(version: string, out: string): void {
  const modules = moduleLoadOrder(version, FIRST_STAGE_MODULES)
  const entries: CpioEntry[] = [
    ...['bin', 'dev', 'proc', 'sys', 'lower', 'rw', 'newroot', 'modules'].map((name) => ({ kind: 'dir' as const, name })),
    { kind: 'chardev', name: 'dev/console', major: 5, minor: 1 },
    { kind: 'file', name: 'bin/busybox', data: fs.readFileSync(BUSYBOX), mode: 0o755 },
    ...['sh', 'mount', 'umount', 'mkdir', 'insmod', 'switch_root', 'echo', 'sleep'].map((n) =>
      ({ kind: 'symlink' as const, name: `bin/${n}`, target: 'busybox' })),
    // numbered so that the glob in /init loads them in dependency order
    ...modules.map((m, i) => ({ kind: 'file' as const, name: `modules/${String(i).padStart(2, '0')}-${path.basename(m)}`, data: fs.readFileSync(m) })),
    { kind: 'file', name: 'init', data: Buffer.from(INIT_SCRIPT), mode: 0o755 },
  ]
  const tmp = `${out}.${process.pid}.tmp`
  fs.writeFileSync(tmp, cpioArchive(entries))
  fs.renameSync(tmp, out)
}
