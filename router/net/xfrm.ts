/**
 * Kernel IPsec for encrypted fastdp: carries out the xfrm operations fastdp-ipsec plans, probes
 * whether this kernel can do ESP at all, and removes everything of ours (`weave reset`).
 *
 * What gets installed for a peer pair (us A, peer B, vxlan port P):
 *   - SAs: transport-mode ESP, `rfc4106(gcm(aes))` with a 36-byte key (AES-256 + 4-byte salt),
 *     a 128-bit ICV, reqid ESP_REQID (the tag reset finds them by).
 *   - policy out: `src A/32 dst B/32 proto udp dport P`, tmpl ESP with the current outbound SPI
 *     pinned (so a rotation switches SAs exactly when the policy is updated), priority
 *     ESP_POLICY_PRIORITY (the tag for policies). The OVS vxlan port's route lookup carries the
 *     UDP ports, so the kernel encrypts every tunnel packet to B, relays and heartbeats included.
 *   - policy in: `src B/32 dst A/32 proto udp dport P`, tmpl ESP (any of our SPIs).
 *   - iptables: in WEAVE-ESP (jumped to from INPUT) a DROP of UDP from B to A:P that did not come
 *     through IPsec (`-m policy --dir in --pol none`): plaintext vxlan from B never reaches the
 *     datapath, whatever the kernel's UDP-encap policy check order.
 *
 * Keys never appear in a command line (which every local user can read in /proc): state commands
 * go to `ip -batch -` on stdin.
 */
import { spawn } from 'node:child_process'
import { NetCommandError, createRunner, type Runner } from './exec'
import * as fs from 'node:fs'
import { deleteRule, ensureChain, ensureRule, type Rule } from './iptables'

/** Tags our states (reqid) so `weave reset` finds them among anyone else's. */
export const ESP_REQID = 0x57ea
/** Tags our policies (priority; lower wins, this one is ordinary). */
export const ESP_POLICY_PRIORITY = 2975
export const ESP_AEAD = 'rfc4106(gcm(aes))'
export const ESP_ICV_BITS = 128
/** AES-256 key plus the 4-byte salt rfc4106 takes after it. */
export const ESP_KEY_BYTES = 36
/**
 * Inbound replay protection (packets; 0 would turn the check off). 32 is the most the kernel's
 * non-ESN bitmap takes; vxlan from one sender arrives nearly in order.
 */
export const ESP_REPLAY_WINDOW = 32
/** Our iptables chain for the plaintext drop (filter table, jumped to from INPUT). */
export const ESP_CHAIN = 'WEAVE-ESP'

export interface EspSa {
  src: string
  dst: string
  spi: number
  /** ESP_KEY_BYTES bytes. */
  key: Uint8Array
}

/** One host change; fastdp-ipsec plans lists of these, applyXfrm carries them out in order. */
export type XfrmOp =
  | { op: 'add-sa'; sa: EspSa }
  | { op: 'del-sa'; src: string; dst: string; spi: number }
  /** Add or replace; `spi` (out only) pins the SA the policy uses. */
  | { op: 'policy'; dir: 'in' | 'out'; src: string; dst: string; port: number; spi?: number }
  | { op: 'del-policy'; dir: 'in' | 'out'; src: string; dst: string; port: number }
  | { op: 'drop-plain'; src: string; dst: string; port: number }
  | { op: 'allow-plain'; src: string; dst: string; port: number }

const hex = (n: number) => '0x' + n.toString(16).padStart(8, '0')

/** `ip -batch` line(s) for one xfrm op; undefined for the iptables ones. Pure. */
export function xfrmLine(o: XfrmOp): string | undefined {
  switch (o.op) {
    case 'add-sa': {
      if (o.sa.key.length !== ESP_KEY_BYTES) throw new Error(`ESP key must be ${ESP_KEY_BYTES} bytes, got ${o.sa.key.length}`)
      const key = '0x' + Buffer.from(o.sa.key).toString('hex')
      // `update` would not create; `add` fails on a leftover with the same SPI, which the caller
      // avoids by deleting first (see applyXfrm).
      return `xfrm state add src ${o.sa.src} dst ${o.sa.dst} proto esp spi ${hex(o.sa.spi)} reqid ${ESP_REQID} mode transport replay-window ${ESP_REPLAY_WINDOW} aead ${ESP_AEAD} ${key} ${ESP_ICV_BITS}`
    }
    case 'del-sa':
      return `xfrm state delete src ${o.src} dst ${o.dst} proto esp spi ${hex(o.spi)}`
    case 'policy': {
      const spi = o.dir === 'out' && o.spi !== undefined ? ` spi ${hex(o.spi)}` : ''
      return `xfrm policy update src ${o.src}/32 dst ${o.dst}/32 proto udp dport ${o.port} dir ${o.dir} priority ${ESP_POLICY_PRIORITY} ` +
        `tmpl src ${o.src} dst ${o.dst} proto esp${spi} reqid ${ESP_REQID} mode transport`
    }
    case 'del-policy':
      return `xfrm policy delete src ${o.src}/32 dst ${o.dst}/32 proto udp dport ${o.port} dir ${o.dir}`
    default:
      return undefined
  }
}

