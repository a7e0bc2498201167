/**
 * attach's common case over netlink (router/native/netlink.c), off the daemon's event loop.
 *
 * Why a worker thread: an rtnetlink request takes the kernel's global rtnl lock inside the
 * system call, and while another task holds it (a namespace being torn down, somebody's veth)
 * the call waits, up to hundreds of ms under churn. On the main thread that would stall every
 * socket of the daemon; in a worker only this attach waits. The steps themselves are plain and
 * synchronous (microseconds each) and run the same inline when no worker can be started.
 *
 * Everything here takes only structured-clonable data, so one message carries a whole attach.
 */
import { execFile } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { Worker } from 'node:worker_threads'
import type { NativeNetlink } from '../native'

export interface NativeAttachParams {
  /** nsfs path of the bridge's namespace; null: the caller's own. */
  hostNs: string | null
  /** nsfs path of the container's namespace. */
  ns: string
  ifname: string
  bridge: string
  hostEnd: string
  mtu?: number
  addresses: Array<{ ip: string; prefix: number }>
  /** [sysctl key, value] set on the new interface in the container (missing keys are skipped). */
  sysctls: Array<[string, string]>
  /** `224.0.0.0/4 dev ethwe` as [dst, prefix], or null. */
  multicastRoute: [string, number] | null
  /** Hairpin on the host end (a container may reach itself through a service address). */
  hairpin: boolean
  /** Routes added after the addresses (a gateway must be reachable first), e.g. a CNI pod's default route. */
  routes: Array<{ dst: string; prefix: number; gw: string | null }>
  /** iptables-restore input for the container, or null; `rulesUndo` removes them again. */
  rules: string | null
  rulesUndo: string | null
  /** argv to run in the container before ethwe comes up (best effort), e.g. ethtool. */
  beforeUp: string[] | null
  linkWatchWaitMs: number
}

export type NativeAttachOutcome =
  | { kind: 'exists' }
  /** `arpFds`: packet sockets of the gratuitous ARPs, for the caller to close (see announce). */
  | { kind: 'attached'; mac: string; notes: string[]; warnings: string[]; arpFds: number[] }

/** An error that crossed from the worker: message and `code` survive, the class does not. */
export interface AttachFailure { message: string; code?: string | number; name?: string }

