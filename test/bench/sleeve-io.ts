/**
 * `npm run bench -- sleeve-io [seconds]`: UDP throughput of the native batched path
 * (recvmmsg/sendmmsg with UDP GSO/GRO, and the same without GSO/GRO) against Node's plain
 * `dgram`, all measured in this run, one sender
 * process and one receiver process each, in two lab namespaces joined by a veth pair.
 * 1,400-byte datagrams; rates are what the receiver got (the sender overruns it in both cases).
 * Traffic stays between 198.18.x.1 and .2, addresses that exist only in namespaces made here.
 *
 * Last line: {"bench":"sleeve-io","native_pps":…,"dgram_pps":…,"native_gbps":…,"ratio":…}
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import * as dgram from 'node:dgram'
import { performance } from 'node:perf_hooks'
import { openUdpSocket } from '../../router/native'

const DATAGRAM_BYTES = 1400
const PORT = 6783

/** native: recvmmsg/sendmmsg with UDP GSO/GRO; native-nooffload: the same batches, no GSO/GRO. */
type Mode = 'native' | 'native-nooffload' | 'dgram'

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : undefined
}

// ---- child roles (run inside a lab namespace) ------------------------------------------

/** Counts datagrams until stdin closes, then prints {received, seconds} between first and last. */
function receiver(mode: Mode, bind: string): void {
  let received = 0
  let first = 0
  let last = 0
  const count = (n: number) => {
    if (!n) return
    const t = performance.now()
    if (!received) first = t
    received += n
    last = t
  }
  let close: () => void
  if (mode !== 'dgram') {
    const s = openUdpSocket(bind, PORT, { batch: 64, offload: mode === 'native' })
    s.onReadable(() => {
      // a few batches per wake-up, then let the loop breathe
      for (let i = 0; i < 8; i++) { const n = s.recvBatch().length; count(n); if (!n) break }
    })
    close = () => s.close()
    console.log('ready')
  } else {
    const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 })
    s.on('message', () => count(1))
    s.bind(PORT, bind, () => console.log('ready'))
    close = () => s.close()
  }
  process.stdin.resume()
  process.stdin.on('end', () => {
    close()
    console.log(JSON.stringify({ received, seconds: (last - first) / 1000 }))
  })
}

/** Sends as fast as it can for `seconds`, then prints {sent}. */
async function sender(mode: Mode, bind: string, to: string, seconds: number): Promise<void> {
  const payload = Buffer.alloc(DATAGRAM_BYTES, 0x5a)
  const deadline = performance.now() + seconds * 1000
  let sent = 0
  if (mode !== 'dgram') {
    const s = openUdpSocket(bind, 0, { batch: 64, offload: mode === 'native' })
    const batch = Array.from({ length: 64 }, () => ({ addr: to, port: PORT, data: payload }))
    while (performance.now() < deadline) {
      for (let i = 0; i < 32; i++) {
        const r = s.sendBatch(batch)
        sent += r.sent
        if (r.notSent) { await s.whenWritable(); break }
      }
    }
    s.close()
  } else {
    const s = dgram.createSocket({ type: 'udp4', sendBufferSize: 8 << 20 })
    await new Promise<void>((r) => s.bind(0, bind, () => r()))
    // keep a bounded number of sends in flight so the queue in Node stays small
    await new Promise<void>((resolve) => {
      let inflight = 0
      let done = false
      const pump = () => {
        if (done) return
        if (performance.now() >= deadline) { done = true; const wait = () => (inflight ? setImmediate(wait) : resolve()); wait(); return }
        while (inflight < 256) {
          inflight++
          s.send(payload, PORT, to, (err) => { inflight--; if (!err) sent++; if (inflight < 128) pump() })
        }
      }
      pump()
    })
    s.close()
  }
  console.log(JSON.stringify({ sent }))
}

// ---- the lab and the orchestration -----------------------------------------------------

const tag = `${process.pid % 100000}`
const nsA = `wnatb${tag}-a`
const nsB = `wnatb${tag}-b`
const subnet = `198.18.${(process.pid % 250) + 1}`
const ipA = `${subnet}.1`
const ipB = `${subnet}.2`
const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] })

function removeLab(): void {
  for (const ns of [nsA, nsB]) { try { ip('netns', 'del', ns) } catch { /* not there */ } }
}

