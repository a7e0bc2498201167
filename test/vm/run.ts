/**
 * Running a command inside the stock-kernel VM: prepares (and caches) the kernel and initramfs,
 * writes the run's second stage, boots qemu, streams the command's output back and always kills
 * qemu afterwards — on success, timeout, exception, SIGINT/SIGTERM, process exit, and (through
 * setpriv's parent-death signal) even when this process is SIGKILLed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { stage2Script, shQuote } from './guest'
import { buildInitramfs, initramfsKey, initramfsUnavailableReason } from './initramfs'
import { extractVmlinux, findStockKernel, type StockKernel } from './kernel'
import { QEMU, qemuArgs } from './qemu'

/** The repository root (this file compiles to dist/test/vm/run.js). */
export const VM_REPO_ROOT = path.resolve(__dirname, '..', '..', '..')

const DEFAULT_SNAPSHOT = ['dist', 'router/native/build']

export interface VmRunOptions {
  /** Shell text run by /bin/sh inside the VM. One of script or argv. */
  script?: string
  /** A command (no shell) run inside the VM. */
  argv?: string[]
  /** Whole run, boot included; qemu is killed after it. Default 15 min. */
  timeoutMs?: number
  /** Guest memory; default 2048 MiB (the lab keeps its files on tmpfs in the VM). */
  memMb?: number
  /** Virtual CPUs; default 2 (TCG runs one host thread per vCPU). */
  cpus?: number
  /** Working directory inside the VM (the machine's paths are the same there); default the repo. */
  cwd?: string
  /** Exported inside the VM before the command runs. */
  env?: Record<string, string>
  /** Copy the command's output to this stream as it arrives (e.g. process.stdout). */
  stream?: NodeJS.WritableStream
  /**
   * Repository directories copied when the run starts and mounted (tmpfs) over the live ones inside
   * the VM, so a build running on the machine meanwhile (tsc rewrites dist/ file by file) cannot
   * hand the VM half-written files. Default: dist and router/native/build.
   */
  snapshot?: string[]
  /** Keep the run directory (stage2.sh, console.log, exit-code) and return its path. */
  keepDir?: boolean
}

export interface VmResult {
  /** The command's exit code; 124 when the run timed out, 125 when the VM ended without one. */
  exitCode: number
  /** The command's stdout and stderr, interleaved as written. */
  output: string
  timedOut: boolean
  /** Wall time of the whole run, boot included. */
  seconds: number
  /** Last lines of the kernel console (ttyS0): what to look at when exitCode is 125. */
  console: string
  kernel: string
  dir?: string
}

/** Why the VM cannot run here, or undefined when it can. Tests skip with this line. */
export function vmUnavailableReason(): string | undefined {
  if (process.platform !== 'linux' || process.arch !== 'x64') return 'the VM lab needs Linux on x86-64'
  for (const [bin, pkg] of [[QEMU, 'qemu-system-x86'], ['xz', 'xz-utils'], ['modprobe', 'kmod'], ['setpriv', 'util-linux']]) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) return `${bin} is not installed (apt-get install ${pkg})`
  }
  if (!findStockKernel()) return 'no stock kernel with the openvswitch module under /boot (apt-get install linux-image-amd64)'
  return initramfsUnavailableReason()
}

/** Whether qemu and a stock kernel are installed, so runInVm can work. */
export function vmAvailable(): boolean {
  return vmUnavailableReason() === undefined
}

function cacheRoot(): string {
  if (process.env.WEAVE_VM_CACHE) return process.env.WEAVE_VM_CACHE
  try {
    fs.mkdirSync('/var/cache/weave-ts-vm', { recursive: true })
    fs.accessSync('/var/cache/weave-ts-vm', fs.constants.W_OK)
    return '/var/cache/weave-ts-vm'
  } catch {
    return path.join(os.tmpdir(), `weave-ts-vm-${process.getuid?.() ?? 'user'}`)
  }
}

export interface VmImages {
  kernel: StockKernel
  vmlinux: string
  initramfs: string
}

/** The cached vmlinux and initramfs for the stock kernel, built when missing. */
export function prepareVmImages(): VmImages {
  const reason = vmUnavailableReason()
  if (reason) throw new Error(`VM unavailable: ${reason}`)
  const kernel = findStockKernel()!
  const dir = path.join(cacheRoot(), kernel.version)
  fs.mkdirSync(dir, { recursive: true })
  const vmlinux = path.join(dir, 'vmlinux')
  if (!fs.existsSync(vmlinux) || fs.statSync(vmlinux).mtimeMs < fs.statSync(kernel.vmlinuz).mtimeMs) {
    extractVmlinux(kernel.vmlinuz, vmlinux)
  }
  const initramfs = path.join(dir, `initramfs-${initramfsKey(kernel.version)}.cpio`)
  if (!fs.existsSync(initramfs)) buildInitramfs(kernel.version, initramfs)
  return { kernel, vmlinux, initramfs }
}

