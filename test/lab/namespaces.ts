/**
 * Plain network namespaces that a test attaches as "containers" (hosts without dockerd). Name
 * them after a lab host (`${host.ns}-c1`) so the lab's sweep removes them even after a crash;
 * call removeAll() in finally.
 */
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

export class ExtraNamespaces {
  /** Every namespace made here, in order. */
  readonly names: string[] = []

  /** `ip netns add NAME` with lo up; returns the name. */
  async add(name: string): Promise<string> {
    await run('ip', ['netns', 'add', name])
    this.names.push(name)
    await run('ip', ['-n', name, 'link', 'set', 'lo', 'up'])
    return name
  }

  async removeAll(): Promise<void> {
    for (const n of this.names.splice(0)) await run('ip', ['netns', 'del', n]).catch(() => undefined)
  }

  /** For process 'exit' handlers, where nothing asynchronous runs any more. */
  removeAllSync(): void {
    for (const n of this.names.splice(0)) {
      try { execFileSync('ip', ['netns', 'del', n], { stdio: 'ignore' }) } catch { /* already gone */ }
    }
  }
}