function makeLab(): void {
  removeLab()
  ip('netns', 'add', nsA)
  ip('netns', 'add', nsB)
  ip('-n', nsA, 'link', 'add', 'bench0', 'type', 'veth', 'peer', 'name', 'bench0', 'netns', nsB)
  ip('-n', nsA, 'addr', 'add', `${ipA}/24`, 'dev', 'bench0')
  ip('-n', nsB, 'addr', 'add', `${ipB}/24`, 'dev', 'bench0')
  for (const ns of [nsA, nsB]) {
    ip('-n', ns, 'link', 'set', 'lo', 'up')
    ip('-n', ns, 'link', 'set', 'bench0', 'up')
  }
}

function inNs(ns: string, args: string[]): ChildProcess {
  return spawn('ip', ['netns', 'exec', ns, process.execPath, __filename, ...args], { stdio: ['pipe', 'pipe', 'inherit'] })
}

/** The next line the child prints. */
function line(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = ''
    const onData = (d: Buffer) => {
      buf += d.toString()
      const i = buf.indexOf('\n')
      if (i >= 0) { child.stdout!.off('data', onData); child.off('exit', onExit); resolve(buf.slice(0, i)) }
    }
    const onExit = (code: number | null) => reject(new Error(`child exited (${code}) before printing`))
    child.stdout!.on('data', onData)
    child.on('exit', onExit)
  })
}

async function measure(mode: Mode, seconds: number): Promise<{ pps: number; sent: number; received: number }> {
  const rx = inNs(nsB, ['--role', 'recv', '--mode', mode, '--bind', ipB])
  try {
    if ((await line(rx)) !== 'ready') throw new Error('receiver did not start')
    const tx = inNs(nsA, ['--role', 'send', '--mode', mode, '--bind', ipA, '--to', ipB, '--seconds', String(seconds)])
    const { sent } = JSON.parse(await line(tx)) as { sent: number }
    await new Promise((r) => setTimeout(r, 300)) // let the receiver drain its queue
    const result = line(rx)
    rx.stdin!.end()
    const { received, seconds: span } = JSON.parse(await result) as { received: number; seconds: number }
    const pps = span > 0 ? received / span : 0
    console.log(`${mode}: sent ${sent}, received ${received} in ${span.toFixed(2)} s → ${Math.round(pps)} datagrams/s, ${(pps * DATAGRAM_BYTES * 8 / 1e9).toFixed(2)} Gbit/s`)
    return { pps, sent, received }
  } finally {
    rx.kill()
  }
}

async function main(): Promise<void> {
  const role = arg('role')
  if (role === 'recv') return receiver(arg('mode') as Mode, arg('bind')!)
  if (role === 'send') return sender(arg('mode') as Mode, arg('bind')!, arg('to')!, Number(arg('seconds')))

  if (process.getuid?.() !== 0) {
    console.log('sleeve-io needs root (it creates two network namespaces)')
    console.log(JSON.stringify({ bench: 'sleeve-io', skipped: 'needs root' }))
    return
  }
  const seconds = Number(process.argv[2] ?? 5)
  process.on('exit', removeLab)
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => { removeLab(); process.exit(130) })
  makeLab()
  try {
    const native = await measure('native', seconds)
    const batchedOnly = await measure('native-nooffload', seconds)
    const plain = await measure('dgram', seconds)
    const gbps = (pps: number) => Number((pps * DATAGRAM_BYTES * 8 / 1e9).toFixed(3))
    console.log(JSON.stringify({
      bench: 'sleeve-io',
      native_pps: Math.round(native.pps),
      dgram_pps: Math.round(plain.pps),
      native_gbps: gbps(native.pps),
      dgram_gbps: gbps(plain.pps),
      native_nooffload_pps: Math.round(batchedOnly.pps),
      ratio: Number((native.pps / plain.pps).toFixed(2)),
      nooffload_ratio: Number((batchedOnly.pps / plain.pps).toFixed(2)),
      datagram_bytes: DATAGRAM_BYTES,
      seconds_each: seconds,
    }))
  } finally {
    removeLab()
  }
}

main().catch((err) => { console.error(err); removeLab(); process.exit(1) })
