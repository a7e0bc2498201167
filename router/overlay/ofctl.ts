/**
 * The flow-programming edge of fastdp: OpenFlow through `ovs-ofctl`, each change one bundle (an
 * atomic OpenFlow 1.4 transaction: all its flow-mods apply, or none). Behind `FlowProgrammer`,
 * so another way to program flows (a native OpenFlow client) can replace it.
 */
import { spawn } from 'node:child_process'
import * as path from 'node:path'
import { FLOW_COOKIE, LEARNT_COOKIE, changeScript, formatFlow, isEmptyChange, type Flow, type FlowChange } from './fastdp-flows'

export interface FlowStat {
  cookie: number
  table: number
  priority: number
  /** As the switch prints it (numbers, not port names). */
  match: string
  actions: string
  packets: number
  bytes: number
}

export interface FlowProgrammer {
  /** First sync: the bridge ends up holding exactly `flows` (anything else on it goes). */
  replaceAll(flows: readonly Flow[]): Promise<void>
  /** One incremental change, atomically. */
  apply(change: FlowChange): Promise<void>
  /** The bridge's flows with their counters. */
  dump(): Promise<FlowStat[]>
  /** Delete our flows (and the learnt ones), leaving others' alone. */
  removeAll(): Promise<void>
}

export interface OfctlOptions {
  bridge: string
  /** Directory holding `BRIDGE.mgmt` (OVS_RUNDIR); default /var/run/openvswitch. */
  rundir?: string
  /** The ovs-ofctl binary; default `ovs-ofctl` from PATH. */
  binary?: string
  timeoutMs?: number
}

export class OfctlError extends Error {
  readonly code = 'OFCTL_FAILED'
  constructor(readonly argv: string[], readonly exitCode: number | null, readonly stderr: string) {
    super(`${argv.join(' ')} failed (${exitCode ?? 'killed'}): ${stderr.trim().split('\n').slice(-3).join(' | ') || '(no output)'}`)
  }
}

export const DEFAULT_OVS_RUNDIR = '/var/run/openvswitch'

/** Where OVS keeps a bridge's management socket: `unix:RUNDIR/BRIDGE.mgmt`. */
export function bridgeTarget(bridge: string, rundir = DEFAULT_OVS_RUNDIR): string {
  return `unix:${path.join(rundir, `${bridge}.mgmt`)}`
}

export function createOfctlProgrammer(opts: OfctlOptions): FlowProgrammer {
  const target = bridgeTarget(opts.bridge, opts.rundir)
  const bin = opts.binary ?? 'ovs-ofctl'
  const base = ['-O', 'OpenFlow14']
  const run = (args: string[], input?: string) => runOfctl([bin, ...base, ...args], input, opts.timeoutMs ?? 15_000)
  return {
    async replaceAll(flows) {
      await run(['--bundle', 'replace-flows', target, '-'], flows.map((f) => `${formatFlow(f)}\n`).join(''))
    },
    async apply(change) {
      if (isEmptyChange(change)) return
      await run(['--bundle', 'add-flows', target, '-'], changeScript(change))
    },
    async dump() {
      return parseDumpFlows((await run(['--no-names', 'dump-flows', target])).stdout)
    },
    async removeAll() {
      await run(['--bundle', 'add-flows', target, '-'],
        `delete cookie=0x${FLOW_COOKIE.toString(16)}/-1\ndelete cookie=0x${LEARNT_COOKIE.toString(16)}/-1\n`)
    },
  }
}

function runOfctl(argv: string[], input: string | undefined, timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = '', stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    const timer = setTimeout(() => { child.kill('SIGKILL'); stderr += `\n(timed out after ${timeoutMs} ms)` }, timeoutMs)
    child.on('error', (err) => { clearTimeout(timer); reject(new OfctlError(argv, null, err.message)) })
    child.on('close', (code) => {
      clearTimeout(timer)
      if (code === 0) resolve({ stdout, stderr })
      else reject(new OfctlError(argv, code, stderr))
    })
    child.stdin.on('error', () => { /* reported through close */ })
    child.stdin.end(input ?? '')
  })
}

/** `ovs-ofctl dump-flows` output → one FlowStat per flow line. */
export function parseDumpFlows(text: string): FlowStat[] {
  const out: FlowStat[] = []
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!line.startsWith('cookie=') && !/^(duration|table|n_packets)=/.test(line)) continue
    const ai = line.indexOf(' actions=')
    if (ai < 0) continue
    const actions = line.slice(ai + ' actions='.length).trim()
    const head = line.slice(0, ai)
    // "cookie=0x1, duration=1.2s, table=0, n_packets=3, n_bytes=180, [idle_age=1, ]priority=200,in_port=1,..."
    const parts = head.split(', ')
    const stat: FlowStat = { cookie: 0, table: 0, priority: 32768, match: '', actions, packets: 0, bytes: 0 }
    // every part but the last is a statistic; the last is "priority=N,match…"
    const matchPart = parts.pop() ?? ''
    for (const part of parts) {
      const eq = part.indexOf('=')
      const k = part.slice(0, eq), v = part.slice(eq + 1)
      if (k === 'cookie') stat.cookie = Number(v)
      else if (k === 'table') stat.table = Number(v)
      else if (k === 'n_packets') stat.packets = Number(v)
      else if (k === 'n_bytes') stat.bytes = Number(v)
    }
    const rest: string[] = []
    for (const f of matchPart.split(',')) {
      if (f.startsWith('priority=')) stat.priority = Number(f.slice('priority='.length))
      else if (f) rest.push(f)
    }
    stat.match = rest.join(',')
    out.push(stat)
  }
  return out
}
