/**
 * `npm run bench -- sleeve [seconds]`: TCP throughput between two "containers" on two lab hosts
 * through sleeve, plain and encrypted, against the kernel vxlan baseline measured first on the
 * same two hosts in the same run.
 *
 * Each host gets a `weave` bridge (MTU 1376) with the `vethwe-bridge` ⇄ `vethwe-pcap` pair and a
 * container namespace attached by `vethwepl` ⇄ `ethwe`, as the daemon builds it. One router
 * process per host (as the daemon runs one Sleeve per process) opens its sockets in the host's
 * namespace; iperf3 runs between the containers. Each run reports the routers' counters (drops,
 * truncation, super-frames), their CPU time (user/sys) and how long they waited runnable for a
 * CPU (schedstat: on a shared 2-core machine that, not the router's own work, is the limit),
 * the sender's `ss -ti` mid-run and its TCP retransmits (nstat).
 *
 * The containers keep TSO/checksum offload on (the veth default), so sleeve carries GSO
 * super-frames; SLEEVE_BENCH_TX_OFF=1 turns tx offload off in them (frame by frame, the old
 * way), SLEEVE_BENCH_PROF=DIR writes the routers' --cpu-prof profiles there,
 * SLEEVE_BENCH_NODE_FLAGS='--trace-deopt' passes node/V8 flags to the routers,
 * SLEEVE_BENCH_WARMUP_S=2 runs traffic that long before each measured run (steady state),
 * SLEEVE_BENCH_DEBUG=1 logs the routers to stderr, SLEEVE_BENCH_CIPHER=chacha20-poly1305 seals
 * with that cipher instead of the one daemons here would negotiate (AES-256-GCM with AES-NI). `npm run bench -- sleeve 10` runs 10 s each.
 * Traffic stays on the lab's underlay (192.168.250.x) and 10.40.0.0/24 inside the containers.
 *
 * Last line: {"bench":"sleeve","kernel_vxlan_gbps":…,"sleeve_gbps":…,"sleeve_encrypted_gbps":…,
 *             "sleeve_ratio":…,"sleeve_encrypted_ratio":…,"sleeve_cipher":…,"router_cpu_s_per_gbit":…}
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { promisify } from 'node:util'
import * as fs from 'node:fs'
import { systemClock, nullLogger, createLogger } from '../../router/deps'

const run = promisify(execFile)
const MTU = 1376
const PORT = 6783
const SECRET_HEX = '2a'.repeat(32)

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : undefined
}

// ---- router role: one Sleeve in this process, sockets in the host's namespace ------------

async function router(): Promise<void> {
  const { Sleeve, createSleeveCipher, sleeveCryptoReady } = await import('../../router/overlay')
  type SleeveCipherName = import('../../router/overlay').SleeveCipherName
  const self = Number(arg('self'))
  const other = Number(arg('other'))
  const encrypted = arg('secret') !== undefined
  if (encrypted) await sleeveCryptoReady()
  const logger = process.env.SLEEVE_BENCH_DEBUG ? createLogger({ write: (l) => console.error(l) }) : nullLogger
  const s = new Sleeve({ self, bridgeIf: 'vethwe-pcap', bindAddr: arg('bind')!, port: PORT, netns: arg('netns') }, {
    clock: systemClock(), logger,
    routes: {
      unicastNextHop: (dst) => (dst === other ? other : undefined),
      broadcastNextHops: (src) => (src === self ? [other] : []),
    },
  })
  s.setPeer(other, {
    addr: arg('peer')!, port: PORT,
    cipher: encrypted ? createSleeveCipher(Buffer.from(arg('secret')!, 'hex'), self < other, { cipher: arg('cipher') as SleeveCipherName }) : undefined,
  })
  s.start()
  console.log('ready')
  let cpu0 = process.cpuUsage()
  let [run0, wait0] = readSchedstat()
  process.stdin.on('data', (d) => {
    for (const line of d.toString().split('\n')) {
      if (line === 'reset') { cpu0 = process.cpuUsage(); [run0, wait0] = readSchedstat(); resetStats(s.stats as unknown as Record<string, unknown>); console.log('reset') }
      if (line === 'report') {
        const c = process.cpuUsage(cpu0)
        const [runNs, waitNs] = readSchedstat()
        console.log(JSON.stringify({ cpuS: (c.user + c.system) / 1e6, userS: c.user / 1e6, sysS: c.system / 1e6, waitS: (waitNs - wait0) / 1e9, runS: (runNs - run0) / 1e9, stats: s.stats }))
      }
    }
  })
  process.stdin.on('end', () => { s.stop(); process.exit(0) })
}

/** Time this process's threads ran and waited runnable for a CPU (ns), from /proc schedstat. */
function readSchedstat(): [number, number] {
  let run = 0
  let wait = 0
  try {
    for (const t of fs.readdirSync('/proc/self/task')) {
      const [r, w] = fs.readFileSync(`/proc/self/task/${t}/schedstat`, 'utf8').trim().split(/\s+/).map(Number)
      run += r
      wait += w
    }
  } catch { /* no schedstat */ }
  return [run, wait]
}

