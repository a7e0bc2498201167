/**
 * Naming of everything a lab creates, and its removal: the last step of every teardown, and the
 * sweep that clears what an earlier, killed run left behind.
 *
 * A lab's prefix is `wlab<pid>` (plus a letter for the second, third... lab of one process) or
 * `wlabm` for the one lab the CLI brings up by hand. From the prefix P everything is derived:
 *   namespaces `P-h1`..`P-hN`, LAN bridge `Pbr`, root-side veth ends `Pv1`..`PvN`,
 *   temp dir `/tmp/P/` (with `owner.json` naming the creating pid and its start time),
 *   cgroups `/sys/fs/cgroup/<controller>/P-hI` (dockerd's --cgroup-parent),
 *   and, only when needed, a root FORWARD rule commented `P` (see lab.ts, br_netfilter).
 * Everything here is synchronous so that it also runs from a process 'exit' handler.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { runSync } from './exec'
import { isAlive, killAndWait, labPids, startTimeOf } from './procs'

export const LAB_TMP = '/tmp'
const NAME_RE = /^(wlab(?:\d+[a-z]?|m))(?:-h\d+|br|v\d+)$/
const DIR_RE = /^(wlab(?:\d+[a-z]?|m))$/

export const names = {
  ns: (prefix: string, i: number) => `${prefix}-h${i}`,
  bridge: (prefix: string) => `${prefix}br`,
  rootVeth: (prefix: string, i: number) => `${prefix}v${i}`,
  dir: (prefix: string) => path.join(LAB_TMP, prefix),
}

/** Prefix of a lab object name (namespace, bridge, veth, dir), or undefined if not a lab name. */
export function prefixOf(name: string): string | undefined {
  return NAME_RE.exec(name)?.[1] ?? DIR_RE.exec(name)?.[1]
}

export function listNamespaces(): string[] {
  try { return fs.readdirSync('/var/run/netns') } catch { return [] }
}

function rootLinks(): string[] {
  const out = runSync(['ip', '-o', 'link', 'show'], { allowFail: true }).stdout
  return out.split('\n').map((l) => /^\d+:\s+([^:@]+)/.exec(l)?.[1]).filter((x): x is string => !!x)
}

/** Write the owner record so a later sweep can tell a live lab from a dead one. */
export function writeOwner(prefix: string): void {
  fs.writeFileSync(path.join(names.dir(prefix), 'owner.json'),
    JSON.stringify({ pid: process.pid, startTime: startTimeOf(process.pid) }))
}

/** Whether the process that created lab `prefix` still runs (false also when pid was reused). */
export function ownerAlive(prefix: string): boolean {
  try {
    const o = JSON.parse(fs.readFileSync(path.join(names.dir(prefix), 'owner.json'), 'utf8')) as { pid: number; startTime?: string }
    return isAlive(o.pid) && (!o.startTime || startTimeOf(o.pid) === o.startTime)
  } catch {
    const pid = /^wlab(\d+)/.exec(prefix)?.[1]
    return pid !== undefined && isAlive(Number(pid))
  }
}

function unmountUnder(dir: string): void {
  const marker = dir.endsWith('/') ? dir : dir + '/'
  const points = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => !!p)
    .map((p) => p.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(marker))
    .sort((a, b) => b.length - a.length) // deepest first
  for (const p of points) {
    if (runSync(['umount', p], { allowFail: true }).code !== 0) runSync(['umount', '-l', p], { allowFail: true })
  }
}

/** Remove root FORWARD rules the lab added (commented with its prefix). */
function removeForwardRules(prefix: string): void {
  const rules = runSync(['iptables', '-w', '-S', 'FORWARD'], { allowFail: true }).stdout.split('\n')
  for (const r of rules) {
    if (!r.startsWith('-A FORWARD ') || !new RegExp(`--comment "?${prefix}"?( |$)`).test(r)) continue
    const spec = r.slice('-A FORWARD '.length).split(' ').map((s) => s.replace(/^"|"$/g, ''))
    runSync(['iptables', '-w', '-D', 'FORWARD', ...spec], { allowFail: true })
  }
}

