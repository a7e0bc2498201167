/**
 * What `weave attach | detach` name as a target: a Docker container (name or id, looked up through
 * the Docker API), a pid, a network namespace path, or the name of one under /var/run/netns.
 */
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import { ApiError } from './api'
import type { NetnsRef } from './net'
import { createEngineClient, parseDockerHost } from '../proxy'

export interface Target { id: string; netns: NetnsRef }

export interface TargetResolver {
  /** The target's IPAM id and namespace; an ApiError (400, 404, 409) when there is none. */
  resolve(target: unknown): Promise<Target>
  /** A running Docker container's id and pid; undefined when Docker does not know it (or is not here). */
  dockerInspect(name: string): Promise<{ id: string; pid: number } | undefined>
}

export function createTargetResolver(dockerApi: string): TargetResolver {
  async function dockerInspect(name: string): Promise<{ id: string; pid: number } | undefined> {
    const ep = parseDockerHost(dockerApi)
    if (!ep.ok) return undefined
    let r
    try {
      r = await createEngineClient(ep.endpoint).request('GET', `/containers/${encodeURIComponent(name)}/json`)
    } catch {
      return undefined // no Docker here
    }
    if (r.status === 404) return undefined
    if (r.status !== 200) throw new ApiError(502, `docker inspect ${name}: HTTP ${r.status} ${r.text.trim()}`)
    const j = r.json as { Id?: string; State?: { Pid?: number; Running?: boolean } }
    if (!j.Id) return undefined
    if (!j.State?.Running || !j.State.Pid) throw new ApiError(409, `container ${name} is not running`)
    return { id: j.Id, pid: j.State.Pid }
  }

  async function resolve(target: unknown): Promise<Target> {
    if (typeof target !== 'string' || target === '') throw new ApiError(400, 'expected {"target": container name/id, pid or netns path}')
    if (/^\d+$/.test(target)) {
      if (!fs.existsSync(`/proc/${target}/ns/net`)) throw new ApiError(404, `no process ${target}`)
      return { id: target, netns: { pid: Number(target) } }
    }
    if (target.startsWith('/')) {
      if (!fs.existsSync(target)) throw new ApiError(404, `no network namespace at ${target}`)
      return { id: nsId(target), netns: { path: target } }
    }
    const d = await dockerInspect(target)
    if (d) return { id: d.id, netns: { pid: d.pid } }
    if (/^[A-Za-z0-9_.-]+$/.test(target) && fs.existsSync(`/var/run/netns/${target}`)) {
      return { id: nsId(`/var/run/netns/${target}`), netns: { path: `/var/run/netns/${target}` } }
    }
    throw new ApiError(404, `no container or network namespace named ${target}`)
  }

  return { resolve, dockerInspect }
}

/** A stable IPAM id (and `vethwepl` suffix) for a namespace path: distinct paths never share a prefix by accident. */
function nsId(p: string): string {
  let real = p
  try { real = fs.realpathSync(p) } catch { /* keep it */ }
  return 'ns' + crypto.createHash('sha256').update(real).digest('hex').slice(0, 14)
}