function resetStats(st: Record<string, unknown>): void {
  for (const k of Object.keys(st)) {
    if (typeof st[k] === 'number') st[k] = 0
    else if (k === 'drops') st[k] = {}
  }
}

// ---- driver ---------------------------------------------------------------------------

class RouterProc {
  private lines: string[] = []
  private waiters: Array<() => void> = []
  constructor(readonly name: string, readonly p: ChildProcess) {
    let buf = ''
    p.stdout!.on('data', (d: Buffer) => {
      buf += d.toString()
      const parts = buf.split('\n')
      buf = parts.pop()!
      // V8 traces asked for with SLEEVE_BENCH_NODE_FLAGS ('[…' lines) go to stderr, not the protocol
      for (const l of parts) { if (l.startsWith('[')) process.stderr.write(`${this.name}: ${l}\n`); else this.lines.push(l) }
      for (const w of this.waiters.splice(0)) w()
    })
    p.on('exit', () => { for (const w of this.waiters.splice(0)) w() })
  }
  async next(): Promise<string> {
    for (;;) {
      const l = this.lines.shift()
      if (l !== undefined) return l
      if (this.p.exitCode !== null || this.p.signalCode !== null) throw new Error(`router ${this.name} exited`)
      await new Promise<void>((r) => this.waiters.push(r))
    }
  }
  async ask(cmd: string): Promise<string> { this.p.stdin!.write(cmd + '\n'); return this.next() }
  stop(): void { this.p.stdin!.end(); setTimeout(() => this.p.kill('SIGKILL'), 2000).unref() }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('skip: the sleeve benchmark needs root (lab namespaces, packet sockets)')
    console.log(JSON.stringify({ bench: 'sleeve', skipped: 'needs root' }))
    return
  }
  const seconds = Number(process.argv[2] && !process.argv[2].startsWith('--') ? process.argv[2] : 5)
  const { createLab, measureKernelVxlan } = await import('../lab')
  const lab = await createLab({ hosts: 2 })
  const ctrs = lab.hosts.map((h) => `${h.ns}c`)
  const cleanup = () => { for (const c of ctrs) { try { execFileSync('ip', ['netns', 'del', c], { stdio: 'ignore' }) } catch { /* gone */ } } }
  process.on('exit', cleanup)
  const routers: RouterProc[] = []
  try {
    const kernel = await measureKernelVxlan(lab.hosts[0], lab.hosts[1], { seconds })
    console.log(`kernel vxlan: ${kernel.toFixed(2)} Gbit/s`)
    for (const [i, h] of lab.hosts.entries()) {
      const c = ctrs[i]
      await h.sh(`
        set -e
        ip link add weave mtu ${MTU} type bridge
        ip link add vethwe-bridge mtu ${MTU} type veth peer name vethwe-pcap mtu ${MTU}
        ip link set vethwe-bridge master weave up
        ip link set vethwe-pcap up
        ip link set weave up
        ip link add vethwepl mtu ${MTU} type veth peer name ethwe mtu ${MTU}
        ip link set vethwepl master weave up
      `)
      await run('ip', ['netns', 'add', c])
      await h.exec(['ip', 'link', 'set', 'ethwe', 'netns', c])
      const inC = (...a: string[]) => run('ip', ['netns', 'exec', c, ...a])
      await inC('ip', 'link', 'set', 'lo', 'up')
      await inC('ip', 'addr', 'add', `10.40.0.${i + 1}/24`, 'dev', 'ethwe')
      await inC('ip', 'link', 'set', 'ethwe', 'up')
      if (process.env.SLEEVE_BENCH_TX_OFF) await inC('ethtool', '-K', 'ethwe', 'tx', 'off').catch(() => undefined)
    }
    // as two daemons on this machine would negotiate it, unless SLEEVE_BENCH_CIPHER names one
    const { sleeveCiphers } = await import('../../router/overlay')
    const cipher = process.env.SLEEVE_BENCH_CIPHER ?? sleeveCiphers()[0]
    console.log(`encrypted runs use ${cipher}`)
    const results: Record<string, { gbps: number; cpuS: number; retrans: number }> = {}
    for (const mode of ['plain', 'encrypted'] as const) {
      const procs = lab.hosts.map((h, i) => {
        const o = lab.hosts[1 - i]
        const argv = ['--enable-source-maps', __filename, '--role', 'router', '--self', String(i + 1), '--other', String(2 - i),
          '--bind', h.underlayIp, '--peer', o.underlayIp, '--netns', `/var/run/netns/${h.ns}`,
          ...(mode === 'encrypted' ? ['--secret', SECRET_HEX, '--cipher', cipher] : [])]
        const prof = [
          ...(process.env.SLEEVE_BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.SLEEVE_BENCH_PROF] : []),
          ...(process.env.SLEEVE_BENCH_NODE_FLAGS ? process.env.SLEEVE_BENCH_NODE_FLAGS.split(' ').filter(Boolean) : []),
        ]
        return new RouterProc(h.name, spawn(process.execPath, [...prof, ...argv], { stdio: ['pipe', 'pipe', 'inherit'] }))
      })
      routers.push(...procs)
      try {
        for (const r of procs) { const l = await r.next(); if (l !== 'ready') throw new Error(`router ${r.name}: ${l}`) }
        await run('ip', ['netns', 'exec', ctrs[0], 'busybox', 'ping', '-c', '3', '-i', '0.2', '-w', '10', '10.40.0.2'])
        // SLEEVE_BENCH_WARMUP_S: traffic before the measured run, so it sees JIT-compiled routers
        // (a fresh router spends up to a fifth of its CPU in V8's compiler for its first seconds)
        const warmup = Number(process.env.SLEEVE_BENCH_WARMUP_S ?? 0)
        if (warmup > 0) await iperfOnce(ctrs, warmup).catch(() => 0)
        for (const r of procs) await r.ask('reset')
        const nstat0 = await nstat(ctrs[0])
        const srv = spawn('ip', ['netns', 'exec', ctrs[1], 'iperf3', '-s', '-1', '-p', '5201'], { stdio: 'ignore' })
        let gbps = 0
        try {
          await waitListen(ctrs[1], 5201)
          const client = run('ip', ['netns', 'exec', ctrs[0], 'iperf3', '-c', '10.40.0.2', '-p', '5201', '-t', String(seconds), '-J'],
            { timeout: (seconds + 30) * 1000 }).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }))
          // mid-run view of the sender's TCP state (cwnd, rtt, retrans) for the log
          await new Promise((res) => setTimeout(res, (seconds * 1000) / 2))
          const ss = await run('ip', ['netns', 'exec', ctrs[0], 'ss', '-Htin', 'dport = :5201']).catch(() => ({ stdout: '' }))
          const info = ss.stdout.split('\n').map((l) => l.trim()).filter((l) => /cwnd/.test(l)).sort((x, y) => y.length - x.length)[0]
          if (info) console.log(`  ${mode} sender TCP mid-run: ${info.replace(/\s+/g, ' ').slice(0, 400)}`)
          const r = await client
          const j = JSON.parse(r.stdout || '{}') as { error?: string; end?: { sum_received?: { bits_per_second: number } } }
          if (!j.end?.sum_received) throw new Error(`iperf3 over sleeve (${mode}): ${j.error ?? 'no result'}`)
          gbps = j.end.sum_received.bits_per_second / 1e9
        } finally {
          srv.kill('SIGKILL')
        }
        const nstat1 = await nstat(ctrs[0])
        const retrans = (nstat1.TcpRetransSegs ?? 0) - (nstat0.TcpRetransSegs ?? 0)
        let cpuS = 0
        for (const r of procs) {
          const rep = JSON.parse(await r.ask('report')) as { cpuS: number; userS: number; sysS: number; waitS: number; stats: unknown }
          cpuS += rep.cpuS
          console.log(`  ${mode} router ${r.name}: cpu ${rep.cpuS.toFixed(2)} s (user ${rep.userS.toFixed(2)}, sys ${rep.sysS.toFixed(2)}; ` +
            `waited ${rep.waitS.toFixed(2)} s runnable for a CPU) ${JSON.stringify(rep.stats)}`)
        }
        console.log(`sleeve ${mode}: ${gbps.toFixed(2)} Gbit/s, routers' CPU ${cpuS.toFixed(2)} s, sender TCP retransmits ${retrans}`)
        results[mode] = { gbps, cpuS, retrans }
      } finally {
        for (const r of procs) r.stop()
        await new Promise((r) => setTimeout(r, 300))
      }
    }
    const p = results.plain
    const e = results.encrypted
    const round = (x: number) => Math.round(x * 1000) / 1000
    console.log(JSON.stringify({
      bench: 'sleeve',
      kernel_vxlan_gbps: round(kernel),
      sleeve_gbps: round(p.gbps),
      sleeve_encrypted_gbps: round(e.gbps),
      sleeve_ratio: round(p.gbps / kernel),
      sleeve_encrypted_ratio: round(e.gbps / kernel),
      sleeve_cipher: cipher,
      router_cpu_s_per_gbit: round(p.cpuS / (p.gbps * seconds)),
      router_cpu_s_per_gbit_encrypted: round(e.cpuS / (e.gbps * seconds)),
      retransmits: p.retrans,
      retransmits_encrypted: e.retrans,
    }))
  } finally {
    for (const r of routers) r.p.kill('SIGKILL')
    cleanup()
    await lab.teardown()
  }
}

