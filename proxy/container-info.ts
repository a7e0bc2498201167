/**
 * From a container's inspect to "attach this one, with these addresses" — shared by the start
 * interceptor and by the daemon (containers started by a restart policy or running at launch,
 * which it learns of from the events stream or a listing).
 */
import { strSlice, WEAVEWAIT_ENTRYPOINT } from './create-rewrite'
import { engineMessage, type EngineClient } from './engine-client'
import { decideAttach } from './qualify'
import type { StartedContainer } from './types'

/** The fields of GET /containers/{id}/json the proxy reads. */
export interface ContainerJson {
  Id: string
  Name?: string
  Config?: { Env?: string[] | null; Entrypoint?: unknown; Hostname?: string }
  HostConfig?: { NetworkMode?: string }
  State?: { Running?: boolean; Pid?: number }
}

/**
 * The container to attach, or undefined when it is not ours: not created through the proxy
 * (no /w/w entrypoint, so nothing in it waits for ethwe), host or container network, or
 * WEAVE_CIDR=none. Throws when it should be attached but cannot be: a bad WEAVE_CIDR in the
 * merged environment (e.g. from the image), or no running process.
 */
export function weaveContainerFromInspect(c: ContainerJson, defaultIpalloc: boolean): StartedContainer | undefined {
  if (strSlice(c.Config?.Entrypoint)?.[0] !== WEAVEWAIT_ENTRYPOINT) return undefined
  const d = decideAttach({ env: c.Config?.Env, networkMode: c.HostConfig?.NetworkMode, defaultIpalloc })
  if (d.kind === 'skip') return undefined
  if (d.kind === 'invalid') throw new Error(d.error)
  if (!c.State?.Running || !c.State.Pid) throw new Error('it is not running any more')
  return { id: c.Id, name: (c.Name ?? '').replace(/^\//, ''), pid: c.State.Pid, items: d.items, hostname: c.Config?.Hostname ?? '' }
}

/** Inspect `idOrName` through `engine` and apply weaveContainerFromInspect. */
export async function inspectWeaveContainer(engine: EngineClient, idOrName: string, defaultIpalloc: boolean): Promise<StartedContainer | undefined> {
  const r = await engine.request('GET', `/containers/${encodeURIComponent(idOrName)}/json`)
  if (r.status !== 200) throw new Error(`inspecting it failed: ${engineMessage(r)}`)
  return weaveContainerFromInspect(r.json as ContainerJson, defaultIpalloc)
}
