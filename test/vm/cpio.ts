/**
 * A tiny writer for the "newc" cpio format (the one the kernel unpacks as an initramfs), so the
 * VM's initramfs needs no cpio tool on the machine. Format: for each entry a 110-byte ASCII
 * header ("070701" + 13 eight-digit hex fields), the NUL-terminated name padded to 4 bytes, then
 * the data padded to 4 bytes; the archive ends with an entry named "TRAILER!!!".
 */

export type CpioEntry =
  | { kind: 'dir'; name: string }
  | { kind: 'file'; name: string; data: Buffer; mode?: number }
  | { kind: 'symlink'; name: string; target: string }
  | { kind: 'chardev'; name: string; major: number; minor: number }

const S_IFDIR = 0o040000
const S_IFREG = 0o100000
const S_IFLNK = 0o120000
const S_IFCHR = 0o020000

const pad4 = (n: number): Buffer => Buffer.alloc((4 - (n % 4)) % 4)

function header(ino: number, mode: number, size: number, name: string, rdev: [number, number] = [0, 0]): Buffer {
  const nameBytes = Buffer.from(`${name}\0`)
  // fields: ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
  const fields = [ino, mode, 0, 0, 1, 0, size, 0, 0, rdev[0], rdev[1], nameBytes.length, 0]
  const text = '070701' + fields.map((f) => f.toString(16).padStart(8, '0')).join('')
  const head = Buffer.concat([Buffer.from(text, 'ascii'), nameBytes])
  return Buffer.concat([head, pad4(head.length)])
}

/** The whole archive. Names are relative ("init", "bin/sh"); parents must come before children. */
export function cpioArchive(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = []
  let ino = 1
  for (const e of entries) {
    const name = e.name.replace(/^\/+/, '')
    let mode: number
    let data: Buffer = Buffer.alloc(0)
    let rdev: [number, number] = [0, 0]
    switch (e.kind) {
      case 'dir': mode = S_IFDIR | 0o755; break
      case 'file': mode = S_IFREG | (e.mode ?? 0o644); data = e.data; break
      case 'symlink': mode = S_IFLNK | 0o777; data = Buffer.from(e.target); break
      case 'chardev': mode = S_IFCHR | 0o600; rdev = [e.major, e.minor]; break
    }
    parts.push(header(ino++, mode, data.length, name, rdev), data, pad4(data.length))
  }
  parts.push(header(0, 0, 0, 'TRAILER!!!'))
  return Buffer.concat(parts)
}