/** A short untimed iperf3 run between the two containers; Gbit/s. */
async function iperfOnce(ctrs: string[], seconds: number): Promise<number> {
  const srv = spawn('ip', ['netns', 'exec', ctrs[1], 'iperf3', '-s', '-1', '-p', '5202'], { stdio: 'ignore' })
  try {
    await waitListen(ctrs[1], 5202)
    const r = await run('ip', ['netns', 'exec', ctrs[0], 'iperf3', '-c', '10.40.0.2', '-p', '5202', '-t', String(seconds), '-J'], { timeout: (seconds + 30) * 1000 })
    return ((JSON.parse(r.stdout) as { end?: { sum_received?: { bits_per_second: number } } }).end?.sum_received?.bits_per_second ?? 0) / 1e9
  } finally {
    srv.kill('SIGKILL')
  }
}

async function nstat(ns: string): Promise<Record<string, number>> {
  const r = await run('ip', ['netns', 'exec', ns, 'nstat', '-a', '-z', '-s']).catch(() => ({ stdout: '' }))
  const out: Record<string, number> = {}
  for (const l of r.stdout.split('\n')) { const m = /^(\S+)\s+(\d+)/.exec(l); if (m) out[m[1]] = Number(m[2]) }
  return out
}

async function waitListen(ns: string, port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const r = await run('ip', ['netns', 'exec', ns, 'ss', '-Hltn', `sport = :${port}`]).catch(() => ({ stdout: '' }))
    if (r.stdout.trim()) return
    await new Promise((res) => setTimeout(res, 50))
  }
  throw new Error(`iperf3 server in ${ns} did not listen`)
}

if (arg('role') === 'router') {
  router().catch((err) => { console.error(err); process.exit(1) })
} else {
  main().catch((err) => { console.error(err); process.exit(1) })
}
