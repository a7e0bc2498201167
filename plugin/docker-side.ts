/**
 * What the plugin asks of the Docker engine: that a network named `weave` exists (driver and IPAM
 * driver `weave`, the default subnet), and, as containers on weave networks start, their name,
 * aliases, addresses and pid (for the gratuitous ARP and weaveDNS).
 */
import type { Clock, Logger } from '../router/deps'
import type { EngineClient } from '../proxy'

export const DEFAULT_NETWORK = 'weave'
export const DRIVER_NAME = 'weave'

const message = (r: { json: unknown; text: string; status: number }) => {
  const m = (r.json as { message?: unknown } | undefined)?.message
  return typeof m === 'string' ? m : r.text.trim() || `HTTP ${r.status}`
}

/** Make sure network `name` exists with our drivers; resolves with what it did. */
export async function ensureNetwork(engine: EngineClient, subnet: string, name = DEFAULT_NETWORK): Promise<'exists' | 'created'> {
  const got = await engine.request('GET', `/networks/${encodeURIComponent(name)}`)
  if (got.status === 200) {
    const driver = (got.json as { Driver?: string } | undefined)?.Driver
    if (driver !== DRIVER_NAME) throw new Error(`a network named ${name} exists with driver ${driver}, not ${DRIVER_NAME}; remove it (docker network rm ${name}) and relaunch`)
    return 'exists'
  }
  if (got.status !== 404) throw new Error(`cannot look up network ${name}: ${message(got)}`)
  const r = await engine.request('POST', '/networks/create', {
    // The subnet given explicitly, so that `docker run --ip` works on it (Docker allows --ip only
    // on networks with a configured subnet).
    Name: name, Driver: DRIVER_NAME, IPAM: { Driver: DRIVER_NAME, Config: [{ Subnet: subnet }] }, CheckDuplicate: true,
  })
  if (r.status === 201 || r.status === 200) return 'created'
  if (r.status === 409) return 'exists' // created meanwhile (another launch of ours)
  throw new Error(`cannot create network ${name}: ${message(r)}`)
}

/**
 * ensureNetwork, retried with backoff while the engine is not answering (it may be starting too);
 * gives up after `attempts`, logging why. Never throws.
 */
export async function ensureNetworkWithRetry(engine: EngineClient, subnet: string, deps: { clock: Clock; logger: Logger; stopped: () => boolean }, attempts = 8): Promise<boolean> {
  let wait = 500
  for (let i = 1; i <= attempts && !deps.stopped(); i++) {
    try {
      const what = await ensureNetwork(engine, subnet)
      deps.logger.info(`Docker network ${DEFAULT_NETWORK} ${what === 'created' ? 'created' : 'exists'}`)
      return true
    } catch (err) {
      const msg = (err as Error).message
      if (/exists with driver/.test(msg) || i === attempts) {
        deps.logger.error(`Docker network ${DEFAULT_NETWORK}: ${msg}`)
        return false
      }
      deps.logger.warn(`Docker network ${DEFAULT_NETWORK}: ${msg}; retrying in ${wait} ms`)
      await new Promise<void>((res) => deps.clock.setTimer(wait, res))
      wait = Math.min(wait * 2, 8000)
    }
  }
  return false
}

/** A started container's place on weave networks. */
export interface WeaveContainer {
  id: string
  /** Without the leading slash. */
  name: string
  pid: number
  /** Per weave network: its addresses (CIDR) and --network-alias names. */
  networks: Array<{ network: string; networkId: string; address: string; aliases: string[]; mac: string }>
}

interface InspectJson {
  Id?: string
  Name?: string
  State?: { Running?: boolean; Pid?: number }
  NetworkSettings?: { Networks?: Record<string, { NetworkID?: string; IPAddress?: string; IPPrefixLen?: number; Aliases?: string[] | null; MacAddress?: string }> }
}

/** Pure: the weave part of a container's inspect, given the ids of weave-driver networks. */
export function weaveContainerOf(j: InspectJson, weaveNetworkIds: ReadonlySet<string>): WeaveContainer | undefined {
  if (!j.Id || !j.State?.Running || !j.State.Pid) return undefined
  const networks: WeaveContainer['networks'] = []
  for (const [network, n] of Object.entries(j.NetworkSettings?.Networks ?? {})) {
    if (!n.NetworkID || !weaveNetworkIds.has(n.NetworkID) || !n.IPAddress) continue
    const short = j.Id.slice(0, 12)
    // Docker lists the short id among the aliases; it is no name anyone chose.
    const aliases = (n.Aliases ?? []).filter((a) => a && a !== short && a !== j.Id)
    networks.push({ network, networkId: n.NetworkID, address: `${n.IPAddress}/${n.IPPrefixLen ?? 32}`, aliases, mac: n.MacAddress ?? '' })
  }
  if (!networks.length) return undefined
  return { id: j.Id, name: (j.Name ?? '').replace(/^\//, ''), pid: j.State.Pid, networks }
}

/** Ids of the engine's networks whose driver is ours. */
export async function weaveNetworkIds(engine: EngineClient): Promise<Set<string>> {
  const filters = encodeURIComponent(JSON.stringify({ driver: [DRIVER_NAME] }))
  const r = await engine.request('GET', `/networks?filters=${filters}`)
  if (r.status !== 200 || !Array.isArray(r.json)) throw new Error(`cannot list networks: ${message(r)}`)
  return new Set((r.json as Array<{ Id?: string; Driver?: string }>).filter((n) => n.Driver === DRIVER_NAME && n.Id).map((n) => n.Id!))
}

export async function inspectContainer(engine: EngineClient, id: string): Promise<InspectJson | undefined> {
  const r = await engine.request('GET', `/containers/${encodeURIComponent(id)}/json`)
  return r.status === 200 ? (r.json as InspectJson) : undefined
}

/** Ids of running containers on weave networks (at launch: re-register what started without us). */
export async function runningOnWeave(engine: EngineClient, ids: ReadonlySet<string>): Promise<string[]> {
  const out: string[] = []
  for (const nid of ids) {
    const filters = encodeURIComponent(JSON.stringify({ network: [nid], status: ['running'] }))
    const r = await engine.request('GET', `/containers/json?filters=${filters}`)
    if (r.status === 200 && Array.isArray(r.json)) for (const c of r.json as Array<{ Id?: string }>) if (c.Id && !out.includes(c.Id)) out.push(c.Id)
  }
  return out
}

/** Every address (`a.b.c.d`) an endpoint of the networks `ids` holds on this engine. */
export async function endpointAddresses(engine: EngineClient, ids: ReadonlySet<string>): Promise<Set<string>> {
  const out = new Set<string>()
  for (const nid of ids) {
    const r = await engine.request('GET', `/networks/${encodeURIComponent(nid)}`)
    if (r.status === 404) continue // removed meanwhile
    if (r.status !== 200) throw new Error(`cannot inspect network ${nid.slice(0, 12)}: ${message(r)}`)
    const containers = (r.json as { Containers?: Record<string, { IPv4Address?: string }> } | undefined)?.Containers ?? {}
    for (const c of Object.values(containers)) if (c.IPv4Address) out.add(c.IPv4Address.split('/')[0])
  }
  return out
}
