/**
 * The stock kernel the VM boots: Debian's linux-image-amd64, found under /boot and /lib/modules,
 * and its uncompressed `vmlinux` cut out of the xz-compressed vmlinuz (unpacking xz takes seconds
 * under software emulation, so qemu boots the ELF vmlinux directly through its PVH entry).
 */
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'

export interface StockKernel {
  version: string
  vmlinuz: string
  modulesDir: string
}

/** Compare "6.1.0-56-amd64"-style versions by their numeric parts. */
function compareVersions(a: string, b: string): number {
  const na = a.split(/\D+/).filter(Boolean).map(Number)
  const nb = b.split(/\D+/).filter(Boolean).map(Number)
  for (let i = 0; i < Math.max(na.length, nb.length); i++) {
    const d = (na[i] ?? -1) - (nb[i] ?? -1)
    if (d) return d
  }
  return 0
}

/**
 * The newest installed Debian kernel that has the modules the lab needs (openvswitch, esp4),
 * or undefined. WEAVE_VM_KERNEL picks a version explicitly.
 */
export function findStockKernel(wanted = process.env.WEAVE_VM_KERNEL): StockKernel | undefined {
  let names: string[]
  try { names = fs.readdirSync('/boot') } catch { return undefined }
  const versions = names.filter((n) => n.startsWith('vmlinuz-')).map((n) => n.slice('vmlinuz-'.length))
    .filter((v) => !wanted || v === wanted)
    .filter((v) => fs.existsSync(`/lib/modules/${v}/kernel/net/openvswitch/openvswitch.ko`) ||
      fs.existsSync(`/lib/modules/${v}/kernel/net/openvswitch/openvswitch.ko.xz`))
    .sort(compareVersions)
  const version = versions[versions.length - 1]
  return version ? { version, vmlinuz: `/boot/vmlinuz-${version}`, modulesDir: `/lib/modules/${version}` } : undefined
}

const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])

/**
 * Write the uncompressed ELF kernel of `vmlinuz` to `out` (atomically). The bzImage carries it as
 * an xz stream after the setup code; `xz -dc` complains about the bytes after the stream ends,
 * which is harmless, so success is judged by the result being a plausible ELF file.
 */
export function extractVmlinux(vmlinuz: string, out: string): void {
  const image = fs.readFileSync(vmlinuz)
  const at = image.indexOf(XZ_MAGIC)
  if (at < 0) throw new Error(`${vmlinuz}: no xz stream found (not an xz-compressed kernel?)`)
  const tmp = `${out}.${process.pid}.tmp`
  const fd = fs.openSync(tmp, 'w')
  try {
    spawnSync('xz', ['-dc'], { input: image.subarray(at), stdio: ['pipe', fd, 'ignore'], maxBuffer: 1 << 30 })
  } finally { fs.closeSync(fd) }
  const head = Buffer.alloc(4)
  const rfd = fs.openSync(tmp, 'r')
  fs.readSync(rfd, head, 0, 4, 0)
  fs.closeSync(rfd)
  if (!head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46])) || fs.statSync(tmp).size < 1 << 20) {
    fs.rmSync(tmp, { force: true })
    throw new Error(`${vmlinuz}: the xz stream did not unpack to an ELF kernel (is xz-utils installed?)`)
  }
  fs.renameSync(tmp, out)
}

/** Modules (absolute .ko paths, load order, no duplicates) that `names` need, from modprobe. */
export function moduleLoadOrder(version: string, names: string[]): string[] {
  const r = spawnSync('modprobe', ['-S', version, '--show-depends', '-a', ...names], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`modprobe --show-depends failed for ${version}: ${r.stderr}`)
  const seen = new Set<string>()
  for (const line of r.stdout.split('\n')) {
    const m = /^insmod (\S+)/.exec(line.trim())
    if (m && !seen.has(m[1])) seen.add(m[1])
  }
  return [...seen]
}