/** The iptables rule that drops plaintext vxlan from `src`. Pure. */
export function plainDropRule(o: { src: string; dst: string; port: number }): Rule {
  return {
    table: 'filter', chain: ESP_CHAIN,
    spec: ['-s', `${o.src}/32`, '-d', `${o.dst}/32`, '-p', 'udp', '-m', 'udp', '--dport', String(o.port), '-m', 'policy', '--dir', 'in', '--pol', 'none', '-j', 'DROP'],
  }
}
const inputJump: Rule = { table: 'filter', chain: 'INPUT', spec: ['-j', ESP_CHAIN] }

/** Runs `ip -batch -` with `lines` on stdin (keys stay off command lines). */
export type BatchRunner = (lines: readonly string[], opts?: { force?: boolean }) => Promise<void>

export interface XfrmDeps {
  /** For iptables and probes; default createRunner(). */
  run?: Runner
  /** Default: spawn `ip -batch -`. */
  batch?: BatchRunner
}

export function ipBatch(lines: readonly string[], opts: { force?: boolean } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    // -force: go on after a failing line (teardown deletes what may already be gone)
    const child = spawn('ip', [...(opts.force ? ['-force'] : []), '-batch', '-'], { stdio: ['pipe', 'ignore', 'pipe'] })
    let err = ''
    child.stderr.on('data', (d) => { err += d })
    child.on('error', reject)
    child.on('close', (code) => {
      // ip names the failing line as `Command failed -:N`: say which command that was, minus keys
      const n = Number(/Command failed -:(\d+)/.exec(err)?.[1])
      const what = Number.isInteger(n) ? ` (${redact(lines[n - 1] ?? '')})` : ''
      if (code === 0) resolve()
      else reject(new NetCommandError(['ip', '-batch', '-'], code, err.trim() + what))
    })
    child.stdin.end(lines.join('\n') + '\n')
  })
}

/** A command line with its key replaced, for messages. */
export function redact(line: string): string {
  return line.replace(/0x[0-9a-f]{72}/g, '<key>')
}

export interface Xfrm {
  /**
   * Carry out `ops` in order; the first failure rejects (earlier ops stay applied). With
   * `bestEffort` (teardown) every op is tried and failures are only counted.
   */
  apply(ops: readonly XfrmOp[], opts?: { bestEffort?: boolean }): Promise<{ failed: number }>
  /** Bytes the outbound SA has protected so far (for byte-based rotation); undefined if unknown. */
  outBytes(sa: { src: string; dst: string; spi: number }): Promise<number | undefined>
}