function removeCgroups(prefix: string): void {
  let controllers: string[] = []
  try { controllers = fs.readdirSync('/sys/fs/cgroup') } catch { return }
  for (const c of controllers) {
    const base = path.join('/sys/fs/cgroup', c)
    let entries: string[] = []
    try { entries = fs.readdirSync(base) } catch { continue }
    for (const e of entries) {
      if (!e.startsWith(prefix + '-h')) continue
      // a cgroup dir is removed with rmdir once empty; children first
      const rm = (d: string) => {
        try { for (const sub of fs.readdirSync(d, { withFileTypes: true })) if (sub.isDirectory()) rm(path.join(d, sub.name)) } catch { /* gone */ }
        try { fs.rmdirSync(d) } catch { /* busy or gone */ }
      }
      rm(path.join(base, e))
    }
  }
}

/**
 * `docker rm -f` every container of the lab's engines first: a container's init (e.g. `sleep`)
 * ignores SIGTERM, so killing the engine would cost each container its full grace period.
 */
function removeContainersSync(dir: string): void {
  let hosts: string[] = []
  try { hosts = fs.readdirSync(dir) } catch { return }
  for (const h of hosts) {
    const sock = path.join(dir, h, 'docker', 'docker.sock')
    if (!fs.existsSync(sock)) continue
    const docker = (args: string[]) => runSync(['docker', '-H', `unix://${sock}`, ...args], { allowFail: true, timeoutMs: 15_000 })
    const ids = docker(['ps', '-aq']).stdout.split('\n').filter(Boolean)
    if (ids.length) docker(['rm', '-f', ...ids])
  }
}

export interface DestroyReport {
  prefix: string
  killed: number
  survivors: number[]
  namespaces: string[]
  links: string[]
  /** The temp dir could not be removed (busy mount); a later sweep retries. */
  dirLeft: boolean
}

/**
 * Remove every trace of lab `prefix`: processes, mounts, namespaces, root links, root FORWARD
 * rules, cgroups, temp dir. Idempotent; never throws for things already gone.
 */
export function destroyLab(prefix: string): DestroyReport {
  const nss = listNamespaces().filter((n) => prefixOf(n) === prefix)
  const dir = names.dir(prefix)
  removeContainersSync(dir)
  const pids = labPids(nss.map((n) => `/var/run/netns/${n}`), dir + '/')
  const survivors = killAndWait(pids)
  unmountUnder(dir)
  for (const n of nss) runSync(['ip', 'netns', 'del', n], { allowFail: true })
  const links = rootLinks().filter((l) => prefixOf(l) === prefix)
  // the bridge last: veth ends normally vanish with their namespace already
  for (const l of links.sort((a, b) => Number(a.endsWith('br')) - Number(b.endsWith('br')))) {
    runSync(['ip', 'link', 'del', l], { allowFail: true })
  }
  removeForwardRules(prefix)
  removeCgroups(prefix)
  try {
    fs.rmSync(dir, { recursive: true, force: true })
  } catch {
    // a mount that came back busy: detach everything under it and try once more
    unmountUnder(dir)
    try { fs.rmSync(dir, { recursive: true, force: true }) } catch { /* reported by fs.existsSync below */ }
  }
  return { prefix, killed: pids.length, survivors, namespaces: nss, links, dirLeft: fs.existsSync(dir) }
}

/** Prefixes of labs present on this machine (from namespaces, root links and temp dirs). */
export function presentLabs(): string[] {
  const found = new Set<string>()
  for (const n of listNamespaces()) { const p = prefixOf(n); if (p) found.add(p) }
  for (const l of rootLinks()) { const p = prefixOf(l); if (p) found.add(p) }
  try { for (const d of fs.readdirSync(LAB_TMP)) { const p = DIR_RE.exec(d)?.[1]; if (p) found.add(p) } } catch { /* no tmp */ }
  return [...found]
}

export interface SweepOptions {
  /** Only this lab (removed even if its owner lives, unless it is this process). */
  prefix?: string
  /** Also remove the CLI's hand-made lab `wlabm`. */
  includeManual?: boolean
}

/**
 * Remove leftovers of labs whose creating process is dead (killed runs). Labs of live processes
 * (other test files running right now) are left alone; this process's own labs too.
 */
export function sweep(opts: SweepOptions = {}): DestroyReport[] {
  const out: DestroyReport[] = []
  for (const p of presentLabs()) {
    if (opts.prefix !== undefined && p !== opts.prefix) continue
    if (p === 'wlabm') { if (opts.includeManual || opts.prefix === 'wlabm') out.push(destroyLab(p)); continue }
    if (opts.prefix === undefined && ownerAlive(p)) continue
    if (new RegExp(`^wlab${process.pid}[a-z]?$`).test(p)) continue
    out.push(destroyLab(p))
  }
  return out
}
