/**
 * Finding and killing the processes a lab owns, by reading /proc directly (synchronously, so the
 * same code runs from an 'exit' handler).
 *
 * A process belongs to a lab when it sits in one of the lab's network namespaces (dockerd, OVS,
 * weaver, iperf3, anything run through `host.exec`), or its command line names the lab's temp dir
 * (containerd and its shims, which dockerd starts with paths under its exec-root), or it descends
 * from such a process (container processes, whose network namespace is the container's own).
 */
import * as fs from 'node:fs'
import { sleepSync } from './exec'

interface ProcInfo {
  pid: number
  ppid: number
  state: string
  startTime: string
  cmdline: string
  netns: string
}

function readProc(pid: number): ProcInfo | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    // comm may hold spaces and parentheses: fields start after the last ')'
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    let cmdline = ''
    let netns = ''
    try { cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ') } catch { /* gone */ }
    try { netns = fs.readlinkSync(`/proc/${pid}/ns/net`) } catch { /* gone or kernel thread */ }
    return { pid, state: rest[0], ppid: Number(rest[1]), startTime: rest[19], cmdline, netns }
  } catch {
    return undefined
  }
}

function allProcs(): ProcInfo[] {
  const out: ProcInfo[] = []
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const p = readProc(Number(name))
    if (p) out.push(p)
  }
  return out
}

/** True while `pid` exists and is not a zombie (zombies of init may never be reaped here). */
export function isAlive(pid: number): boolean {
  const p = readProc(pid)
  return p !== undefined && p.state !== 'Z' && p.state !== 'X'
}

/** The kernel's start time of `pid` (clock ticks since boot), to tell a pid from its reuse. */
export function startTimeOf(pid: number): string | undefined {
  return readProc(pid)?.startTime
}

/** `net:[INODE]` of a named namespace, as /proc/PID/ns/net links read. */
export function netnsId(nsPath: string): string | undefined {
  try { return `net:[${fs.statSync(nsPath).ino}]` } catch { return undefined }
}

/** Live pids owned by a lab: see the file comment. Never includes this process or its ancestors. */
export function labPids(nsPaths: string[], dirMarker: string | undefined): number[] {
  const nsIds = new Set(nsPaths.map(netnsId).filter((x): x is string => !!x))
  const procs = allProcs().filter((p) => p.state !== 'Z' && p.state !== 'X')
  const protectedPids = new Set<number>()
  for (let p: number | undefined = process.pid; p && p > 1; p = readProc(p)?.ppid) protectedPids.add(p)
  const owned = new Set<number>()
  for (const p of procs) {
    if (protectedPids.has(p.pid) || p.pid <= 1) continue
    if (nsIds.has(p.netns) || (dirMarker && p.cmdline.includes(dirMarker))) owned.add(p.pid)
  }
  // descendants, to a fixed point
  for (let grew = true; grew;) {
    grew = false
    for (const p of procs) {
      if (!owned.has(p.pid) && owned.has(p.ppid) && !protectedPids.has(p.pid)) { owned.add(p.pid); grew = true }
    }
  }
  return [...owned]
}

/** SIGTERM `pids`, wait up to `graceMs`, then SIGKILL what is left and wait for it to go. */
export function killAndWait(pids: number[], graceMs = 5000): number[] {
  const signal = (sig: NodeJS.Signals, list: number[]) => {
    for (const pid of list) { try { process.kill(pid, sig) } catch { /* already gone */ } }
  }
  const waitGone = (list: number[], ms: number) => {
    const deadline = Date.now() + ms
    let left = list.filter(isAlive)
    while (left.length && Date.now() < deadline) { sleepSync(50); left = left.filter(isAlive) }
    return left
  }
  signal('SIGTERM', pids)
  let left = waitGone(pids, graceMs)
  if (left.length) { signal('SIGKILL', left); left = waitGone(left, 3000) }
  return left
}
