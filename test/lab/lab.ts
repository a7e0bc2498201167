/**
 * The lab: N simulated hosts (network namespaces) on a LAN bridge that has no address in the root
 * namespace, each optionally with its own dockerd and Open vSwitch; faults; teardown that always
 * runs (explicitly, on SIGINT/SIGTERM, and best effort on process exit).
 */
import type { ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { removeAllContainers, buildBusyboxTar, startDockerd } from './docker'
import { run, runSync, waitFor } from './exec'
import * as faults from './faults'
import { LabHost } from './host'
import { startOvs } from './ovs'
import { labPids } from './procs'
import { destroyLab, listNamespaces, names, presentLabs, sweep, writeOwner, type DestroyReport } from './sweep'

export interface LabOptions {
  hosts: number
  /** dockerd (with `busybox:latest`) on every host (true) or on the named hosts (`['h1']`). */
  docker?: boolean | string[]
  /** Open vSwitch on every host (true) or on the named hosts. */
  ovs?: boolean | string[]
  /**
   * Hosts (all, or the named ones) whose daemon may take the kernel vxlan path where it has no
   * OVS. Others without OVS run sleeve only (WEAVE_NO_FASTDP), as every lab host did before that
   * path existed, so tests of the sleeve keep testing the sleeve.
   */
  kernelVxlan?: boolean | string[]
  /** Lab prefix (`wlab` + digits/letter, or `wlabm`); default `wlab<pid>`, `wlab<pid>b`, ... */
  prefix?: string
  /** First three octets of the underlay /24; host hI gets .I. Default 192.168.250 (clear of 10.32.0.0/12). */
  underlayNet?: string
}

export interface TeardownReport extends DestroyReport {
  /** Every pid the lab owned when teardown began (all dead afterwards unless in `survivors`). */
  pids: number[]
}

/** Why the lab cannot run here (not root, tool missing), or undefined when it can. */
export function labUnavailableReason(opts: { docker?: boolean; ovs?: boolean } = {}): string | undefined {
  if (process.platform !== 'linux') return 'the lab needs Linux network namespaces'
  if (process.getuid?.() !== 0) return 'the lab needs root (network namespaces, bridges)'
  const tools = ['ip', 'nsenter', 'nft', 'iptables']
  if (opts.docker) tools.push('dockerd', 'docker')
  if (opts.ovs) tools.push('ovsdb-server', 'ovs-vswitchd', 'ovs-vsctl')
  const missing = tools.filter((t) => runSync(['sh', '-c', `command -v ${t}`], { allowFail: true }).code !== 0)
  if (missing.length) return `missing tools: ${missing.join(', ')} (scripts/system-packages.sh installs them)`
  if (opts.docker && !fs.existsSync('/bin/busybox')) return 'missing /bin/busybox (busybox-static) for the test image'
  return undefined
}

const active = new Set<Lab>()
let handlersInstalled = false

/** Tear down every live lab synchronously; used from signal and exit handlers. */
function destroyActiveSync(): void {
  for (const lab of active) {
    try { destroyLab(lab.prefix) } catch { /* best effort */ }
    active.delete(lab)
  }
}

function installHandlers(): void {
  if (handlersInstalled) return
  handlersInstalled = true
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
    process.on(sig, () => {
      if (active.size) process.stderr.write(`lab: ${sig}, tearing down ${[...active].map((l) => l.prefix).join(' ')}\n`)
      destroyActiveSync()
      process.exit(code)
    })
  }
  process.on('exit', destroyActiveSync)
}

function choose(sel: boolean | string[] | undefined, name: string): boolean {
  return sel === true || (Array.isArray(sel) && sel.includes(name))
}

/** First free prefix of this process: `wlab<pid>`, then `wlab<pid>a`..`z` (reused once torn down). */
function nextPrefix(): string {
  const taken = new Set([...presentLabs(), ...[...active].map((l) => l.prefix)])
  for (const suffix of ['', ...'abcdefghijklmnopqrstuvwxyz']) {
    const p = `wlab${process.pid}${suffix}`
    if (!taken.has(p)) return p
  }
  throw new Error('lab: 27 labs of this process are up at once; tear some down')
}

export class Lab {
  readonly hosts: LabHost[] = []
  /** The lab's temp dir (`/tmp/<prefix>`). */
  readonly dir: string
  readonly bridge: string
  private readonly children = new Set<ChildProcess>()
  private tornDown = false

  constructor(readonly prefix: string) {
    this.dir = names.dir(prefix)
    this.bridge = names.bridge(prefix)
  }

