/**
 * rtnetlink and commands in namespaces from the addon (netlink.c, sysctl.c, garp.c, ns-exec.c).
 */
import { addon } from './addon'

/**
 * rtnetlink from netlink.c, for attaching containers without spawning `ip` (see its header for
 * each call). `fd` is a NETLINK_ROUTE socket made by nlOpen in a namespace (a path, or null for
 * ours); every call on it acts there. Failures throw with `code` = the errno name.
 */
export interface NativeNetlink {
  nlOpen(netns: string | null): number
  nlClose(fd: number): void
  /** `running`: operstate up (IFF_RUNNING), which the kernel's link watcher sets after carrier on. */
  nlLink(fd: number, name: string): { index: number; mtu: number; mac: string; up: boolean; running?: boolean; master: number } | null
  nlVethAdd(fd: number, name: string, peer: string, mtu: number, peerNetns: string | null): void
  /** up: -1 keep, 0 down, 1 up; master: -1 keep, 0 none, else an ifindex; mtu 0 keeps it. */
  nlLinkSet(fd: number, index: number, up: number, master: number, mtu: number): void
  nlHairpin(fd: number, index: number, on: boolean): void
  nlLinkDel(fd: number, index: number): void
  nlAddr(fd: number, add: boolean, index: number, ip: string, prefix: number): void
  /** Replace `dst/prefix dev index scope link` (or `via gw`) in the main table. */
  nlRoute(fd: number, index: number, dst: string, prefix: number, gw?: string | null): void
  /** Write /proc/sys/<key> (dots or slashes) as seen from `netns`. */
  nlSysctl(netns: string | null, key: string, value: string): void
  /** Sends one gratuitous ARP; returns the packet socket's fd, for the caller to close with fs.close (its close is slow). */
  nlGarp(netns: string | null, ifname: string, ip: string): number
  /**
   * Run argv (argv[0] on PATH) inside `netns` with `input` (< 64 KiB) on stdin, without forking
   * node (vfork + setns); `fn` gets the exit code and the output (stdout and stderr, read while it
   * runs, the first 16 KiB kept). Past `timeoutMs` (default 30 s) the child is SIGKILLed and the
   * code is 124 (NS_EXEC_TIMED_OUT).
   */
  nsExec?(netns: string | null, argv: readonly string[], input: string, fn: (code: number, output: string) => void, timeoutMs?: number): void
}

/** nsExec's exit code for a child killed at its deadline (as timeout(1) reports it). */
export const NS_EXEC_TIMED_OUT = 124

/** The netlink calls, or undefined when the addon is not built (callers then spawn `ip`). */
export function nativeNetlink(): NativeNetlink | undefined {
  let a: unknown
  try { a = addon() } catch { return undefined }
  return typeof (a as Partial<NativeNetlink>).nlOpen === 'function' ? a as NativeNetlink : undefined
}
