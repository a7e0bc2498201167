/**
 * One simulated host: a network namespace with `eth0` on the lab LAN, optionally its own dockerd,
 * Open vSwitch and weaver daemon. Commands run inside it with `nsenter --net`.
 */
import type { ChildProcess, SpawnOptions } from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as path from 'node:path'
import { inNs, run, startProcess, type Enter, type ExecOptions, type ExecResult } from './exec'

/** The repository root (this file compiles to dist/test/lab/host.js). */
export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..')

export interface ApiResponse {
  status: number
  /** Parsed JSON when the body is JSON, else the raw text. */
  body: unknown
  text: string
}

export interface LabHostInit {
  name: string
  index: number
  ns: string
  underlayIp: string
  prefixLen: number
  rootVeth: string
  dir: string
  /** Registers a child process so that lab teardown kills it. */
  track: (child: ChildProcess) => void
}

export class LabHost {
  readonly name: string
  readonly index: number
  /** Network namespace name (`/var/run/netns/<ns>`). */
  readonly ns: string
  readonly underlayIp: string
  readonly prefixLen: number
  /** This host's end of the LAN veth pair in the root namespace. */
  readonly rootVeth: string
  /** Per-host temp dir under the lab dir. */
  readonly dir: string
  /** Device that holds the underlay address: `eth0`, or `br-phy` once OVS took eth0 over. */
  underlayDev = 'eth0'
  /** `unix:///…/docker.sock` when this host runs dockerd. */
  dockerHost: string | undefined
  /** OVSDB unix socket path when this host runs Open vSwitch (weaver gets WEAVE_OVSDB=unix:PATH). */
  ovsSocket: string | undefined
  /** Whether the daemon may take the kernel vxlan path (LabOptions.kernelVxlan); else, without OVS, sleeve only. */
  kernelVxlan = false
  /** ovs-vswitchd's unixctl socket, for `ovs-appctl -t`. */
  ovsCtl: string | undefined
  readonly weaveStateDir: string
  readonly weaveRunDir: string
  /** What this host's dockerd sees as /run/docker/plugins (its weaver's plugin socket goes here). */
  readonly pluginDir: string
  private readonly track: (child: ChildProcess) => void

  constructor(init: LabHostInit) {
    this.name = init.name
    this.index = init.index
    this.ns = init.ns
    this.underlayIp = init.underlayIp
    this.prefixLen = init.prefixLen
    this.rootVeth = init.rootVeth
    this.dir = init.dir
    this.track = init.track
    this.weaveStateDir = path.join(this.dir, 'weave', 'state')
    this.weaveRunDir = path.join(this.dir, 'weave', 'run')
    this.pluginDir = path.join(this.dir, 'docker-plugins')
  }

  /** Run `cmd` inside this host; throws with stderr on non-zero exit unless `allowFail`. */
  exec(cmd: string[], opts?: ExecOptions): Promise<ExecResult> {
    return run(inNs(this.ns, cmd, opts?.enter), opts)
  }

  /** Run a shell snippet inside this host (`sh -c`). */
  sh(script: string, opts?: ExecOptions): Promise<ExecResult> {
    return this.exec(['sh', '-c', script], opts)
  }

  /** Start a long-running process inside this host; the lab kills it at teardown. */
  spawn(cmd: string[], opts?: SpawnOptions & { enter?: Enter }): ChildProcess {
    const child = startProcess(inNs(this.ns, cmd, opts?.enter), opts)
    this.track(child)
    return child
  }

  /** The host's docker client (`docker -H unix://…`), run from the root namespace. */
  docker(args: string[], opts?: ExecOptions): Promise<ExecResult> {
    if (!this.dockerHost) throw new Error(`${this.name} runs no dockerd (createLab({docker}))`)
    return run(['docker', '-H', this.dockerHost, ...args], opts)
  }

  /** Pid of a running container's init (its network namespace is /proc/PID/ns/net). */
  async containerPid(container: string): Promise<number> {
    const pid = Number((await this.docker(['inspect', '-f', '{{.State.Pid}}', container])).stdout.trim())
    if (!pid) throw new Error(`${this.name}: container ${container} is not running`)
    return pid
  }

  /** `ovs-vsctl` against this host's OVSDB. */
  ovsVsctl(args: string[], opts?: ExecOptions): Promise<ExecResult> {
    if (!this.ovsSocket) throw new Error(`${this.name} runs no Open vSwitch (createLab({ovs}))`)
    return run(['ovs-vsctl', `--db=unix:${this.ovsSocket}`, '--timeout=20', ...args], this.ovsOpts(opts))
  }

  /** `ovs-appctl` against this host's ovs-vswitchd (e.g. `ofproto/trace`). */
  ovsAppctl(args: string[], opts?: ExecOptions): Promise<ExecResult> {
    if (!this.ovsCtl) throw new Error(`${this.name} runs no Open vSwitch (createLab({ovs}))`)
    return run(['ovs-appctl', '-t', this.ovsCtl, ...args], this.ovsOpts(opts))
  }

  /** `ovs-ofctl` for this host's bridges (e.g. `['dump-flows', 'br-phy']`). */
  ovsOfctl(args: string[], opts?: ExecOptions): Promise<ExecResult> {
    if (!this.ovsSocket) throw new Error(`${this.name} runs no Open vSwitch (createLab({ovs}))`)
    return run(['ovs-ofctl', ...args], this.ovsOpts(opts))
  }

  private ovsOpts(opts: ExecOptions = {}): ExecOptions {
    return { ...opts, env: { OVS_RUNDIR: path.dirname(this.ovsSocket ?? ''), ...opts.env } }
  }