  /** A host by name (`h2`), index object or itself. */
  host(h: LabHost | string): LabHost {
    if (typeof h !== 'string') return h
    const found = this.hosts.find((x) => x.name === h || x.ns === h)
    if (!found) throw new Error(`lab ${this.prefix}: no host ${h}`)
    return found
  }

  linkDown(h: LabHost | string): Promise<void> { return faults.linkDown(this.host(h)) }
  linkUp(h: LabHost | string): Promise<void> { return faults.linkUp(this.host(h)) }
  /** Loss/delay on the host's outgoing traffic; `{}` clears. See faults.netem for this kernel. */
  netem(h: LabHost | string, opts: faults.NetemOptions): Promise<void> { return faults.netem(this.host(h), opts) }

  /** Cut every underlay path between the two sets of hosts (both directions). Adds to earlier cuts. */
  async partition(a: (LabHost | string)[], b: (LabHost | string)[]): Promise<void> {
    const as = a.map((h) => this.host(h))
    const bs = b.map((h) => this.host(h))
    for (const x of as) for (const y of bs) { this.block(x, y.underlayIp); this.block(y, x.underlayIp) }
    await Promise.all([...as, ...bs].map((h) => faults.setBlocked(h, [...(this.blocked.get(h) ?? [])])))
  }

  /**
   * UDP faults between two hosts, both directions (TCP untouched): `ports` drops UDP to those ports
   * (e.g. 6783/6784: the overlay's data paths), `maxIpBytes` only datagrams longer than that.
   * Replaces the earlier UDP faults of both hosts; `clearUdp` removes them.
   */
  async udpFault(a: LabHost | string, b: LabHost | string, f: { ports?: number[]; maxIpBytes?: number }): Promise<void> {
    const x = this.host(a), y = this.host(b)
    await Promise.all([faults.setUdpRules(x, [{ peer: y.underlayIp, ...f }]), faults.setUdpRules(y, [{ peer: x.underlayIp, ...f }])])
  }

  async clearUdp(...hs: Array<LabHost | string>): Promise<void> {
    await Promise.all(hs.map((h) => faults.setUdpRules(this.host(h), [])))
  }

  /** Remove every partition. */
  async heal(): Promise<void> {
    const hs = [...this.blocked.keys()]
    this.blocked.clear()
    await Promise.all(hs.map((h) => faults.setBlocked(h, [])))
  }

  private readonly blocked = new Map<LabHost, Set<string>>()
  private block(h: LabHost, ip: string): void {
    const s = this.blocked.get(h) ?? new Set<string>()
    s.add(ip)
    this.blocked.set(h, s)
  }

  /** Pids the lab owns right now (daemons, anything in its namespaces, containers). */
  pids(): number[] {
    return labPids(this.hosts.map((h) => `/var/run/netns/${h.ns}`), this.dir + '/')
  }

  /** Keep the lab after this process exits (the CLI's `up`); `sweep`/`down` removes it later. */
  detach(): void {
    active.delete(this)
    for (const c of this.children) c.unref()
  }

  /** Remove everything the lab made. Safe to call twice; also runs on SIGINT/SIGTERM/exit. */
  async teardown(): Promise<TeardownReport> {
    const pids = this.pids()
    if (!this.tornDown) {
      this.tornDown = true
      // containers first, with SIGKILL: a stopping engine would give each one its grace period
      await Promise.all(this.hosts.map((h) => removeAllContainers(h).catch(() => {})))
    }
    const report = destroyLab(this.prefix)
    active.delete(this)
    return { ...report, pids }
  }

