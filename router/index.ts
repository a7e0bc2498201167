/**
 * The router's door for the `weave` command: the flag table, the version, the pid file and the
 * host reset. Only light modules are imported here, so `weave version` or `weave status` never
 * load the daemon (mesh, crypto, libsodium); `resetHost` loads the host plumbing when called.
 * The daemon itself starts at router/main.ts.
 */
export { VERSION } from './version'
export { ROUTER_NODE_FLAGS } from './node-flags'
export { ConfigError, launchHelp, parseDaemonArgs, type WeaverConfig } from './config'
export { isAlive, pidFilePath, runningPid, runningSupervisor, supervisorPidFile } from './pid-file'
export type { HostResetReport } from './host-reset'

/** See router/host-reset.ts; loaded on first use. */
export async function resetHost(opts: { ovsdbTarget: string | undefined }): Promise<import('./host-reset').HostResetReport> {
  const m = await import('./host-reset')
  return m.resetHost(opts)
}
