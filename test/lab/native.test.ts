/**
 * The native module against the real kernel: two network namespaces made here, joined by a
 * veth pair, carrying only test traffic between addresses in 198.18.0.0/15 (benchmarking
 * range) that exist only inside those namespaces. Every test removes what it made.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import { openPacketSocket, openUdpSocket, type PacketSocket, type UdpSocket } from '../../router/native'
import { skipFile } from '../skip'

const isRoot = process.getuid?.() === 0
const tag = `${process.pid % 100000}`
const nsA = `wnat${tag}-a`
const nsB = `wnat${tag}-b`
const vethA = `wn${tag}a`
const vethB = `wn${tag}b`
const subnet = `198.18.${process.pid % 250}`
const ipA = `${subnet}.1`
const ipB = `${subnet}.2`
const ETHERTYPE_TEST = 0x88b5 // IEEE local experimental: the kernel ignores it

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString()

function removeLab(): void {
  for (const ns of [nsA, nsB]) { try { ip('netns', 'del', ns) } catch { /* not there */ } }
}

function makeLab(mtu = 1500): void {
  removeLab()
  ip('netns', 'add', nsA)
  ip('netns', 'add', nsB)
  ip('-n', nsA, 'link', 'add', vethA, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', vethB, 'netns', nsB)
  ip('-n', nsB, 'link', 'set', vethB, 'mtu', String(mtu))
  ip('-n', nsA, 'addr', 'add', `${ipA}/24`, 'dev', vethA)
  ip('-n', nsB, 'addr', 'add', `${ipB}/24`, 'dev', vethB)
  for (const [ns, dev] of [[nsA, vethA], [nsB, vethB]]) {
    ip('-n', ns, 'link', 'set', 'lo', 'up')
    ip('-n', ns, 'link', 'set', dev, 'up')
  }
}

process.on('exit', removeLab)
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => { removeLab(); process.exit(130) })

const netns = (ns: string) => `/var/run/netns/${ns}`
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Calls `read` whenever `sock` is readable until `done()` or `ms` pass. */
function drain(sock: PacketSocket | UdpSocket, read: () => void, done: () => boolean, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const finish = () => { clearTimeout(timer); sock.offReadable(); resolve() }
    const timer = setTimeout(finish, ms)
    sock.onReadable(() => { read(); if (done()) finish() })
  })
}

function testFrame(seq: number, size: number, srcMac: number): Buffer {
  const f = Buffer.alloc(size)
  f.fill(0xff, 0, 6) // broadcast destination
  f.writeUIntBE(0x020000000000 + srcMac, 6, 6) // locally administered source
  f.writeUInt16BE(ETHERTYPE_TEST, 12)
  f.writeUInt32BE(seq, 14)
  for (let i = 18; i < size; i++) f[i] = (seq + i) & 255
  return f
}