  /** Build hosts; internal to createLab. */
  async build(opts: LabOptions): Promise<void> {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o755 })
    writeOwner(this.prefix)
    const net = opts.underlayNet ?? '192.168.250'
    await run(['ip', 'link', 'add', 'name', this.bridge, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0'])
    // no address at all in the root namespace, not even an IPv6 link-local one
    await run(['ip', 'link', 'set', 'dev', this.bridge, 'addrgenmode', 'none'])
    await run(['ip', 'link', 'set', 'dev', this.bridge, 'up'])
    this.allowBridgedTraffic()
    for (let i = 1; i <= opts.hosts; i++) {
      const ns = names.ns(this.prefix, i)
      const h = new LabHost({
        name: `h${i}`, index: i, ns, underlayIp: `${net}.${i}`, prefixLen: 24,
        rootVeth: names.rootVeth(this.prefix, i), dir: path.join(this.dir, `h${i}`),
        track: (c) => this.children.add(c),
      })
      fs.mkdirSync(h.dir, { recursive: true })
      this.hosts.push(h)
      await run(['ip', 'netns', 'add', ns])
      await h.exec(['ip', 'link', 'set', 'dev', 'lo', 'up'])
      await run(['ip', 'link', 'add', 'name', h.rootVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
      await run(['ip', 'link', 'set', 'dev', h.rootVeth, 'addrgenmode', 'none'])
      await run(['ip', 'link', 'set', 'dev', h.rootVeth, 'master', this.bridge, 'up'])
      await h.exec(['ip', 'addr', 'add', `${h.underlayIp}/24`, 'dev', 'eth0'])
      await h.exec(['ip', 'link', 'set', 'dev', 'eth0', 'up'])
      // deliberately no default route: nothing in a host can reach the machine's own network
    }
    const dockerHosts = this.hosts.filter((h) => choose(opts.docker, h.name))
    const ovsHosts = this.hosts.filter((h) => choose(opts.ovs, h.name))
    for (const h of this.hosts) h.kernelVxlan = choose(opts.kernelVxlan, h.name)
    const tar = dockerHosts.length ? await buildBusyboxTar(this.dir) : ''
    await Promise.all([
      ...dockerHosts.map((h) => startDockerd(h, tar)),
      ...ovsHosts.map((h) => startOvs(h)),
    ])
    await this.waitUnderlay()
  }

  /**
   * Return only once the LAN carries traffic: each host reaches the next one (a ring). Right after
   * OVS takes eth0 over, the first packets can still be lost.
   */
  private async waitUnderlay(): Promise<void> {
    if (this.hosts.length < 2) return
    await Promise.all(this.hosts.map((h, i) => {
      const next = this.hosts[(i + 1) % this.hosts.length]
      return waitFor(`underlay ${h.name} -> ${next.name}`, () => h.ping(next.underlayIp, { count: 1, timeoutS: 1 }), 15_000, 50)
    }))
  }

  /**
   * With br_netfilter loaded, bridged frames traverse the root FORWARD chain; if its policy is
   * DROP (Docker's own setup does that) the LAN goes silently dead. Only then we add one ACCEPT
   * rule for our bridge, commented with the prefix, removed at teardown.
   */
  private allowBridgedTraffic(): void {
    let nfCall = '0'
    try { nfCall = fs.readFileSync('/proc/sys/net/bridge/bridge-nf-call-iptables', 'utf8').trim() } catch { /* no br_netfilter */ }
    if (nfCall !== '1') return
    const policy = runSync(['iptables', '-w', '-S', 'FORWARD'], { allowFail: true }).stdout.split('\n')[0]
    if (policy.trim() === '-P FORWARD ACCEPT') return
    runSync(['iptables', '-w', '-I', 'FORWARD', '-i', this.bridge, '-o', this.bridge,
      '-m', 'comment', '--comment', this.prefix, '-j', 'ACCEPT'])
  }
}

/**
 * Bring up a lab. Sweeps leftovers of killed runs first. On any failure the partial lab is torn
 * down before the error is rethrown. Call `lab.teardown()` in a finally (or use `withLab`).
 */
export async function createLab(opts: LabOptions): Promise<Lab> {
  const why = labUnavailableReason({ docker: !!opts.docker, ovs: !!opts.ovs })
  if (why) throw Object.assign(new Error(`lab unavailable: ${why}`), { code: 'lab-unavailable' })
  if (opts.hosts < 1 || opts.hosts > 250) throw new Error('lab: hosts must be 1..250')
  if (opts.prefix !== undefined && !/^wlab(\d+[a-z]?|m)$/.test(opts.prefix)) {
    throw new Error(`lab: prefix must be wlab<digits>[letter] or wlabm, got ${opts.prefix}`)
  }
  sweep()
  const prefix = opts.prefix ?? nextPrefix()
  if (listNamespaces().some((n) => n.startsWith(prefix + '-h')) || fs.existsSync(names.dir(prefix))) {
    throw new Error(`lab: ${prefix} already exists (sweep it first)`)
  }
  installHandlers()
  const lab = new Lab(prefix)
  active.add(lab)
  try {
    await lab.build(opts)
  } catch (err) {
    await lab.teardown().catch(() => {})
    throw err
  }
  return lab
}

/** Run `fn` with a fresh lab and always tear it down afterwards. */
export async function withLab<T>(opts: LabOptions, fn: (lab: Lab) => Promise<T>): Promise<T> {
  const lab = await createLab(opts)
  try {
    return await fn(lab)
  } finally {
    await lab.teardown()
  }
}