/** The steps of a native attach, in order; see attachNewNative in attach.ts for why this order. */
export async function runNativeAttach(nl: NativeNetlink, p: NativeAttachParams): Promise<NativeAttachOutcome> {
  const E = p.ifname
  const fds: number[] = []
  const open = (ns: string | null) => { const fd = nl.nlOpen(ns); fds.push(fd); return fd }
  const notes: string[] = []
  const warnings: string[] = []
  let rules: Promise<void> | undefined
  let created = false
  const t0 = performance.now()
  try {
    const h = open(p.hostNs)
    const c = open(p.ns)
    if (nl.nlLink(c, E)) return { kind: 'exists' }
    const br = nl.nlLink(h, p.bridge)
    if (!br) throw new Error(`bridge ${p.bridge} does not exist: launch weave first`)
    if (nl.nlLink(h, p.hostEnd)) {
      // A veth end lives exactly as long as its peer, so this one belongs to a live interface:
      // another container whose id starts with the same 7 characters. Never take it over.
      throw Object.assign(new Error(`${p.hostEnd} already exists (another container with the same id prefix?); not attaching`), { code: 'HOST_VETH_EXISTS' })
    }
    if (p.rules !== null) {
      // Rules name ethwe, so they may go in before it exists; started first, awaited last.
      rules = execIn(nl, p.ns, ['iptables-restore', '--noflush', '-w', '5'], p.rules)
      rules.catch(() => undefined) // awaited below; a failure before that must not go unhandled
    }
    nl.nlVethAdd(h, p.hostEnd, E, p.mtu ?? br.mtu, p.ns)
    created = true
    for (const [k, v] of p.sysctls) {
      try { nl.nlSysctl(p.ns, k, v) } catch (err) {
        if ((err as { code?: string }).code !== 'ENOENT') throw err // `sysctl -e`: IPv6 may be off
      }
    }
    const e = nl.nlLink(c, E)
    const hl = nl.nlLink(h, p.hostEnd)
    if (!e || !hl) throw new Error(`${E} or ${p.hostEnd} vanished right after it was created`)
    nl.nlLinkSet(h, hl.index, -1, br.index, 0)
    if (p.hairpin) try { nl.nlHairpin(h, hl.index, true) } catch { /* optional, as with `ip` */ }
    nl.nlLinkSet(h, hl.index, 1, -1, 0)
    const tNl = performance.now()
    if (rules) await rules
    notes.push(`netlink ${(tNl - t0).toFixed(1)} ms, rules ${(performance.now() - t0).toFixed(1)} ms`)
    if (p.beforeUp) await execIn(nl, p.ns, p.beforeUp, '').catch((err: Error) => warnings.push(`${p.beforeUp!.join(' ')}: ${err.message}`))
    // Up, the route, the addresses last: weavewait lets the command run once ethwe is up,
    // running and addressed, and by then everything else is in place.
    nl.nlLinkSet(c, e.index, 1, -1, 0)
    if (p.multicastRoute) nl.nlRoute(c, e.index, p.multicastRoute[0], p.multicastRoute[1])
    if (!(await linkWatched(() => !!nl.nlLink(h, p.hostEnd)?.running && !!nl.nlLink(c, E)?.running, p.linkWatchWaitMs))) {
      warnings.push(`${p.hostEnd}: veth not running after ${p.linkWatchWaitMs} ms; going on`)
    }
    for (const a of p.addresses) nl.nlAddr(c, true, e.index, a.ip, a.prefix)
    for (const r of p.routes) nl.nlRoute(c, e.index, r.dst, r.prefix, r.gw)
    const arpFds = announce(nl, p.ns, E, p.addresses, notes)
    return { kind: 'attached', mac: e.mac, notes, warnings, arpFds }
  } catch (err) {
    if (created) {
      try { const l = nl.nlLink(fds[0], p.hostEnd); if (l) nl.nlLinkDel(fds[0], l.index) } catch { /* the pair may be gone with its namespace */ }
      if (rules && p.rulesUndo !== null) await execIn(nl, p.ns, ['iptables-restore', '--noflush', '-w', '5'], p.rulesUndo).catch(() => undefined)
    }
    throw err
  } finally {
    for (const fd of fds) nl.nlClose(fd)
  }
}

/**
 * Carrier comes on as ethwe goes up, but the kernel's link watcher (a work queue) only then marks
 * the ends running, and the bridge enables the host end's port at that moment: a frame from the
 * container before it is dropped. False when `running` did not come true in time.
 */
async function linkWatched(running: () => boolean, waitMs: number): Promise<boolean> {
  const t0 = performance.now()
  while (!running()) {
    if (performance.now() - t0 > waitMs) return false
    await sleep(1)
  }
  return true
}

/**
 * One gratuitous ARP per address, so neighbours (and other hosts' bridges) learn the MAC now.
 * Best effort, as with arping. Returns the packet sockets: closing one waits for an RCU grace
 * period (milliseconds), so it happens after the answer (closeArpFds).
 */
function announce(nl: NativeNetlink, ns: string, ifname: string, addrs: Array<{ ip: string }>, notes: string[]): number[] {
  const fds: number[] = []
  for (const a of addrs) {
    try {
      fds.push(nl.nlGarp(ns, ifname, a.ip))
    } catch (err) {
      notes.push(`gratuitous ARP for ${a.ip}: ${(err as Error).message}`)
    }
  }
  return fds
}

