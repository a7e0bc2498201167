/**
 * IPAM inside the daemon: the allocator on the mesh's `ipam` channel with its state file, Docker's
 * word on which lease holders still run, and the IPAM routes, status section and report key.
 */
import * as path from 'node:path'
import type { Clock, Logger, Rng } from './deps'
import type { WeaverConfig } from './config'
import type { ApiRouter, StatusModel } from './api'
import type { GossipHost } from './mesh'
import { dockerContainers } from './docker-containers'
import { createIpam, IPAM_ROUTES, IPAM_STATE_FILE, type Ipam } from '../ipam'

export function wireIpam(
  config: WeaverConfig,
  deps: { clock: Clock; rng: Rng; logger: Logger; host: GossipHost; router: ApiRouter; status: StatusModel },
): Ipam {
  const { router, status } = deps
  const docker = dockerContainers(config.dockerApi)
  const ipam = createIpam(
    {
      range: config.ipallocRange,
      defaultSubnet: config.ipallocDefaultSubnet,
      init: config.ipallocInit,
      launchPeerCount: config.peers.length,
      stateFile: path.join(config.stateDir, IPAM_STATE_FILE),
    },
    { clock: deps.clock, rng: deps.rng, logger: deps.logger, host: deps.host,
      isRunning: (id) => docker.isRunning(id),
      containerStates: (ids) => docker.states(ids),
    },
  )
  for (const [method, pattern] of IPAM_ROUTES) {
    router.route(method, pattern, (req) => ipam.handle({ method: req.method, path: req.path, query: req.query }))
  }
  router.route('GET', '/status/ipam', () => ({ text: ipam.statusIpam() }))
  status.addSection('ipam', { order: 20, lines: () => ipam.statusLines() })
  status.addReport('IPAM', () => ipam.report())
  return ipam
}