  /** Environment every weave command in this host gets. */
  weaveEnv(extra: Record<string, string> = {}): Record<string, string> {
    const env: Record<string, string> = { WEAVE_STATE_DIR: this.weaveStateDir, WEAVE_RUN_DIR: this.weaveRunDir }
    // The machine's default Docker and OVSDB sockets are visible from every namespace: a lab host
    // without its own must never reach them (it would proxy to, or build bridges in, the machine's).
    env.DOCKER_HOST = this.dockerHost ?? `unix://${path.join(this.dir, 'no-docker.sock')}`
    // Never the machine's /run/docker/plugins: this host's dockerd finds it here (docker.ts).
    env.WEAVE_PLUGIN_SOCKET = path.join(this.pluginDir, 'weave.sock')
    if (this.ovsSocket) {
      env.WEAVE_OVSDB = `unix:${this.ovsSocket}`
      env.OVS_RUNDIR = path.dirname(this.ovsSocket) // where ovs-ofctl finds the bridges' mgmt sockets
      // the lab's OVS is userspace (no module here): the daemon takes it only when told to; with
      // the module (the VM lab) it takes the kernel datapath whatever this says
      env.WEAVE_FASTDP_USERSPACE = '1'
    } else {
      env.WEAVE_OVSDB = `unix:${path.join(this.dir, 'no-ovsdb.sock')}`
      if (!this.kernelVxlan) env.WEAVE_NO_FASTDP = '1'
    }
    return { ...env, ...extra }
  }

  /** Run `./weave ARGS` of this repository inside the host, with the host's weave env. */
  weave(args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    fs.mkdirSync(this.weaveStateDir, { recursive: true })
    fs.mkdirSync(this.weaveRunDir, { recursive: true })
    // longer than `weave launch`'s own 60 s readiness wait, so its error (with the log) comes through
    return this.exec([path.join(REPO_ROOT, 'weave'), ...args], { timeoutMs: 90_000, ...opts, env: this.weaveEnv(opts.env) })
  }

  /** `./weave launch ARGS` inside the host. */
  launchWeave(args: string[] = [], env: Record<string, string> = {}): Promise<ExecResult> {
    return this.weave(['launch', ...args], { env })
  }

  /**
   * `./weave launch ARGS` that outlasts the command's own 60 s readiness limit: under emulation
   * (the stock-kernel VM, test/vm) on a loaded machine a daemon may need longer to answer, and it
   * keeps starting after the command gave up. Resolves once the daemon answers; throws with its
   * log when launch fails otherwise or the daemon does not answer within `readyMs`.
   */
  async launchWeaveWait(args: string[] = [], env: Record<string, string> = {}, readyMs = 300_000): Promise<void> {
    // The command gets as long as the daemon: its own 60 s wait plus node's start-up under
    // emulation on a loaded machine outlasted weave()'s 90 s, and that SIGKILL (exit 137) of a
    // launch whose daemon was fine (a password adds Argon2id to its start) failed whole runs.
    const r = await this.weave(['launch', ...args], { env, allowFail: true, timeoutMs: readyMs })
      .catch((err: Error) => ({ code: 1, stdout: '', stderr: err.message }))
    if (r.code === 0) return
    if (r.code !== 137 && !/did not answer|timed out|killed|SIGKILL/i.test(r.stderr)) throw new Error(`${this.name}: weave launch failed (exit ${r.code}): ${r.stderr}\n${this.weaverLog()}`)
    const deadline = Date.now() + readyMs
    for (;;) {
      const up = await this.api('/report').then((a) => a.status === 200, () => false)
      if (up) return
      if (Date.now() > deadline) throw new Error(`${this.name}: weaver did not answer within ${readyMs / 1000} s\n${this.weaverLog()}`)
      await new Promise((res) => setTimeout(res, 1000))
    }
  }

  /** The last `lines` lines of this host's weaver log (for failure messages). */
  weaverLog(lines = 30): string {
    try { return fs.readFileSync(path.join(this.weaveRunDir, 'weaver.log'), 'utf8').trimEnd().split('\n').slice(-lines).join('\n') } catch { return '(no weaver log)' }
  }

  /** Unix socket of this host's weaver HTTP API. */
  get apiSocket(): string {
    return path.join(this.weaveRunDir, 'api.sock')
  }

  /** HTTP request to the host's weaver API over its unix socket (no namespace entering needed). */
  api(urlPath: string, opts: { method?: string; body?: unknown; timeoutMs?: number } = {}): Promise<ApiResponse> {
    return new Promise((resolve, reject) => {
      const payload = opts.body === undefined ? undefined
        : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body)
      const req = http.request({
        socketPath: this.apiSocket,
        path: urlPath,
        method: opts.method ?? (payload === undefined ? 'GET' : 'POST'),
        headers: payload === undefined ? {} : {
          'content-type': typeof opts.body === 'string' ? 'text/plain' : 'application/json',
          'content-length': Buffer.byteLength(payload),
        },
        timeout: opts.timeoutMs ?? 10_000,
      }, (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => { text += d })
        res.on('end', () => {
          let body: unknown = text
          try { body = JSON.parse(text) } catch { /* not JSON */ }
          resolve({ status: res.statusCode ?? 0, body, text })
        })
      })
      req.on('timeout', () => req.destroy(new Error(`${this.name}: API ${urlPath} timed out`)))
      req.on('error', reject)
      req.end(payload)
    })
  }

  /** `busybox ping` from this host; true when at least one reply came back. */
  async ping(ip: string, opts: { count?: number; timeoutS?: number } = {}): Promise<boolean> {
    const r = await this.exec(['busybox', 'ping', '-c', String(opts.count ?? 1), '-W', String(opts.timeoutS ?? 1), ip],
      { allowFail: true, timeoutMs: 30_000 })
    return r.code === 0
  }
}
