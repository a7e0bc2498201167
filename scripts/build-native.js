#!/usr/bin/env node
// Builds the project's two native parts (run by `npm install` and `npm run build`):
//  - router/native/*.c  -> router/native/build/weave_native.node  (N-API addon: sockets, batches, pieces, checksums,
//    AEAD, netlink: one translation unit each, all linked into the one addon; see weave_native.c)
//  - proxy/weavewait/*.c -> proxy/weavewait/build/w               (tiny static program bound into containers)
//  - cni/shim/*.c        -> cni/shim/build/weave-net               (the CNI plugin's front, static: copied to hosts)
// N-API addons need no linking against node, so a plain C compiler and node's headers suffice;
// no node-gyp, no downloads. A failure says exactly what is missing.
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
const fail = (msg) => { console.error(`build-native: ${msg}`); process.exit(1) }
const sources = (dir) => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.c')).sort().map((f) => path.join(dir, f)) : [])

/** Stack canaries, checked libc calls (needs -O1 or more), read-only relocations after start. */
const HARDENING = ['-fstack-protector-strong', '-D_FORTIFY_SOURCE=2', '-Wl,-z,relro,-z,now']

function findCompiler() {
  for (const cc of [process.env.CC, 'cc', 'gcc', 'clang'].filter(Boolean)) {
    if (spawnSync(cc, ['--version'], { stdio: 'ignore' }).status === 0) return cc
  }
  fail('no C compiler found (install it with: apt-get install -y gcc libc6-dev)')
}

function nodeHeaders() {
  const candidates = [
    path.join(path.dirname(path.dirname(process.execPath)), 'include', 'node'),
    '/usr/include/node', '/usr/local/include/node',
  ]
  const dir = candidates.find((d) => fs.existsSync(path.join(d, 'node_api.h')))
  if (!dir) fail(`node_api.h not found in ${candidates.join(', ')} (install Node.js's headers, e.g. apt-get install -y libnode-dev, or a Node.js build that ships include/node)`)
  return dir
}

function compile(cc, args, what) {
  const r = spawnSync(cc, args, { encoding: 'utf8' })
  if (r.status !== 0) fail(`compiling ${what} failed:\n${cc} ${args.join(' ')}\n${r.stderr || r.stdout}`)
}

function buildAddon(cc) {
  const srcs = sources(path.join(root, 'router', 'native'))
  if (!srcs.length) return
  const out = path.join(root, 'router', 'native', 'build', 'weave_native.node')
  fs.mkdirSync(path.dirname(out), { recursive: true })
  // Write then rename: a running daemon has the old .node mapped; overwriting it in place crashes it.
  const tmp = `${out}.tmp${process.pid}`
  // Hardened like a distribution package: the addon parses what peers send (frames, pieces).
  compile(cc, ['-O2', '-Wall', '-Werror=implicit-function-declaration', '-shared', '-fPIC', '-std=gnu11', ...HARDENING,
    '-I', nodeHeaders(), '-DNAPI_VERSION=8', '-o', tmp, ...srcs], 'the N-API addon (router/native)')
  fs.renameSync(tmp, out)
  console.log(`build-native: ${path.relative(root, out)}`)
}

function buildWeavewait(cc) {
  const srcs = sources(path.join(root, 'proxy', 'weavewait'))
  if (!srcs.length) return
  const out = path.join(root, 'proxy', 'weavewait', 'build', 'w')
  fs.mkdirSync(path.dirname(out), { recursive: true })
  const probe = spawnSync(cc, ['-print-file-name=libc.a'], { encoding: 'utf8' })
  if (!probe.stdout || !fs.existsSync(probe.stdout.trim())) fail('static libc (libc.a) not found: install it with apt-get install -y libc6-dev')
  // Write then rename: a container bound to the old file keeps running it, never sees half a file.
  const tmp = `${out}.tmp${process.pid}`
  compile(cc, ['-Os', '-Wall', '-static', '-s', '-o', tmp, ...srcs], 'weavewait (proxy/weavewait)')
  fs.renameSync(tmp, out)
  console.log(`build-native: ${path.relative(root, out)}`)
}

function buildCniFront(cc) {
  const srcs = sources(path.join(root, 'cni', 'shim'))
  if (!srcs.length) return
  const out = path.join(root, 'cni', 'shim', 'build', 'weave-net')
  fs.mkdirSync(path.dirname(out), { recursive: true })
  // Static (a DaemonSet copies it onto hosts of any distribution); write then rename, as above.
  const tmp = `${out}.tmp${process.pid}`
  compile(cc, ['-O2', '-Wall', '-Werror=implicit-function-declaration', '-std=gnu11', '-static', '-s', ...HARDENING, '-o', tmp, ...srcs], 'the CNI front (cni/shim)')
  fs.renameSync(tmp, out)
  console.log(`build-native: ${path.relative(root, out)}`)
}

const cc = findCompiler()
buildAddon(cc)
buildWeavewait(cc)
buildCniFront(cc)