if (!isRoot) {
  skipFile('native module lab tests', 'needs root (network namespaces, packet sockets)')
} else {
  test('a packet socket on one veth end sees the frames injected on the other end, and not its own', async () => {
    makeLab()
    const a = openPacketSocket(vethA, { netns: netns(nsA) })
    const b = openPacketSocket(vethB, { netns: netns(nsB) })
    try {
      const sizes = [60, 61, 100, 1000, 1514]
      const frames = Array.from({ length: 100 }, (_, i) => testFrame(i, sizes[i % sizes.length], 1))
      const seen: Buffer[] = []
      let ownEcho = 0
      const readA = () => { for (const f of a.readBatch()) if (f.readUInt16BE(12) === ETHERTYPE_TEST) seen.push(Buffer.from(f)) }
      const pending = drain(a, readA, () => seen.length >= frames.length, 5000)
      const r = b.writeBatch(frames)
      assert.is(r.sent, frames.length, 'every frame accepted by the kernel')
      await pending
      for (const f of b.readBatch()) if (f.readUInt16BE(12) === ETHERTYPE_TEST) ownEcho++
      assert.is(seen.length, frames.length)
      for (let i = 0; i < frames.length; i++) assert.ok(seen[i].equals(frames[i]), `frame ${i} arrives intact and in order`)
      assert.is(ownEcho, 0, 'the sending socket does not read back its own injections')
    } finally {
      a.close(); b.close(); removeLab()
    }
  })

  test('batched UDP moves N datagrams between two namespaces intact, with their source', async () => {
    makeLab()
    const rx = openUdpSocket(ipB, 0, { netns: netns(nsB) })
    const tx = openUdpSocket(ipA, 0, { netns: netns(nsA), batch: 32 })
    try {
      const N = 3000
      const port = rx.localPort
      const got = new Map<number, Buffer>()
      let badSource = 0
      const read = () => {
        for (const d of rx.recvBatch()) {
          if (d.addr !== ipA || d.port !== tx.localPort) badSource++
          got.set(d.data.readUInt32BE(0), Buffer.from(d.data))
        }
      }
      const pending = drain(rx, read, () => got.size >= N, 10_000)
      const payload = (seq: number) => { const b = Buffer.alloc(1400, seq & 255); b.writeUInt32BE(seq, 0); return b }
      // in chunks, yielding between them, so the receiver's buffer never overflows
      for (let start = 0; start < N; start += 250) {
        const batch = Array.from({ length: Math.min(250, N - start) }, (_, i) => ({ addr: ipB, port, data: payload(start + i) }))
        let left = batch
        while (left.length) {
          const r = tx.sendBatch(left)
          assert.is(r.errors.length, 0)
          left = left.slice(r.sent)
          if (left.length) await tx.whenWritable()
        }
        await sleep(2)
      }
      await pending
      assert.is(got.size, N, 'every datagram arrived')
      assert.is(badSource, 0, 'source address and port reported')
      for (let seq = 0; seq < N; seq++) assert.ok(got.get(seq)?.equals(payload(seq)), `datagram ${seq} intact`)
    } finally {
      rx.close(); tx.close(); removeLab()
    }
  })

  test('mixed sizes and destinations survive send coalescing (GSO) and receive splitting (GRO) intact and in order', async () => {
    makeLab()
    const rx1 = openUdpSocket(ipB, 0, { netns: netns(nsB) })
    const rx2 = openUdpSocket(ipB, 0, { netns: netns(nsB) })
    const tx = openUdpSocket(ipA, 0, { netns: netns(nsA) })
    try {
      console.log(`  (offloads granted: tx ${JSON.stringify(tx.offloads)}, rx ${JSON.stringify(rx1.offloads)})`)
      // runs of equal sizes (coalescable), shorter tails, lone odd sizes, alternating destinations
      const sizes = [1400, 1400, 1400, 700, 1400, 1400, 1, 1472, 1472, 1472, 1472, 100, 100, 5, 900, 900, 900, 900, 900, 899, 1400]
      const sent: Array<{ port: number; data: Buffer }> = []
      let seq = 0
      for (let round = 0; round < 20; round++) {
        for (const [i, size] of sizes.entries()) {
          const data = Buffer.alloc(size, (seq * 31) & 255)
          data[0] = seq & 255
          if (size >= 4) data.writeUInt32BE(seq, 0)
          seq++
          sent.push({ port: (round % 3 === 0 && i % 5 === 0 ? rx2 : rx1).localPort, data })
        }
      }
      const got = new Map<number, Buffer[]>([[rx1.localPort, []], [rx2.localPort, []]])
      for (const rx of [rx1, rx2]) rx.onReadable(() => { for (const d of rx.recvBatch()) got.get(rx.localPort)!.push(Buffer.from(d.data)) })
      const r = tx.sendBatch(sent.map((s) => ({ addr: ipB, port: s.port, data: s.data })))
      assert.is(r.sent, sent.length)
      for (let waited = 0; waited < 5000 && got.get(rx1.localPort)!.length + got.get(rx2.localPort)!.length < sent.length; waited += 20) await sleep(20)
      for (const rx of [rx1, rx2]) {
        const want = sent.filter((s) => s.port === rx.localPort).map((s) => s.data)
        const have = got.get(rx.localPort)!
        assert.is(have.length, want.length, 'every datagram, none merged or split wrongly')
        want.forEach((w, i) => assert.ok(have[i].equals(w), `datagram ${i} to port ${rx.localPort} intact and in order`))
      }
    } finally {
      rx1.close(); rx2.close(); tx.close(); removeLab()
    }
  })

  test('path MTU is readable and an oversized datagram fails with EMSGSIZE under pmtuDiscover', () => {
    makeLab(1300)
    const tx = openUdpSocket(ipA, 0, { netns: netns(nsA), pmtuDiscover: true })
    const frag = openUdpSocket(ipA, 0, { netns: netns(nsA), pmtuDiscover: false })
    try {
      assert.is(tx.pathMtu(ipB), 1300)
      const big = { addr: ipB, port: 9, data: Buffer.alloc(1400) }
      const small = { addr: ipB, port: 9, data: Buffer.alloc(100) }
      const r = tx.sendBatch([big, small])
      assert.equal(r.errors, [{ index: 0, code: 'EMSGSIZE' }], 'the oversized one is refused on its own')
      assert.is(r.sent, 1, 'the batch goes on after it')
      assert.is(frag.sendBatch([big]).sent, 1, 'without pmtuDiscover the kernel fragments instead')
    } finally {
      tx.close(); frag.close(); removeLab()
    }
  })

  test('close stops polling and closes the descriptor; errors carry errno codes', () => {
    makeLab()
    try {
      const s = openUdpSocket(ipA, 0, { netns: netns(nsA) })
      s.onReadable(() => {})
      const fd = s.fd
      assert.match(fs.readlinkSync(`/proc/self/fd/${fd}`), /^socket:/)
      s.close()
      s.close() // idempotent
      assert.ok(s.closed)
      assert.is(s.fd, -1)
      assert.throws(() => fs.readlinkSync(`/proc/self/fd/${fd}`))
      assert.throws(() => s.recvBatch(), /closed/)
      try { openPacketSocket('nosuchdev0', { netns: netns(nsA) }); assert.unreachable() } catch (e) {
        assert.is((e as { code?: string }).code, 'ENODEV')
      }
      try { openUdpSocket(ipB, 0, { netns: netns(nsA) }); assert.unreachable() } catch (e) {
        assert.is((e as { code?: string }).code, 'EADDRNOTAVAIL', 'an address of the other namespace is not ours')
      }
    } finally {
      removeLab()
    }
  })
}

test.run()
