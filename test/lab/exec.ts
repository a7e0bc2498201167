/**
 * Running commands for the lab: in the root namespace or inside a host's network namespace.
 *
 * Two ways in (see `Enter`): `ip netns exec` (the default) also gives the command a /sys of the
 * namespace, so `/sys/class/net/...` shows the host's own devices, as on a real machine; dockerd
 * and OVS are started with `nsenter --net` instead, because under the remounted /sys dockerd fails
 * with "Devices cgroup isn't mounted" (LAB-NOTES).
 */
import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'

export interface ExecResult {
  code: number
  stdout: string
  stderr: string
}

/**
 * How a command enters a host: `netns-exec` = `ip netns exec NS` (own /sys, own mount namespace);
 * `nsenter` = `nsenter --net=...` (network namespace only; /sys is still the root namespace's).
 */
export type Enter = 'netns-exec' | 'nsenter'

export interface ExecOptions {
  /** How to enter the host's namespace (host commands only); default `netns-exec`. */
  enter?: Enter
  /** Resolve with the non-zero code instead of throwing. */
  allowFail?: boolean
  /** Extra environment, merged over process.env. */
  env?: Record<string, string>
  /** Written to the command's stdin, then stdin is closed. */
  input?: string | Buffer
  /** Kill the command (SIGKILL) after this long; default 120 s. */
  timeoutMs?: number
  cwd?: string
}

/** A command that exited non-zero; `result` carries its output. */
export class ExecError extends Error {
  readonly code = 'exec-failed'
  constructor(readonly cmd: string[], readonly result: ExecResult) {
    super(`command failed (exit ${result.code}): ${cmd.join(' ')}\n${result.stderr.trim() || result.stdout.trim()}`)
  }
}

export function netnsPath(ns: string): string {
  return `/var/run/netns/${ns}`
}

/** argv that runs `cmd` inside network namespace `ns` (root namespace when ns is undefined). */
export function inNs(ns: string | undefined, cmd: string[], enter: Enter = 'netns-exec'): string[] {
  if (!ns) return cmd
  return enter === 'nsenter' ? ['nsenter', `--net=${netnsPath(ns)}`, '--', ...cmd] : ['ip', 'netns', 'exec', ns, ...cmd]
}

/** Run `cmd` (argv, no shell) to completion. Throws ExecError on non-zero exit unless allowFail. */
export function run(cmd: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd[0], cmd.slice(1), {
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
      cwd: opts.cwd,
      timeout: opts.timeoutMs ?? 120_000,
      killSignal: 'SIGKILL',
      maxBuffer: 64 * 1024 * 1024,
      encoding: 'utf8',
    }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: number | string; killed?: boolean }) | null
      if (e && typeof e.code === 'string') {
        // spawn failure (ENOENT...): no exit code at all
        reject(new Error(`cannot run ${cmd[0]}: ${e.message}`, { cause: e }))
        return
      }
      const code = e ? (typeof e.code === 'number' ? e.code : e.killed ? 137 : 1) : 0
      const result = { code, stdout, stderr }
      if (code !== 0 && !opts.allowFail) reject(new ExecError(cmd, result))
      else resolve(result)
    })
    if (opts.input !== undefined) child.stdin?.end(opts.input)
    else child.stdin?.end()
  })
}

/** Synchronous twin of `run`, for teardown paths that must work inside 'exit' handlers. */
export function runSync(cmd: string[], opts: ExecOptions = {}): ExecResult {
  try {
    const stdout = execFileSync(cmd[0], cmd.slice(1), {
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
      timeout: opts.timeoutMs ?? 60_000,
      killSignal: 'SIGKILL',
      maxBuffer: 64 * 1024 * 1024,
      encoding: 'utf8',
      input: opts.input,
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    return { code: 0, stdout, stderr: '' }
  } catch (err) {
    const e = err as { status?: number | null; stdout?: string; stderr?: string; message: string }
    const result = { code: e.status ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? e.message }
    if (!opts.allowFail) throw new ExecError(cmd, result)
    return result
  }
}

/**
 * Start a long-running process. It gets its own process group (detached), so a Ctrl-C on the
 * test's terminal reaches only the test process, whose handler then tears the lab down in order.
 */
export function startProcess(cmd: string[], opts: SpawnOptions = {}): ChildProcess {
  const child = spawn(cmd[0], cmd.slice(1), { stdio: 'ignore', detached: true, ...opts })
  // An 'error' event (e.g. ENOENT) must not crash the test process; callers check liveness.
  child.on('error', () => {})
  return child
}

/** Sleep without blocking the event loop. */
export const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Sleep that blocks the thread: only for synchronous teardown paths. */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/** Poll `check` every `everyMs` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 20_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastErr: unknown
  for (;;) {
    try {
      const v = await check()
      if (v) return v
    } catch (err) { lastErr = err }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${lastErr instanceof Error ? lastErr.message : JSON.stringify(lastErr)}` : ''}`)
    }
    await delay(everyMs)
  }
}
