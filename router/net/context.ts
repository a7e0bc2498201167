/**
 * What every host-plumbing operation needs: a command runner, a logger, and how to name our own
 * network namespace to `ip ... netns X` when a command runs inside a container's namespace.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { Logger } from '../deps'
import { NetCommandError, Runner, inNetns } from './exec'
import type { NativeNetlink } from '../native'

/** A network namespace: a process in it, a path to its nsfs file, or a name under /var/run/netns. */
export type NetnsRef = { pid: number } | { path: string } | { name: string }

export interface NetContext {
  run: Runner
  log: Logger
  /** How a command in another namespace names ours for `ip link ... netns X`: a netns name or a pid. */
  hostNetns: string
  /** Tool for gratuitous ARP; 'none' skips it. */
  arping: () => 'busybox' | 'arping' | 'none'
  /** Netlink calls of the native addon for attach (no process starts), or undefined: spawn `ip`. */
  netlink?: () => NativeNetlink | undefined
}

/** The nsfs path of a namespace reference. */
export function netnsRefPath(ref: NetnsRef): string {
  if ('pid' in ref) {
    if (!Number.isInteger(ref.pid) || ref.pid <= 0) throw new Error(`bad pid ${ref.pid}`)
    return `/proc/${ref.pid}/ns/net`
  }
  if ('path' in ref) {
    if (!ref.path.startsWith('/')) throw new Error(`netns path must be absolute: ${ref.path}`)
    return ref.path
  }
  if (!/^[A-Za-z0-9_.-]+$/.test(ref.name) || ref.name.startsWith('.')) throw new Error(`bad netns name ${JSON.stringify(ref.name)}`)
  return `/var/run/netns/${ref.name}`
}

/** Run `argv` inside the namespace `ref`. */
export function runIn(ctx: NetContext, ref: NetnsRef, argv: readonly string[]) {
  return ctx.run(inNetns(netnsRefPath(ref), argv))
}

/** nsenter could not open the namespace: the container has gone. */
export function isNetnsGone(err: unknown): boolean {
  return err instanceof NetCommandError && /nsenter: .*(No such file|reassociate|cannot open)/i.test(err.stderr)
}

/** Run `argv`; on failure log a warning instead of throwing (for nice-to-have settings). */
export async function bestEffort(ctx: NetContext, argv: readonly string[], why: string): Promise<boolean> {
  try {
    await ctx.run(argv)
    return true
  } catch (err) {
    ctx.log.warn(`${why}: ${(err as Error).message}`)
    return false
  }
}

/**
 * First of `arping`, `busybox` in the system binary directories (busybox's applet takes the same
 * flags we use). Fixed directories: nothing under router/ reads the environment.
 */
export function detectArping(dirs: readonly string[] = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']): 'busybox' | 'arping' | 'none' {
  const has = (bin: string) => dirs.some((d) => existsSync(join(d, bin)))
  if (has('arping')) return 'arping'
  if (has('busybox')) return 'busybox'
  return 'none'
}
