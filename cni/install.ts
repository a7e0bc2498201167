/**
 * `weave setup-cni`: put the plugin where a container runtime finds it, as Weave's does.
 * - `BIN_DIR/weave-net`: the small C front (cni/shim, built by scripts/build-native.js), which
 *   answers VERSION itself and hands ADD/DEL/CHECK to the router in one request (a runtime starts
 *   the plugin four times per pod; a node process each time was most of a pod's network cost).
 * - `BIN_DIR/weave-net.d/`: a copy of this folder's compiled plugin files (they need nothing but
 *   node) and `node-plugin`, a shell wrapper that runs node on them: what the front hands anything
 *   unusual to (a router that is down or too old, a malformed conf), and `BIN_DIR/weave-net` itself
 *   where the front was not built. So the plugin works from the host's CNI directory even when
 *   weave-ts itself lives elsewhere (a DaemonSet's container image).
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
/** The node plugin's wrapper inside `weave-net.d/` (the front runs it by this name). */
export const NODE_PLUGIN = 'node-plugin'

/** The front scripts/build-native.js builds (from dist/cni/ or cni/ alike). */
export function cniFrontBuildPath(): string {
  const up = path.basename(path.dirname(__dirname)) === 'dist' ? ['..', '..'] : ['..']
  return path.resolve(__dirname, ...up, 'cni', 'shim', 'build', PLUGIN_NAME)
}

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
  /** The C front to install as the plugin; default the build's. Absent file: the node wrapper is the plugin. */
  front?: string
}

export interface InstallResult {
  plugin: string
  conflist: string
  /** False when a conflist was already there and kept. */
  conflistWritten: boolean
  /** True when the plugin is the C front; false: the node wrapper (the front was not built). */
  front: boolean
}

export function installCni(opts: InstallOptions): InstallResult {
  const binDir = opts.binDir ?? '/opt/cni/bin'
  const confDir = opts.confDir ?? '/etc/cni/net.d'
  const node = opts.node ?? process.execPath
  const libDir = path.join(binDir, `${PLUGIN_NAME}.d`)
  fs.mkdirSync(libDir, { recursive: true })
  for (const f of PLUGIN_FILES) writeAtomic(path.join(libDir, f), fs.readFileSync(path.join(__dirname, f)), 0o644)
  writeAtomic(path.join(libDir, NODE_PLUGIN), wrapperScript(node, libDir, true), 0o755)
  const plugin = path.join(binDir, PLUGIN_NAME)
  const frontFile = opts.front ?? cniFrontBuildPath()
  const front = fs.existsSync(frontFile)
  writeAtomic(plugin, front ? fs.readFileSync(frontFile) : wrapperScript(node, libDir), 0o755)

  fs.mkdirSync(confDir, { recursive: true })
  const conflist = path.join(confDir, CONFLIST_NAME)
  let conflistWritten = false
  if (!fs.existsSync(conflist)) {
    writeAtomic(conflist, JSON.stringify(defaultConflist(opts), null, 2) + '\n', 0o644)
    conflistWritten = true
  }
  return { plugin, conflist, conflistWritten, front }
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
 * The node wrapper, in BIN_DIR (`inLib` false) or in `weave-net.d/` itself (`inLib`). It finds the
 * plugin files relative to itself (`${0%/*}`, no process started), so the directory may be mounted
 * elsewhere in the installer's container than on the host (a DaemonSet writes /host/opt/cni/bin,
 * the runtime runs /opt/cni/bin); so is a node binary copied in there.
 * NODE_EXTRA_CA_CERTS and NODE_OPTIONS go: the plugin makes no TLS connection, and a CA bundle
 * named there is parsed at every node start (about 80 ms here, more than the rest of an ADD); a
 * runtime passes its own environment through to plugins.
 */
export function wrapperScript(node: string, libDir: string, inLib = false): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`
  const lib = inLib ? '"${0%/*}"' : `"\${0%/*}"/${q(path.basename(libDir))}`
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
