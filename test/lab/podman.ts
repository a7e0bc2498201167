/**
 * podman (Debian's, CNI backend) per lab host: its own containers.conf (`network_backend = "cni"`,
 * the host's CNI conf dir, plugin dirs = the host's weave-net dir then /usr/lib/cni for portmap),
 * its own --root/--runroot under the host's dir, run inside the host with `nsenter --net` so the
 * CNI plugins it runs (weave-net, portmap) act in that host, and `localhost/busybox` imported from
 * the lab's busybox-static tarball (test/lab/docker.ts).
 *
 * One workaround for this machine: runc's container init is refused setting the rlimits podman
 * always puts in the spec (RLIMIT_NOFILE/NPROC, "operation not permitted", even at the current
 * values), so the OCI runtime is a wrapper that drops the rlimits from the bundle's config.json
 * before `runc create` and from the process file of `runc exec`. Docker sets no rlimits and needs none of this.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { runSync, type ExecOptions, type ExecResult } from './exec'
import type { LabHost } from './host'

export interface HostPodman {
  /** `podman ARGS` inside the host with its own storage and conf. */
  podman(args: string[], opts?: ExecOptions): Promise<ExecResult>
  /** Remove every container (their CNI DEL runs), synchronously; for teardown. */
  removeAllSync(): void
}

export const BUSYBOX = 'localhost/busybox:latest'

/** Why podman cannot run here, or undefined. */
export function podmanUnavailableReason(): string | undefined {
  for (const t of ['podman', 'runc', 'conmon', 'jq']) {
    if (runSync(['sh', '-c', `command -v ${t}`], { allowFail: true }).code !== 0) return `missing ${t} (scripts/system-packages.sh installs it)`
  }
  if (!fs.existsSync('/usr/lib/cni/portmap')) return 'missing /usr/lib/cni/portmap (containernetworking-plugins)'
  return undefined
}

function runtimeWrapper(): string {
  return [
    '#!/bin/sh',
    '# runc without the spec\'s rlimits (this machine refuses runc setting them; see test/lab/podman.ts)',
    'prev=""',
    'for a in "$@"; do',
    '  if [ "$prev" = "--bundle" ] || [ "$prev" = "-b" ]; then',
    '    jq "del(.process.rlimits)" "$a/config.json" > "$a/config.json.tmp" && mv "$a/config.json.tmp" "$a/config.json"',
    '  fi',
    '  if [ "$prev" = "--process" ] || [ "$prev" = "-p" ]; then',
    '    jq "del(.rlimits)" "$a" > "$a.tmp" && mv "$a.tmp" "$a"',
    '  fi',
    '  prev="$a"',
    'done',
    'exec runc "$@"',
    '',
  ].join('\n')
}

/**
 * Set podman up in `host` with CNI config from `cni` (its bin dir holds weave-net) and import the
 * busybox image from `imageTar`.
 */
export async function startPodman(host: LabHost, cni: { binDir: string; confDir: string }, imageTar: string): Promise<HostPodman> {
  const d = path.join(host.dir, 'podman')
  for (const sub of ['root', 'runroot', 'tmp']) fs.mkdirSync(path.join(d, sub), { recursive: true })
  const wrapper = path.join(d, 'runc-no-rlimits')
  fs.writeFileSync(wrapper, runtimeWrapper(), { mode: 0o755 })
  const conf = path.join(d, 'containers.conf')
  fs.writeFileSync(conf, [
    '[network]',
    'network_backend = "cni"',
    `cni_plugin_dirs = ["${cni.binDir}", "/usr/lib/cni"]`,
    `network_config_dir = "${cni.confDir}"`,
    '[engine]',
    `tmp_dir = "${path.join(d, 'tmp')}"`,
    'cgroup_manager = "cgroupfs"',
    'events_logger = "file"',
    `events_logfile_path = "${path.join(d, 'events.log')}"`,
    'runtime = "labrunc"',
    '[engine.runtimes]',
    `labrunc = ["${wrapper}"]`,
    '',
  ].join('\n'))
  // the machine's /etc/containers/storage.conf (if any) must not point the lab at shared storage
  const storageConf = path.join(d, 'storage.conf')
  fs.writeFileSync(storageConf, `[storage]\ndriver = "vfs"\nrunroot = "${path.join(d, 'runroot')}"\ngraphroot = "${path.join(d, 'root')}"\n`)
  const base = ['podman', '--root', path.join(d, 'root'), '--runroot', path.join(d, 'runroot'), '--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs']
  // NODE_EXTRA_CA_CERTS stays as it is: podman passes its environment to the plugins, as in production.
  const env = { CONTAINERS_CONF: conf, CONTAINERS_STORAGE_CONF: storageConf }
  const podman = (args: string[], opts: ExecOptions = {}) =>
    host.exec([...base, ...args], { timeoutMs: 120_000, ...opts, env: { ...env, ...opts.env }, enter: 'nsenter' })
  await podman(['import', imageTar, BUSYBOX])
  return {
    podman,
    removeAllSync() {
      runSync(['nsenter', `--net=/var/run/netns/${host.ns}`, '--', ...base, 'rm', '-a', '-f', '-t', '0'], { allowFail: true, env, timeoutMs: 60_000 })
    },
  }
}

/** podman's container id for `name` (the CNI container id its plugins see). */
export async function podmanId(p: HostPodman, name: string): Promise<string> {
  return (await p.podman(['inspect', '-f', '{{.Id}}', name])).stdout.trim()
}
