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
import type { Logger } from './deps'
import type { WeaverConfig } from './config'
import type { ContainerNet } from './container-net'
import { ApiError, type ApiRouter } from './api'
import { cidrItems, fail, jsonBody, plainCidrs } from './attach-request'
import { createTargetResolver, type TargetResolver } from './attach-target'
import { EXPOSE_ID, formatPsLine, type AttachedInfo, type NetHost, type NetnsRef } from './net'
import type { CidrItem } from '../proxy'
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

export function createAttachApi(config: WeaverConfig, deps: AttachApiDeps, hooks: { attached(mac: string): void }) {
  const { net, containerNet, allocator } = deps
  const log = deps.logger.child('attach')
  const targets = createTargetResolver(config.dockerApi)
  /** Targets attached through the API (for `weave ps`; Docker containers are also found by their leases). */
  const attached = new Map<string, NetnsRef>()

  return {
    register(router: ApiRouter) {
      router.route('POST', '/attach', async (req) => {
        const b = jsonBody(req)
        const t = await targets.resolve(b.target)
        const link = b.multicastRoute === false ? { multicastRoute: false } : undefined
        const r = await containerNet.attach({ id: t.id, netns: t.netns, items: cidrItems(b.addresses), link }).catch(fail)
        attached.set(t.id, t.netns)
        hooks.attached(r.mac)
        return { json: { id: t.id, mac: r.mac, addresses: r.addresses } }
      })
      router.route('POST', '/detach', async (req) => {
        const b = jsonBody(req)
        const t = await targets.resolve(b.target)
        const r = await containerNet.detach({ id: t.id, netns: t.netns, addresses: plainCidrs(b.addresses) }).catch(fail)
        if (!containerNet.addressesOf(t.id).length) attached.delete(t.id)
        return { json: { id: t.id, removed: r.removed } }
      })
      router.route('GET', '/ps', async (req) => {
        // `weave ps [CONTAINER...]`: only those (weave:expose by that name), else everything
        const only = req.query.getAll('target')
        const ids = new Set<string>()
        for (const t of only) ids.add(t === EXPOSE_ID ? t : (await targets.resolve(t)).id)
        let list = await psTargets(attached, allocator, targets)
        if (only.length) list = list.filter((t) => ids.has(t.id))
        const infos = await net.listAttached(list).catch(fail)
        for (const source of deps.psSources ?? []) {
          const more = await source().catch((err: Error) => { log.warn(`weave ps: ${err.message}`); return [] })
          for (const m of more) if (!infos.some((i) => i.id === m.id)) infos.push(m)
        }
        if (only.length) infos.splice(0, infos.length, ...infos.filter((i) => ids.has(i.id)))
        return { text: infos.map(formatPsLine).join('\n') }
      })
      router.route('POST', '/expose', async (req) => {
        const out = await expose(deps, cidrItems(jsonBody(req).addresses))
        log.info(`exposed ${out.join(' ')}`)
        return { json: { addresses: out } }
      })
      router.route('POST', '/hide', async (req) => ({ json: { removed: await hide(deps, plainCidrs(jsonBody(req).addresses)) } }))
    },
  }
}

/** What `weave ps` lists: targets attached through the API, and Docker containers holding leases. */
async function psTargets(attached: Map<string, NetnsRef>, allocator: Allocator, targets: TargetResolver): Promise<Array<{ id: string; netns: NetnsRef }>> {
  const out = new Map(attached)
  for (const o of allocator.owned()) {
    if (out.has(o.containerid) || !/^[0-9a-f]{64}$/.test(o.containerid)) continue
    const d = await targets.dockerInspect(o.containerid).catch(() => undefined)
    if (d) out.set(o.containerid, { pid: d.pid })
  }
  return [...out].map(([id, netns]) => ({ id, netns }))
}

/** `weave expose`: an address for the host on the weave bridge, from IPAM (`want`, or the default subnet). */
async function expose({ allocator, net }: AttachApiDeps, want: CidrItem[]): Promise<string[]> {
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
  return out
}

/** `weave hide`: take `which` (default: every exposed address) off the bridge; IPAM's go back. */
async function hide({ allocator, net }: AttachApiDeps, which: string[] | undefined): Promise<string[]> {
  const held = allocator.lookup(EXPOSE_ID).map(formatCidr)
  const removed: string[] = []
  for (const cidr of which ?? held) {
    await net.hide(cidr).catch(fail)
    const c = parseCidr(cidr)!
    if (held.includes(cidr)) await allocator.release(EXPOSE_ID, c.ip)
    removed.push(cidr)
  }
  return removed
}
