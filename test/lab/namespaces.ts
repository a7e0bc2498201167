/**
 * Plain network namespaces that a test attaches as "containers" (hosts without dockerd). Name
 * them after a lab host (`${host.ns}-c1`) so the lab's sweep removes them even after a crash;
 * call removeAll() in finally.
 */
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import type { LabHost } from './host'

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

/** One ping (busybox) at a time from namespace `ns`, up to `tries`; true at the first answer. */
export async function pingFromNamespace(ns: string, ip: string, o: { tries?: number; waitS?: number } = {}): Promise<boolean> {
  const waitS = o.waitS ?? 1
  for (let i = 0; i < (o.tries ?? 1); i++) {
    const ok = await run('ip', ['netns', 'exec', ns, 'busybox', 'ping', '-c', '1', '-W', String(waitS), ip], { timeout: waitS * 10_000 })
      .then(() => true, () => false)
    if (ok) return true
  }
  return false
}

/** `weave attach [ADDR...] TARGET` in host `h`; returns the first address, or throws with the daemon's log. */
export async function weaveAttach(h: { name: string; weave: LabHost['weave']; weaverLog: LabHost['weaverLog'] }, target: string, addrs: string[] = []): Promise<string> {
  const r = await h.weave(['attach', ...addrs, target], { allowFail: true })
  if (r.code !== 0) throw new Error(`${h.name}: weave attach ${target}: ${r.stderr}\n${h.weaverLog()}`)
  return r.stdout.trim().split(/\s+/)[0]
}
