/**
 * What the daemon asks Docker about containers for IPAM: is one running (before a dead
 * container's leases go), and which exist at all (start-up lease GC). Only Docker container IDs
 * (64 hex digits) are Docker's business; other lease holders (namespaces, `weave:expose`) are not.
 */
import { createEngineClient, parseDockerHost } from '../proxy'

export interface DockerContainers {
  /** true: running; false: stopped or gone; undefined: not a container ID, or Docker cannot be asked. */
  isRunning(id: string): Promise<boolean | undefined>
  /**
   * For each Docker container ID among `ids`: running, stopped (exists) or gone. Other IDs are
   * left out. Undefined when Docker cannot be asked (then nothing may be concluded).
   */
  states(ids: string[]): Promise<Map<string, ContainerState> | undefined>
}

export type ContainerState = 'running' | 'stopped' | 'gone'

export const isDockerId = (id: string): boolean => /^[0-9a-f]{64}$/.test(id)

export function dockerContainers(dockerApi: string): DockerContainers {
  const ep = parseDockerHost(dockerApi)
  const engine = ep.ok ? createEngineClient(ep.endpoint) : undefined
  return {
    async isRunning(id) {
      if (!engine || !isDockerId(id)) return undefined
      const r = await engine.request('GET', `/containers/${id}/json`).catch(() => undefined)
      if (!r) return undefined
      if (r.status === 404) return false
      if (r.status !== 200) return undefined
      return (r.json as { State?: { Running?: boolean } } | undefined)?.State?.Running === true
    },
    async states(ids) {
      if (!engine) return undefined
      const r = await engine.request('GET', '/containers/json?all=1').catch(() => undefined)
      if (!r || r.status !== 200 || !Array.isArray(r.json)) return undefined
      const known = new Map<string, ContainerState>()
      for (const c of r.json as Array<{ Id?: unknown; State?: unknown }>) {
        if (typeof c.Id === 'string') known.set(c.Id, c.State === 'running' ? 'running' : 'stopped')
      }
      return new Map(ids.filter(isDockerId).map((id) => [id, known.get(id) ?? 'gone']))
    },
  }
}
