/**
 * Running the host tools (`ip`, `sysctl`, `iptables`, `ethtool`, ...) without a shell.
 *
 * Every host change in router/net goes through a `Runner`, so unit tests swap in a recording fake
 * and the lab runs the same code inside a lab namespace (`netns` option) instead of the root one.
 */
import { execFile } from 'node:child_process'

export interface RunResult { stdout: string; stderr: string }

/** Runs one command (argv[0] looked up on PATH); rejects with a NetCommandError on failure. */
export type Runner = (argv: readonly string[]) => Promise<RunResult>

/** A host command failed: carries the argv, exit code and stderr so the log line says what broke. */
export class NetCommandError extends Error {
  readonly code = 'NET_COMMAND_FAILED'
  constructor(readonly argv: readonly string[], readonly exitCode: number | null, readonly stderr: string, options?: { cause?: unknown }) {
    super(`command failed (exit ${exitCode ?? 'signal'}): ${argv.join(' ')}: ${stderr.trim() || '(no stderr)'}`, options)
    this.name = 'NetCommandError'
  }
}

/** Path of a named namespace as `ip netns add` creates it. */
export function netnsPath(name: string): string {
  return `/var/run/netns/${name}`
}

/**
 * argv that runs `argv` inside the network namespace at `path`. nsenter (not `ip netns exec`)
 * because it does not remount /sys, and only the net namespace changes.
 */
export function inNetns(path: string, argv: readonly string[]): string[] {
  return ['nsenter', `--net=${path}`, '--', ...argv]
}

export interface RunnerOptions {
  /** Run every command inside this named namespace (lab hosts); default: our own namespace. */
  netns?: string
  /** Give up on one command after this long (a wedged xtables lock must not hang the daemon). */
  timeoutMs?: number
}

/** The real runner: child_process.execFile, never a shell. */
export function createRunner(opts: RunnerOptions = {}): Runner {
  const timeout = opts.timeoutMs ?? 30_000
  return (argv) => {
    const full = opts.netns ? inNetns(netnsPath(opts.netns), argv) : [...argv]
    return new Promise((resolve, reject) => {
      execFile(full[0], full.slice(1), { timeout, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
        if (err) {
          const e = err as NodeJS.ErrnoException & { code?: number | string }
          const exit = typeof e.code === 'number' ? e.code : null
          const why = stderr || (typeof e.code === 'string' ? `${e.code}: ${e.message}` : e.message)
          reject(new NetCommandError(full, exit, why, { cause: err }))
          return
        }
        resolve({ stdout, stderr })
      })
    })
  }
}

/** Run `argv`; true when it succeeded, false when it failed (for probes such as `iptables -C`). */
export async function succeeds(run: Runner, argv: readonly string[]): Promise<boolean> {
  try {
    await run(argv)
    return true
  } catch (err) {
    if (err instanceof NetCommandError) return false
    throw err
  }
}
