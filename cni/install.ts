/**
 * `weave setup-cni`: put the plugin where a container runtime finds it, as Weave's does.
 * - `BIN_DIR/weave-net`: a shell wrapper that runs node on `BIN_DIR/weave-net.d/main.js`, a copy of
 *   this folder's compiled plugin files (they need nothing but node), so the plugin works from the
 *   host's CNI directory even when weave-ts itself lives elsewhere (a DaemonSet's container image).
 * - `CONF_DIR/10-weave.conflist`, written only when absent (an operator's edits survive): weave-net
 *   chained to `portmap` for `-p`/hostPort mappings.
 * Files are written to a temporary name and renamed, so a runtime never runs a half-written plugin.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

export const CONFLIST_NAME = '10-weave.conflist'
export const PLUGIN_NAME = 'weave-net'
/** The compiled files the plugin process loads (main.ts's imports, transitively). */
const PLUGIN_FILES = ['main.js', 'plugin.js', 'conf.js', 'spec.js', 'router-client.js']

export interface InstallOptions {
  /** Default /opt/cni/bin. */
  binDir?: string
  /** Default /etc/cni/net.d. */
  confDir?: string
  /** The router's API socket the conflist names. */
  socket: string
  /** Node executable the wrapper runs; default this process's. */
  node?: string
  /** The conflist's cniVersion; default 1.0.0. */
  cniVersion?: string
  /** Default true (as Weave's conflist). */
  hairpinMode?: boolean
}

export interface InstallResult {
  plugin: string
  conflist: string
  /** False when a conflist was already there and kept. */
  conflistWritten: boolean
}

export function installCni(opts: InstallOptions): InstallResult {
  const binDir = opts.binDir ?? '/opt/cni/bin'
  const confDir = opts.confDir ?? '/etc/cni/net.d'
  const node = opts.node ?? process.execPath
  const libDir = path.join(binDir, `${PLUGIN_NAME}.d`)
  fs.mkdirSync(libDir, { recursive: true })
  for (const f of PLUGIN_FILES) writeAtomic(path.join(libDir, f), fs.readFileSync(path.join(__dirname, f)), 0o644)
  const plugin = path.join(binDir, PLUGIN_NAME)
  writeAtomic(plugin, wrapperScript(node, libDir), 0o755)

  fs.mkdirSync(confDir, { recursive: true })
  const conflist = path.join(confDir, CONFLIST_NAME)
  let conflistWritten = false
  if (!fs.existsSync(conflist)) {
    writeAtomic(conflist, JSON.stringify(defaultConflist(opts), null, 2) + '\n', 0o644)
    conflistWritten = true
  }
  return { plugin, conflist, conflistWritten }
}

export function defaultConflist(opts: Pick<InstallOptions, 'socket' | 'cniVersion' | 'hairpinMode'>): Record<string, unknown> {
  return {
    cniVersion: opts.cniVersion ?? '1.0.0',
    name: 'weave',
    plugins: [
      { name: 'weave', type: PLUGIN_NAME, hairpinMode: opts.hairpinMode ?? true, socket: opts.socket },
      { type: 'portmap', capabilities: { portMappings: true }, snat: true },
    ],
  }
}

/**
 * The wrapper. It finds the plugin files beside itself (`${0%/*}`, no process started), so the
 * directory may be mounted elsewhere in the installer's container than on the host (a DaemonSet
 * writes /host/opt/cni/bin, the runtime runs /opt/cni/bin); so is a node binary copied in there.
 * NODE_EXTRA_CA_CERTS and NODE_OPTIONS go: the plugin makes no TLS connection, and a CA bundle
 * named there is parsed at every node start (about 80 ms here, more than the rest of an ADD); a
 * runtime passes its own environment through to plugins.
 */
export function wrapperScript(node: string, libDir: string): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`
  const lib = `"\${0%/*}"/${q(path.basename(libDir))}`
  const nodeExpr = path.dirname(node) === libDir ? `${lib}/${q(path.basename(node))}` : q(node)
  return [
    '#!/bin/sh',
    '# weave-net CNI plugin, installed by `weave setup-cni` (weave-ts).',
    'unset NODE_EXTRA_CA_CERTS NODE_OPTIONS',
    `exec ${nodeExpr} ${lib}/main.js "$@"`,
    '',
  ].join('\n')
}

function writeAtomic(file: string, data: string | Buffer, mode: number): void {
  const tmp = `${file}.tmp${process.pid}`
  fs.writeFileSync(tmp, data, { mode })
  fs.chmodSync(tmp, mode)
  fs.renameSync(tmp, file)
}
