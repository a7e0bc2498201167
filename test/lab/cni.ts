/**
 * CNI in a lab host: `weave setup-cni` into the host's own CNI directories, pod network namespaces
 * bound under the host's dir (the lab's teardown unmounts everything there), and running the
 * installed plugin the way a runtime does (CNI_* variables, the network conf on stdin).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { run, type ExecResult } from './exec'
import type { LabHost } from './host'

export interface HostCni {
  binDir: string
  confDir: string
  /** The installed `weave-net` wrapper. */
  plugin: string
  conflist: string
}

/** `weave setup-cni` with the host's own directories (under its lab dir). */
export async function setupCni(host: LabHost): Promise<HostCni> {
  const binDir = path.join(host.dir, 'cni', 'bin')
  const confDir = path.join(host.dir, 'cni', 'net.d')
  await host.weave(['setup-cni', '--bin-dir', binDir, '--conf-dir', confDir])
  return { binDir, confDir, plugin: path.join(binDir, 'weave-net'), conflist: path.join(confDir, '10-weave.conflist') }
}

/**
 * Make `<host dir>/pods` a shared mount point, before the host's router starts: the router lives
 * in the mount namespace `ip netns exec` made for it (a copy taken at its start), and only a shared
 * mount passes the namespace files bound there later on to it (as `ip netns` does for /run/netns).
 * The lab's teardown unmounts everything under its dir.
 */
export async function preparePodDir(host: LabHost): Promise<string> {
  const dir = path.join(host.dir, 'pods')
  fs.mkdirSync(dir, { recursive: true })
  await run(['mount', '--bind', dir, dir])
  await run(['mount', '--make-shared', dir])
  return dir
}

/** A fresh network namespace bound at `<host dir>/pods/<name>` (as a runtime's netns path; see preparePodDir). */
export async function createPodNetns(host: LabHost, name: string): Promise<string> {
  const dir = path.join(host.dir, 'pods')
  const p = path.join(dir, name)
  fs.writeFileSync(p, '')
  await run(['unshare', `--net=${p}`, 'ip', 'link', 'set', 'lo', 'up'])
  return p
}

/** Unmount and remove a pod namespace made by createPodNetns (its veth end goes with it). */
export async function removePodNetns(p: string): Promise<void> {
  await run(['umount', p], { allowFail: true })
  fs.rmSync(p, { force: true })
}

export interface PluginRun {
  command: 'ADD' | 'DEL' | 'CHECK' | 'VERSION'
  containerId?: string
  netns?: string
  ifname?: string
  /** The network configuration (one plugin's entry, cniVersion and name included). */
  conf: Record<string, unknown>
  /** Extra or overriding environment (set a key to '' to leave a variable empty). */
  env?: Record<string, string>
}

/** Run the plugin inside the host, as a runtime would. Never throws on a non-zero exit. */
export function runPlugin(host: LabHost, plugin: string, r: PluginRun): Promise<ExecResult> {
  const env: Record<string, string> = {
    CNI_COMMAND: r.command,
    CNI_CONTAINERID: r.containerId ?? '',
    CNI_NETNS: r.netns ?? '',
    CNI_IFNAME: r.ifname ?? 'eth0',
    CNI_PATH: path.dirname(plugin),
    ...r.env,
  }
  return host.exec([plugin], { env, input: JSON.stringify(r.conf), allowFail: true, timeoutMs: 60_000 })
}

/** Addresses (`a.b.c.d/n`) of `ifname` in namespace file `netns`; [] when it has none or no such interface. */
export async function addressesIn(netns: string, ifname: string): Promise<string[]> {
  const r = await run(['nsenter', `--net=${netns}`, 'ip', '-j', 'addr', 'show', 'dev', ifname], { allowFail: true })
  if (r.code !== 0) return []
  const j = JSON.parse(r.stdout || '[]') as Array<{ addr_info?: Array<{ family: string; local: string; prefixlen: number }> }>
  return (j[0]?.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`)
}
