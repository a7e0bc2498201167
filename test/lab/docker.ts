/**
 * A dockerd per lab host, and the `busybox:latest` test image built locally (no registry here).
 */
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as path from 'node:path'
import { run, waitFor } from './exec'
import type { LabHost } from './host'

/** Applets linked into the image's /bin; tests use these inside containers. */
const APPLETS = [
  'sh', 'ash', 'ip', 'ping', 'sleep', 'wget', 'nc', 'cat', 'echo', 'ifconfig', 'arping', 'md5sum', 'dd',
  'ls', 'grep', 'hostname', 'route', 'nslookup', 'httpd', 'true', 'false', 'ps', 'kill', 'head', 'tail',
  'wc', 'sed', 'awk', 'test', 'mkdir', 'rm', 'env', 'date', 'seq', 'tr', 'udhcpc', 'traceroute', 'timeout',
]

/** Build the image rootfs once per lab and return a tar of it for `docker import`. */
export async function buildBusyboxTar(labDir: string): Promise<string> {
  const root = path.join(labDir, 'busybox-rootfs')
  for (const d of ['bin', 'tmp', 'etc', 'proc', 'sys', 'dev', 'root', 'var/www']) fs.mkdirSync(path.join(root, d), { recursive: true })
  fs.copyFileSync('/bin/busybox', path.join(root, 'bin', 'busybox'))
  fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755)
  for (const a of APPLETS) fs.symlinkSync('busybox', path.join(root, 'bin', a))
  fs.writeFileSync(path.join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n')
  fs.writeFileSync(path.join(root, 'etc', 'group'), 'root:x:0:\n')
  const tar = path.join(labDir, 'busybox.tar')
  await run(['tar', '-C', root, '-cf', tar, '.'])
  fs.rmSync(root, { recursive: true, force: true })
  return tar
}

function ping(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath: socket, path: '/_ping', timeout: 1000 }, (res) => {
      res.resume()
      resolve(res.statusCode === 200)
    })
    req.on('error', () => resolve(false))
    req.on('timeout', () => { req.destroy(); resolve(false) })
  })
}

/**
 * Start the host's own dockerd in its network namespace (nsenter --net, see LAB-NOTES), wait for
 * /_ping, and import `busybox:latest` from `imageTar`.
 */
export async function startDockerd(host: LabHost, imageTar?: string): Promise<void> {
  const d = path.join(host.dir, 'docker')
  fs.mkdirSync(d, { recursive: true })
  const socket = path.join(d, 'docker.sock')
  const log = fs.openSync(path.join(d, 'dockerd.log'), 'a')
  fs.mkdirSync(host.pluginDir, { recursive: true })
  host.spawn([
    // dockerd looks for plugins only in /run/docker/plugins: each lab engine gets a mount namespace
    // of its own where that is the host's plugin dir (the weaver puts weave.sock there). Slave
    // propagation: nothing mounted in it leaks out; it goes with the engine.
    'unshare', '--mount', '--propagation', 'slave', '--',
    'sh', '-c', 'mkdir -p /run/docker/plugins && mount --bind "$0" /run/docker/plugins && exec "$@"', host.pluginDir,
    'dockerd',
    `--data-root=${path.join(d, 'data')}`,
    `--exec-root=${path.join(d, 'exec')}`,
    `--pidfile=${path.join(d, 'dockerd.pid')}`,
    `--host=unix://${socket}`,
    // never touch the machine's firewall or bridges: a FORWARD DROP would kill the lab LAN
    '--bridge=none', '--iptables=false', '--ip6tables=false', '--ip-masq=false',
    // recognisable cgroups that the sweep can remove
    `--cgroup-parent=/${host.ns}`,
    // containers of a stopped engine are killed quickly
    '--shutdown-timeout=2',
  ], { stdio: ['ignore', log, log], cwd: d, enter: 'nsenter' })
  fs.closeSync(log)
  await waitFor(`dockerd of ${host.name}`, () => ping(socket), 30_000, 100)
  host.dockerHost = `unix://${socket}`
  if (imageTar) await run(['docker', '-H', host.dockerHost, 'import', imageTar, 'busybox:latest'])
}

/**
 * Stop the host's dockerd (SIGTERM, as a service manager would; its containers are stopped) and
 * start it again on the same data root: containers with a restart policy come back.
 */
export async function restartDockerd(host: LabHost): Promise<void> {
  const pidFile = path.join(host.dir, 'docker', 'dockerd.pid')
  const pid = Number(fs.readFileSync(pidFile, 'utf8').trim())
  if (!pid) throw new Error(`${host.name}: no dockerd pid in ${pidFile}`)
  process.kill(pid, 'SIGTERM')
  await waitFor(`dockerd of ${host.name} to exit`, () => !fs.existsSync(`/proc/${pid}`), 30_000, 100)
  await startDockerd(host)
}

/** Remove all containers of the host's engine at once (SIGKILL), before the engine is stopped. */
export async function removeAllContainers(host: LabHost): Promise<void> {
  if (!host.dockerHost) return
  const ids = (await host.docker(['ps', '-aq'], { allowFail: true, timeoutMs: 10_000 })).stdout.split('\n').filter(Boolean)
  if (ids.length) await host.docker(['rm', '-f', ...ids], { allowFail: true, timeoutMs: 30_000 })
}
