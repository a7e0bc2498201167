/**
 * Where weavewait comes from and how the daemon puts it in place. Containers bind the installed
 * copy, never the build output: a rebuild rewrites the build file in place, and a container
 * started meanwhile would fail with "exec /w/w: permission denied".
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

/** The program scripts/build-native.js builds (from dist/proxy/ or proxy/ alike). */
export function weavewaitBuildPath(): string {
  const up = path.basename(path.dirname(__dirname)) === 'dist' ? ['..', '..'] : ['..']
  return path.resolve(__dirname, ...up, 'proxy', 'weavewait', 'build', 'w')
}

/**
 * Copy weavewait to `<dir>/w` (mode 0755) by write-then-rename, so a container never sees a
 * half-written file, and return `dir` for ProxyConfig.weavewaitDir. Throws, naming the file and
 * the command that builds it, when the build is missing.
 */
export function installWeavewait(dir: string, from = weavewaitBuildPath()): string {
  if (!fs.existsSync(from)) throw new Error(`weavewait not found at ${from}: build it with "node scripts/build-native.js"`)
  fs.mkdirSync(dir, { recursive: true })
  const tmp = path.join(dir, `.w.${process.pid}.tmp`)
  fs.copyFileSync(from, tmp)
  fs.chmodSync(tmp, 0o755)
  fs.renameSync(tmp, path.join(dir, 'w'))
  return dir
}