/** PATH inside the VM: this node's directory first, then the usual system directories. */
function guestPath(): string {
  const dirs = [path.dirname(process.execPath), ...(process.env.PATH ?? '').split(':'),
    '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']
  return [...new Set(dirs.filter((d) => d.startsWith('/')))].join(':')
}

function tail(text: string, lines: number): string {
  return text.split('\n').slice(-lines).join('\n')
}

/** Keeps a qemu child from outliving this process, whatever ends it. */
function guardChild(child: ChildProcess): () => void {
  const kill = (): void => { try { child.kill('SIGKILL') } catch { /* already gone */ } }
  const onSignal = (sig: NodeJS.Signals): void => {
    kill()
    release()
    // Nobody else handles it: end as the default action would.
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig)
  }
  process.on('exit', kill)
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  process.on('SIGHUP', onSignal)
  const release = (): void => {
    process.off('exit', kill)
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    process.off('SIGHUP', onSignal)
  }
  return () => { kill(); release() }
}

/**
 * Boot the VM, run the command in it from `cwd` (the repository by default), and return its exit
 * code and output. The VM has no network device; it sees the machine's files read-only with a
 * throw-away writable layer, so nothing it does survives the run. qemu is always gone when this
 * resolves or rejects.
 */
export async function runInVm(opts: VmRunOptions): Promise<VmResult> {
  if (!opts.script === !opts.argv) throw new Error('runInVm: give exactly one of script or argv')
  const started = Date.now()
  const images = prepareVmImages()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-vm-'))
  const consoleFile = path.join(dir, 'console.log')
  try {
    const script = opts.script ?? `exec ${opts.argv!.map(shQuote).join(' ')}`
    fs.writeFileSync(path.join(dir, 'cmd.sh'), `${script}\n`)
    const snapshots = (opts.snapshot ?? DEFAULT_SNAPSHOT).filter((rel) => fs.existsSync(path.join(VM_REPO_ROOT, rel)))
    for (const rel of snapshots) fs.cpSync(path.join(VM_REPO_ROOT, rel), path.join(dir, 'snap', rel), { recursive: true })
    fs.writeFileSync(path.join(dir, 'stage2.sh'), stage2Script({
      script, cwd: opts.cwd ?? VM_REPO_ROOT, env: opts.env ?? {}, path: guestPath(),
      snapshots: snapshots.map((rel) => ({ from: `/vm/snap/${rel}`, to: path.join(VM_REPO_ROOT, rel) })),
    }), { mode: 0o755 })
    const args = qemuArgs({
      vmlinux: images.vmlinux, initramfs: images.initramfs, shareDir: dir, consoleFile,
      memMb: opts.memMb ?? 2048, cpus: opts.cpus ?? 2, cpuModel: process.env.WEAVE_VM_CPU,
    })
    const { output, timedOut, stderr } = await boot(args, opts.timeoutMs ?? 15 * 60_000, opts.stream)
    const codeFile = path.join(dir, 'exit-code')
    const consoleText = (fs.existsSync(consoleFile) ? fs.readFileSync(consoleFile, 'utf8') : '') + stderr
    let exitCode = timedOut ? 124 : 125
    if (fs.existsSync(codeFile)) exitCode = Number(fs.readFileSync(codeFile, 'utf8').trim())
    return {
      exitCode, output, timedOut, seconds: (Date.now() - started) / 1000, console: tail(consoleText, 40),
      kernel: images.kernel.version, dir: opts.keepDir ? dir : undefined,
    }
  } finally {
    if (!opts.keepDir) fs.rmSync(dir, { recursive: true, force: true })
  }
}

interface BootResult { output: string; timedOut: boolean; stderr: string }

function boot(args: string[], timeoutMs: number, stream?: NodeJS.WritableStream): Promise<BootResult> {
  return new Promise((resolve, reject) => {
    // setpriv: qemu gets SIGKILL if this process dies without running any handler.
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', QEMU, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    const stop = guardChild(child)
    const out: Buffer[] = []
    let stderr = ''
    let timedOut = false
    child.stdout.on('data', (d: Buffer) => { out.push(d); stream?.write(d) })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => { timedOut = true; stop() }, timeoutMs)
    child.on('error', (err) => { clearTimeout(timer); stop(); reject(new Error(`cannot start ${QEMU}: ${err.message}`, { cause: err })) })
    child.on('close', () => {
      clearTimeout(timer)
      stop()
      resolve({ output: Buffer.concat(out).toString('utf8'), timedOut, stderr })
    })
  })
}