/**
 * A moment after the answer the gratuitous ARPs go out once more and every packet socket is
 * closed. The kernel marks a veth running and the bridge enables its port in two steps of the
 * link watcher; the first announcement can fall in between and be dropped by the bridge
 * (arping -U sends more than one for the same reason).
 */
export const GARP_REPEAT_MS = 200

export function afterAttach(nl: NativeNetlink, o: NativeAttachOutcome, p: NativeAttachParams, inWorker: boolean): void {
  if (o.kind !== 'attached') return
  closeArpFds(nl, o, inWorker)
  const t = setTimeout(() => {
    // best effort: the container may be gone by now (announce notes and swallows the error)
    closeArpFds(nl, { ...o, arpFds: announce(nl, p.ns, p.ifname, p.addresses, []) }, inWorker)
  }, GARP_REPEAT_MS)
  if (!inWorker) t.unref()
}

/** In the worker: a plain close (it blocks only the worker). Inline: in libuv's pool. */
export function closeArpFds(nl: NativeNetlink, o: NativeAttachOutcome, inWorker: boolean): void {
  if (o.kind !== 'attached') return
  for (const fd of o.arpFds) {
    if (inWorker) nl.nlClose(fd)
    else fs.close(fd, () => undefined)
  }
}

/**
 * Run `argv` inside the namespace at `ns` with `input` on stdin. With the addon's nsExec the
 * daemon is not forked (see router/native/ns-exec.c), else nsenter through child_process.
 */
/** A command in a namespace (iptables-restore and the like) gets this long before it is killed. */
const EXEC_TIMEOUT_MS = 30_000

/** Run `argv` in the namespace at `ns` with `input` on its stdin (the addon's fork-and-setns, else nsenter). */
export function execIn(nl: NativeNetlink, ns: string, argv: string[], input: string): Promise<void> {
  const full = ['nsenter', `--net=${ns}`, '--', ...argv]
  const failed = (code: number | null, output: string) =>
    Object.assign(new Error(`command failed (exit ${code ?? 'signal'}): ${full.join(' ')}: ${output.trim() || '(no output)'}`), { code: 'NET_COMMAND_FAILED' })
  return new Promise((resolve, reject) => {
    if (nl.nsExec) {
      nl.nsExec(ns, argv, input, (code, output) => (code === 0 ? resolve() : reject(failed(code, output || (code === 127 ? `${argv[0]}: not found` : '')))), EXEC_TIMEOUT_MS)
      return
    }
    const child = execFile(full[0], full.slice(1), { timeout: EXEC_TIMEOUT_MS, killSignal: 'SIGKILL', encoding: 'utf8' }, (err, _stdout, stderr) => {
      if (!err) { resolve(); return }
      const e = err as NodeJS.ErrnoException
      reject(failed(typeof e.code === 'number' ? e.code : null, stderr || e.message))
    })
    child.stdin?.on('error', () => undefined) // a child that died early: its exit status tells why
    child.stdin?.end(input)
  })
}

/** An interface to delete (CNI DEL, a plugin endpoint): the veth pair goes with it. ns null: the caller's own. */
export interface NativeDeleteParams { ns: string | null; ifname: string }

/**
 * Delete `ifname` in the namespace at `ns`: 'deleted', or 'absent' when it (or the namespace) is
 * gone already. A veth's deletion waits for the kernel's RCU grace period, so it runs in the
 * worker too.
 */
export function runNativeDelete(nl: NativeNetlink, p: NativeDeleteParams): 'deleted' | 'absent' {
  let fd: number
  try {
    fd = nl.nlOpen(p.ns)
  } catch (err) {
    const code = (err as { code?: string }).code
    if (code === 'ENOENT' || code === 'EINVAL') return 'absent' // the namespace is gone (or its file no longer one)
    throw err
  }
  try {
    const l = nl.nlLink(fd, p.ifname)
    if (!l) return 'absent'
    try {
      nl.nlLinkDel(fd, l.index)
    } catch (err) {
      if ((err as { code?: string }).code === 'ENODEV') return 'absent' // its peer's deletion took it first
      throw err
    }
    return 'deleted'
  } finally {
    nl.nlClose(fd)
  }
}

