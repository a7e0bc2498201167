/**
 * The network half (libnetwork's remote driver, local scope: the mesh, not a cluster store,
 * coordinates hosts). An endpoint is a veth pair made by router/net with its host end on the weave
 * bridge; at Join Docker is told to move the other end into the container as `ethwe0`, and to add
 * the multicast route, as attach does for proxied containers. State lives in the kernel (the
 * pairs) and in Docker, so a restarted daemon answers for endpoints made before it started.
 */
import type { Logger } from '../router/deps'
import type { EndpointVeth, EndpointVethRequest } from '../router/net'
import { type Json, PluginError, optMap, str } from './protocol'
import { GATEWAY_LABEL } from './ipam-driver'

/** Docker names the moved interface this plus an index: `ethwe0`, as Weave's plugin did. */
export const CONTAINER_IF_PREFIX = 'ethwe'
const MULTICAST = '224.0.0.0/4'
/** libnetwork's route types: 0 = via a next hop, 1 = connected (on the interface itself). */
const ROUTE_CONNECTED = 1
/** Address spaces our IPAM driver names; a network from another IPAM driver would clash across hosts. */
const OUR_SPACES = new Set(['weavelocal', 'weaveglobal'])

export interface EndpointPlumbing {
  addEndpointVeth(req: EndpointVethRequest): Promise<EndpointVeth>
  delEndpointVeth(endpointId: string): Promise<boolean>
}

export interface NetworkDriverDeps {
  net: EndpointPlumbing
  logger: Logger
  /** MTU of every endpoint (the weave network's). */
  mtu: number
}

export interface NetworkDriverState {
  networks: Map<string, { subnet: string }>
  endpoints: Map<string, { networkId: string; address: string; hostEnd: string; containerEnd: string }>
}

export function createNetworkDriver(deps: NetworkDriverDeps): { routes: Map<string, (b: Json) => Promise<Json> | Json>; state: NetworkDriverState } {
  const log = deps.logger
  const state: NetworkDriverState = { networks: new Map(), endpoints: new Map() }

  function createNetwork(b: Json): Json {
    const call = 'CreateNetwork'
    const id = str(b, 'NetworkID', call)
    if (Array.isArray(b.IPv6Data) && b.IPv6Data.length) throw new PluginError(400, 'the weave driver carries IPv4 only; create the network without --ipv6')
    const v4 = Array.isArray(b.IPv4Data) ? (b.IPv4Data as Json[]) : []
    if (!v4.length) throw new PluginError(400, `${call}: no IPv4 pool; create the network with --ipam-driver weave`)
    for (const d of v4) {
      if (!OUR_SPACES.has(String(d.AddressSpace))) {
        throw new PluginError(400, `the weave driver needs weave's IPAM (addresses are coordinated across hosts by the mesh): add --ipam-driver weave`)
      }
    }
    const pool = typeof v4[0].Pool === 'string' ? v4[0].Pool : ''
    state.networks.set(id, { subnet: pool })
    log.info(`network ${id.slice(0, 12)} created on ${pool}`)
    return {}
  }

  async function endpointVeth(endpointId: string) {
    try {
      return await deps.net.addEndpointVeth({ endpointId, mtu: deps.mtu })
    } catch (err) {
      throw new PluginError(500, `weave cannot make the container's interface: ${(err as Error).message}`)
    }
  }

  async function createEndpoint(b: Json): Promise<Json> {
    const call = 'CreateEndpoint'
    const networkId = str(b, 'NetworkID', call)
    const endpointId = str(b, 'EndpointID', call)
    const iface = optMap(b, 'Interface')
    const address = typeof iface.Address === 'string' ? iface.Address : ''
    if (!address) throw new PluginError(400, `${call}: the endpoint has no IPv4 address (is the network's IPAM driver weave?)`)
    const v = await endpointVeth(endpointId)
    state.endpoints.set(endpointId, { networkId, address, hostEnd: v.hostEnd, containerEnd: v.containerEnd })
    log.info(`endpoint ${endpointId.slice(0, 12)}: ${address} on ${v.hostEnd}`)
    // Docker refuses a MAC from the driver when the user gave one (--mac-address).
    return iface.MacAddress ? {} : { Interface: { MacAddress: v.mac } }
  }

  async function join(b: Json): Promise<Json> {
    const call = 'Join'
    str(b, 'NetworkID', call)
    const endpointId = str(b, 'EndpointID', call)
    // Made by CreateEndpoint just before; an endpoint from before this daemon started (or whose
    // pair was lost) gets one now (idempotent).
    const containerEnd = state.endpoints.get(endpointId)?.containerEnd ?? (await endpointVeth(endpointId)).containerEnd
    return {
      InterfaceName: { SrcName: containerEnd, DstPrefix: CONTAINER_IF_PREFIX },
      StaticRoutes: [{ Destination: MULTICAST, RouteType: ROUTE_CONNECTED }],
      // No gateway (see GATEWAY_LABEL): keep Docker from adding docker_gwbridge for one.
      DisableGatewayService: true,
    }
  }

  async function deleteEndpoint(b: Json): Promise<Json> {
    const endpointId = str(b, 'EndpointID', 'DeleteEndpoint')
    state.endpoints.delete(endpointId)
    // Answered at once: Docker is done with the pair (a `docker run --rm` waits for this), and
    // endpoint ids are never reused, so removing it in the background races with nothing.
    deps.net.delEndpointVeth(endpointId).catch((err: Error) => log.warn(`removing endpoint ${endpointId.slice(0, 12)}'s interface: ${err.message}`))
    return {}
  }

  const ok = (field: string, call: string) => (b: Json): Json => { str(b, field, call); return {} }
  const routes = new Map<string, (b: Json) => Promise<Json> | Json>([
    ['NetworkDriver.GetCapabilities', () => ({ Scope: 'local', ConnectivityScope: 'local' })],
    ['NetworkDriver.CreateNetwork', createNetwork],
    ['NetworkDriver.DeleteNetwork', (b) => { state.networks.delete(str(b, 'NetworkID', 'DeleteNetwork')); return {} }],
    ['NetworkDriver.CreateEndpoint', createEndpoint],
    ['NetworkDriver.DeleteEndpoint', deleteEndpoint],
    ['NetworkDriver.EndpointOperInfo', (b) => {
      const e = state.endpoints.get(str(b, 'EndpointID', 'EndpointOperInfo'))
      return { Value: e ? { 'works.weave.host-veth': e.hostEnd } : {} }
    }],
    ['NetworkDriver.Join', join],
    ['NetworkDriver.Leave', ok('EndpointID', 'Leave')],
    ['NetworkDriver.DiscoverNew', () => ({})],
    ['NetworkDriver.DiscoverDelete', () => ({})],
    // libnetwork calls these for every remote driver; weave has no port mappings to program.
    ['NetworkDriver.ProgramExternalConnectivity', ok('EndpointID', 'ProgramExternalConnectivity')],
    ['NetworkDriver.RevokeExternalConnectivity', ok('EndpointID', 'RevokeExternalConnectivity')],
  ])
  return { routes, state }
}

export { GATEWAY_LABEL }