export function createXfrm(deps: XfrmDeps = {}): Xfrm {
  const run = deps.run ?? createRunner({ timeoutMs: 15_000 })
  const batch = deps.batch ?? ipBatch
  let chainReady = false

  /** Drop rules we added (by source>dest:port): each is added and deleted once, without probing (`-C` costs a process too). */
  const drops = new Set<string>()

  async function iptablesOp(o: Extract<XfrmOp, { op: 'drop-plain' | 'allow-plain' }>): Promise<void> {
    const rule = plainDropRule(o)
    const key = `${o.src}>${o.dst}:${o.port}`
    if (o.op === 'allow-plain') {
      if (!drops.delete(key)) return
      await run(['iptables', '-w', '5', '-t', 'filter', '-D', rule.chain, ...rule.spec]).catch(() => undefined)
      return
    }
    if (drops.has(key)) return
    if (!chainReady) {
      await ensureChain(run, 'filter', ESP_CHAIN)
      await ensureRule(run, inputJump, true)
      chainReady = true
    }
    await run(['iptables', '-w', '5', '-t', 'filter', '-A', rule.chain, ...rule.spec])
    drops.add(key)
  }

  return {
    async apply(ops, opts = {}) {
      // Consecutive xfrm ops go in one `ip -batch`; iptables ops split the batches (order kept).
      const force = opts.bestEffort === true
      let failed = 0
      const attempt = async (fn: () => Promise<void>) => {
        if (!force) return fn()
        try { await fn() } catch { failed++ }
      }
      let lines: string[] = []
      const flush = async () => { if (lines.length) { const l = lines; lines = []; await attempt(() => batch(l, { force })) } }
      for (const o of ops) {
        const line = xfrmLine(o)
        if (line !== undefined) { lines.push(line); continue }
        await flush()
        await attempt(() => iptablesOp(o as Extract<XfrmOp, { op: 'drop-plain' | 'allow-plain' }>))
      }
      await flush()
      return { failed }
    },
    async outBytes(sa) {
      try {
        const r = await run(['ip', '-s', 'xfrm', 'state', 'get', 'src', sa.src, 'dst', sa.dst, 'proto', 'esp', 'spi', hex(sa.spi)])
        return parseStateBytes(r.stdout)
      } catch {
        return undefined
      }
    },
  }
}

/** `ip -s xfrm state`: the bytes of `lifetime current:` / `N(bytes), M(packets)`. Pure. */
export function parseStateBytes(text: string): number | undefined {
  const m = /lifetime current:\s*\n?\s*(\d+)\(bytes\)/.exec(text)
  return m ? Number(m[1]) : undefined
}

/**
 * Whether this host can protect fastdp with ESP: undefined when it can, else why not (status
 * text). Loads esp4 when it is not loaded, then installs and deletes one throw-away SA on
 * loopback addresses with our AEAD, which also proves that `ip xfrm` works and the cipher exists.
 */
export async function probeEsp(deps: { run?: Runner; batch?: BatchRunner; moduleLoaded?: () => boolean } = {}): Promise<string | undefined> {
  const run = deps.run ?? createRunner({ timeoutMs: 15_000 })
  const batch = deps.batch ?? ipBatch
  const loaded = deps.moduleLoaded ?? (() => fs.existsSync('/sys/module/esp4'))
  if (!loaded()) {
    try {
      await run(['modprobe', 'esp4'])
    } catch {
      return 'no esp4 module here'
    }
  }
  const sa = { src: '127.0.0.1', dst: '127.0.0.1', spi: 0xffffff57, key: new Uint8Array(ESP_KEY_BYTES) }
  try {
    await batch([xfrmLine({ op: 'add-sa', sa })!])
  } catch (err) {
    const why = err instanceof NetCommandError ? err.stderr.split('\n')[0] : (err as Error).message
    return `ip xfrm cannot install ${ESP_AEAD}: ${why.replace(/^Error:\s*/, '')}`
  }
  await batch([xfrmLine({ op: 'del-sa', ...sa })!]).catch(() => undefined)
  return undefined
}

/**
 * `weave reset` / daemon stop: delete every SA with our reqid, every policy with our priority,
 * and the plaintext drop chain. Safe to run twice, and where xfrm is missing.
 */
export async function removeAllEsp(deps: { run?: Runner; iptables?: boolean } = {}): Promise<{ removed: boolean }> {
  const run = deps.run ?? createRunner({ timeoutMs: 15_000 })
  let removed = false
  for (const argv of [
    ['ip', 'xfrm', 'policy', 'deleteall', 'priority', String(ESP_POLICY_PRIORITY)],
    ['ip', 'xfrm', 'state', 'deleteall', 'reqid', String(ESP_REQID)],
  ]) {
    try { await run(argv); removed = true } catch { /* no xfrm here, or nothing to delete */ }
  }
  // `weave reset` removes the chain with the other WEAVE* chains (iptables: false); daemon stop here.
  if (deps.iptables === false) return { removed }
  try {
    await deleteRule(run, inputJump)
    await run(['iptables', '-w', '5', '-t', 'filter', '-F', ESP_CHAIN])
    await run(['iptables', '-w', '5', '-t', 'filter', '-X', ESP_CHAIN])
  } catch { /* no chain */ }
  return { removed }
}