// ---- the worker ----------------------------------------------------------------------------

interface Pending { resolve: (o: unknown) => void; reject: (e: Error) => void }

let worker: Worker | undefined
let workerBroken = false
/**
 * An idle worker exits after this long: its isolate holds ~8-10 MiB of RSS, which a router that
 * attaches nothing (or attached a burst a while ago) should not keep. The next attach starts it
 * again (~100 ms).
 */
export const WORKER_IDLE_MS = 15_000
let idleTimer: NodeJS.Timeout | undefined

function armIdleExit(w: Worker): void {
  clearTimeout(idleTimer)
  idleTimer = setTimeout(() => {
    idleTimer = undefined
    if (worker !== w || pending.size) return
    worker = undefined // the next attach starts a fresh one
    void w.terminate()
  }, WORKER_IDLE_MS)
  idleTimer.unref()
}
let nextId = 1
const pending = new Map<number, Pending>()

function workerFile(): string {
  return path.join(__dirname, 'netlink-worker.js')
}

function startWorker(): Worker | undefined {
  if (worker) return worker
  if (workerBroken || !fs.existsSync(workerFile())) return undefined
  try {
    const w = new Worker(workerFile())
    w.unref() // an idle worker never keeps the daemon (or a test) alive
    w.on('message', (m: { id: number; ok?: unknown; err?: AttachFailure }) => {
      const p = pending.get(m.id)
      if (!p) return
      pending.delete(m.id)
      if (pending.size === 0) { w.unref(); armIdleExit(w) }
      if (m.ok) p.resolve(m.ok)
      else p.reject(Object.assign(new Error(m.err?.message ?? 'native attach failed'), { code: m.err?.code }))
    })
    const fail = (err: Error) => {
      if (worker !== w) return // an idle worker we terminated, already replaced or not needed
      worker = undefined
      for (const p of pending.values()) p.reject(new Error(`netlink worker: ${err.message}`, { cause: err }))
      pending.clear()
    }
    w.on('error', fail)
    w.on('exit', (code) => fail(new Error(`exited with code ${code}`)))
    worker = w
    armIdleExit(w)
    return w
  } catch {
    workerBroken = true
    return undefined
  }
}

/** Start the worker ahead of the first attach (its start costs ~100 ms); harmless to repeat. */
export function warmUpNativeAttach(): void {
  startWorker()
}

/**
 * runNativeAttach in the netlink worker; inline (on this thread) when no worker can be started,
 * e.g. when running from the TypeScript sources.
 */
export function nativeAttach(nl: NativeNetlink, p: NativeAttachParams): Promise<NativeAttachOutcome> {
  const w = startWorker()
  if (!w) return runNativeAttach(nl, p).then((o) => { afterAttach(nl, o, p, false); return o })
  return post<NativeAttachOutcome>(w, { params: p })
}

/** runNativeDelete in the netlink worker; inline when no worker can be started. */
export function nativeDelete(nl: NativeNetlink, p: NativeDeleteParams): Promise<'deleted' | 'absent'> {
  const w = startWorker()
  if (!w) return Promise.resolve().then(() => runNativeDelete(nl, p))
  return post<'deleted' | 'absent'>(w, { op: 'delete', params: p })
}

function post<T>(w: Worker, msg: { op?: 'delete'; params: unknown }): Promise<T> {
  return new Promise((resolve, reject) => {
    const id = nextId++
    pending.set(id, { resolve: resolve as (o: unknown) => void, reject })
    clearTimeout(idleTimer); idleTimer = undefined
    w.ref() // a caller is waiting: keep the process alive until the answer comes
    w.postMessage({ id, ...msg })
  })
}
