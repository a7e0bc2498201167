/**
 * The VM runner's pure parts (test/vm): the newc cpio writer, shell quoting, the second stage's
 * script and qemu's command line (no network device, root shared read-only).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync } from 'node:child_process'
import * as fc from 'fast-check'
import { cpioArchive } from '../vm/cpio'
import { shQuote, stage2Script } from '../vm/guest'
import { qemuArgs } from '../vm/qemu'

interface Parsed { name: string; mode: number; data: Buffer; rdevMajor: number; rdevMinor: number }

/** Reads a newc archive back (what the kernel's initramfs unpacker does). */
function parseCpio(buf: Buffer): Parsed[] {
  const out: Parsed[] = []
  let at = 0
  const align = (n: number) => (n + 3) & ~3
  for (;;) {
    assert.is(buf.toString('ascii', at, at + 6), '070701', `magic at ${at}`)
    const field = (i: number) => parseInt(buf.toString('ascii', at + 6 + i * 8, at + 14 + i * 8), 16)
    const mode = field(1), size = field(6), rdevMajor = field(9), rdevMinor = field(10), nameSize = field(11)
    const name = buf.toString('utf8', at + 110, at + 110 + nameSize - 1)
    assert.is(buf[at + 110 + nameSize - 1], 0, 'name is NUL-terminated')
    const dataAt = align(at + 110 + nameSize)
    if (name === 'TRAILER!!!') return out
    out.push({ name, mode, data: buf.subarray(dataAt, dataAt + size), rdevMajor, rdevMinor })
    at = align(dataAt + size)
  }
}

test('cpio: entries come back with names, types, modes and data; 4-byte alignment throughout', () => {
  const archive = cpioArchive([
    { kind: 'dir', name: 'bin' },
    { kind: 'file', name: '/bin/busybox', data: Buffer.from('x'.repeat(5)), mode: 0o755 },
    { kind: 'symlink', name: 'bin/sh', target: 'busybox' },
    { kind: 'chardev', name: 'dev/console', major: 5, minor: 1 },
    { kind: 'file', name: 'init', data: Buffer.from('#!/bin/sh\n') },
  ])
  assert.is(archive.length % 4, 0)
  const e = parseCpio(archive)
  assert.equal(e.map((x) => x.name), ['bin', 'bin/busybox', 'bin/sh', 'dev/console', 'init'])
  assert.is(e[0].mode, 0o040755)
  assert.is(e[1].mode, 0o100755)
  assert.is(e[1].data.toString(), 'xxxxx')
  assert.is(e[2].mode & 0o170000, 0o120000)
  assert.is(e[2].data.toString(), 'busybox')
  assert.equal([e[3].mode & 0o170000, e[3].rdevMajor, e[3].rdevMinor], [0o020000, 5, 1])
  assert.is(e[4].mode, 0o100644)
})

test('cpio: any file sizes and names survive the round trip (property)', () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.stringMatching(/^[a-z0-9._-]{1,20}$/), fc.uint8Array({ maxLength: 70 })), { maxLength: 8 }), (files) => {
    const entries = files.map(([name, data], i) => ({ kind: 'file' as const, name: `${i}-${name}`, data: Buffer.from(data) }))
    const back = parseCpio(cpioArchive(entries))
    assert.equal(back.map((b) => [b.name, [...b.data]]), entries.map((f) => [f.name, [...f.data]]))
  }), { numRuns: 200 })
})

test('shQuote: the shell reads back exactly the string (property, through sh)', () => {
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 30 }).filter((s) => !s.includes('\0')), (s) => {
    const back = execFileSync('sh', ['-c', `printf %s ${shQuote(s)}`], { encoding: 'utf8' })
    assert.is(back, s)
  }), { numRuns: 40 })
  assert.is(shQuote('plain/path-1.2'), 'plain/path-1.2')
  assert.is(shQuote(''), "''")
})

test('stage 2: fresh kernel filesystems, modules, env, snapshot mounts, output on ttyS1, exit code, power off', () => {
  const s = stage2Script({ script: 'true', cwd: '/work/my repo', env: { WEAVE_X: "it's" }, path: '/usr/bin:/bin',
    snapshots: [{ from: '/vm/snap/dist', to: '/work/my repo/dist' }] })
  for (const want of ['mount -t proc proc /proc', 'mount -t sysfs sysfs /sys', 'modprobe -a -q openvswitch', 'esp4',
    "export WEAVE_X='it'\\''s'", "cd '/work/my repo'", '>&3 2>&3', '/dev/ttyS1', '/vm/exit-code', 'echo o >/proc/sysrq-trigger',
    "mount -t tmpfs tmpfs '/work/my repo/dist' && $bb cp -a /vm/snap/dist/. '/work/my repo/dist'/"]) {
    assert.ok(s.includes(want), `stage2 has ${want}:\n${s}`)
  }
  // the exit code is recorded before the power-off
  assert.ok(s.indexOf('/vm/exit-code') < s.indexOf('sysrq-trigger'))
})

test('qemu: software emulation, no network device, the root shared read-only, the run dir writable', () => {
  const a = qemuArgs({ vmlinux: '/c/vmlinux', initramfs: '/c/i.cpio', shareDir: '/tmp/run', consoleFile: '/tmp/run/c.log', memMb: 1024, cpus: 2 })
  const after = (flag: string) => a.filter((_, i) => a[i - 1] === flag)
  assert.equal(after('-nic'), ['none'])
  assert.ok(a.includes('-nodefaults'), 'no default devices (no default NIC either)')
  assert.ok(a.includes('-no-reboot'))
  assert.match(after('-accel')[0], /^tcg/)
  const shares = after('-virtfs')
  assert.is(shares.length, 2)
  assert.match(shares.find((s) => s.includes('path=/,'))!, /readonly=on/)
  assert.not.match(shares.find((s) => s.includes('/tmp/run'))!, /readonly/)
  assert.not.ok(a.some((x) => /^-(netdev|net)$/.test(x)), 'no -net/-netdev')
})

test.run()
