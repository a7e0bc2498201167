/**
 * Public door of cni/: the `weave-net` CNI plugin (an executable a container runtime runs for
 * every pod; its process starts at main.ts and loads nothing outside this folder) and its
 * installation (`weave setup-cni`). The router's side is router/cni-api.ts.
 *
 *   installCni({ binDir, confDir, socket })   // plugin wrapper + files, conflist when absent
 *   runPlugin({ env, stdin, defaultSocket }, callRouter) → { stdout, exitCode }
 */
export { installCni, defaultConflist, wrapperScript, CONFLIST_NAME, PLUGIN_NAME, type InstallOptions, type InstallResult } from './install'
export { runPlugin, type PluginInput, type PluginOutput, type RouterCall } from './plugin'
export { callRouter, parseResponse, RouterUnreachable, type RouterAnswer } from './router-client'
export { parseNetConf, parseEnv, type NetConf, type CniEnv } from './conf'
export { CniError, ERR, SUPPORTED_VERSIONS, formatResult, formatError, type CniVersion, type AddOutcome } from './spec'
