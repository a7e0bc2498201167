/**
 * The API the `weave attach | detach | ps | expose | hide` commands call (bodies JSON):
 *   POST /attach {target, addresses?: string[]}  → {id, mac, addresses}
 *   POST /detach {target, addresses?: string[]}  → {id, removed}
 *   GET  /ps                                     → text, `id MAC cidr…` a line
 *   POST /expose {addresses?: string[]}          → {addresses}
 *   POST /hide   {addresses?: string[]}          → {removed}
 * A target is a Docker container (name or id, looked up through the Docker API), a pid, a
 * network namespace path, or the name of one under /var/run/netns. Addresses use WEAVE_CIDR's
 * grammar (net:default, net:CIDR, ip:CIDR, bare CIDR); none means net:default.
 */
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import type { Logger } from './deps'
import type { WeaverConfig } from './config'
import type { ContainerNet } from './container-net'
import { ApiError, type ApiRouter } from './api'
import { EXPOSE_ID, formatPsLine, type AttachedInfo, type NetHost, type NetnsRef } from './net'
import { createEngineClient, parseDockerHost, parseWeaveCidr, type CidrItem } from '../proxy'
import { formatCidr, parseCidr, type Allocator } from '../ipam'

export interface AttachApiDeps {
  logger: Logger
  net: NetHost
  containerNet: ContainerNet
  allocator: Allocator
  /**
   * More containers for `weave ps` that neither attach nor IPAM know by container id (the Docker
   * plugin's: their leases are the endpoints'); parts of the daemon made later push theirs here.
   */
  psSources?: PsSource[]
}

/** One more set of `weave ps` lines: id, MAC, addresses. */
export type PsSource = () => Promise<AttachedInfo[]>

interface Target { id: string; netns: NetnsRef }

export function createAttachApi(config: WeaverConfig, deps: AttachApiDeps, hooks: { attached(mac: string): void }) {
  const { net, containerNet, allocator } = deps
  const log = deps.logger.child('attach')
  /** Targets attached through the API (for `weave ps`; Docker containers are also found by their leases). */
  const attached = new Map<string, NetnsRef>()

  async function dockerInspect(name: string): Promise<{ id: string; pid: number } | undefined> {
    const ep = parseDockerHost(config.dockerApi)
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

  function items(addresses: unknown): CidrItem[] {
    if (addresses === undefined) return []
    if (!Array.isArray(addresses) || addresses.some((a) => typeof a !== 'string')) throw new ApiError(400, 'addresses must be a list of strings')
    const r = parseWeaveCidr((addresses as string[]).join(' '))
    if (!r.ok) throw new ApiError(400, r.error.replace('WEAVE_CIDR entry', 'address'))
    if (r.none) throw new ApiError(400, '"none" makes no sense here')
    return r.items
  }

  /** Plain CIDRs for detach/hide (`ip:` prefix allowed). */
  function cidrs(addresses: unknown): string[] | undefined {
    if (addresses === undefined || (Array.isArray(addresses) && addresses.length === 0)) return undefined
    if (!Array.isArray(addresses)) throw new ApiError(400, 'addresses must be a list of strings')
    return addresses.map((a) => {
      const text = String(a).replace(/^ip:/, '')
      const c = parseCidr(text)
      if (!c) throw new ApiError(400, `"${a}" is not an address in CIDR form`)
      return formatCidr(c)
    })
  }

  function body(req: { body: Buffer }): Record<string, unknown> {
    if (!req.body.length) return {}
    try {
      const b = JSON.parse(req.body.toString('utf8')) as unknown
      if (typeof b === 'object' && b !== null && !Array.isArray(b)) return b as Record<string, unknown>
    } catch { /* fall through */ }
    throw new ApiError(400, 'expected a JSON object')
  }

  const fail = (err: unknown): never => {
    if (err instanceof ApiError) throw err
    throw new ApiError(500, (err as Error).message)
  }

  async function psTargets(): Promise<Array<{ id: string; netns: NetnsRef }>> {
    const out = new Map(attached)
    for (const o of allocator.owned()) {
      if (out.has(o.containerid) || !/^[0-9a-f]{64}$/.test(o.containerid)) continue
      const d = await dockerInspect(o.containerid).catch(() => undefined)
      if (d) out.set(o.containerid, { pid: d.pid })
    }
    return [...out].map(([id, netns]) => ({ id, netns }))
  }

  return {
    register(router: ApiRouter) {
      router.route('POST', '/attach', async (req) => {
        const b = body(req)
        const t = await resolve(b.target)
        const link = b.multicastRoute === false ? { multicastRoute: false } : undefined
        const r = await containerNet.attach({ id: t.id, netns: t.netns, items: items(b.addresses), link }).catch(fail)
        attached.set(t.id, t.netns)
        hooks.attached(r.mac)
        return { json: { id: t.id, mac: r.mac, addresses: r.addresses } }
      })
      router.route('POST', '/detach', async (req) => {
        const b = body(req)
        const t = await resolve(b.target)
        const r = await containerNet.detach({ id: t.id, netns: t.netns, addresses: cidrs(b.addresses) }).catch(fail)
        if (!containerNet.addressesOf(t.id).length) attached.delete(t.id)
        return { json: { id: t.id, removed: r.removed } }
      })
      router.route('GET', '/ps', async () => {
        const infos = await net.listAttached(await psTargets()).catch(fail)
        for (const source of deps.psSources ?? []) {
          const more = await source().catch((err: Error) => { log.warn(`weave ps: ${err.message}`); return [] })
          for (const m of more) if (!infos.some((i) => i.id === m.id)) infos.push(m)
        }
        return { text: infos.map(formatPsLine).join('\n') }
      })
      router.route('POST', '/expose', async (req) => {
        const b = body(req)
        const want = items(b.addresses)
        const out: string[] = []
        for (const it of want.length ? want : [{ kind: 'net-default' } as CidrItem]) {
          let cidr: string
          try {
            if (it.kind === 'net-default') cidr = formatCidr(await allocator.allocate(EXPOSE_ID))
            else if (it.kind === 'net') cidr = formatCidr(await allocator.allocate(EXPOSE_ID, parseCidr(it.cidr)))
            else { await allocator.claim(EXPOSE_ID, parseCidr(it.cidr)!); cidr = it.cidr }
          } catch (err) {
            throw new ApiError(503, `cannot get an address to expose: ${(err as Error).message}`)
          }
          await net.expose(cidr).catch(fail)
          out.push(cidr)
        }
        log.info(`exposed ${out.join(' ')}`)
        return { json: { addresses: out } }
      })
      router.route('POST', '/hide', async (req) => {
        const b = body(req)
        const held = allocator.lookup(EXPOSE_ID).map(formatCidr)
        const which = cidrs(b.addresses) ?? held
        const removed: string[] = []
        for (const cidr of which) {
          await net.hide(cidr).catch(fail)
          const c = parseCidr(cidr)!
          if (held.includes(cidr)) await allocator.release(EXPOSE_ID, c.ip)
          removed.push(cidr)
        }
        return { json: { removed } }
      })
    },
  }
}

/** A stable IPAM id (and `vethwepl` suffix) for a namespace path: distinct paths never share a prefix by accident. */
function nsId(p: string): string {
  let real = p
  try { real = fs.realpathSync(p) } catch { /* keep it */ }
  return 'ns' + crypto.createHash('sha256').update(real).digest('hex').slice(0, 14)
}
