/** The package version, read once from package.json (light: the `weave` command loads it too). */
import * as fs from 'node:fs'
import * as path from 'node:path'

export const VERSION: string = readVersion()

function readVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version?: unknown }
    return String(pkg.version)
  } catch {
    return 'unknown'
  }
}
