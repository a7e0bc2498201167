/**
 * The Docker network plugin inside the daemon (driver + IPAM driver `weave` on a unix socket), or
 * its status saying why it is off. Its IPAM driver hands out pool addresses: nothing to do without
 * IP allocation (--ipalloc-range "").
 */
import type { WeaverConfig } from './config'
import type { StatusModel } from './api'
import { dockerEndpoint } from './proxy-wiring'
import { createDockerPlugin, type DockerPlugin, type DockerPluginDeps } from '../plugin'

/** The plugin, its status section and report key registered; undefined when it is off. */
export function wirePlugin(config: WeaverConfig, deps: DockerPluginDeps & { status: StatusModel }): DockerPlugin | undefined {
  const { status, ...pluginDeps } = deps
  const off = (why: string) => status.addSection('plugin', { order: 35, lines: () => [['Service', 'plugin'], ['Status', `off (${why})`]] })
  if (!config.plugin) {
    off(`no Docker socket at ${config.dockerApi}, or --no-plugin`)
    return undefined
  }
  if (config.ipallocRange === '') {
    deps.logger.info('Docker plugin off: IP allocation is off (--ipalloc-range "")')
    off('IP allocation is off: --ipalloc-range ""')
    return undefined
  }
  const plugin = createDockerPlugin(
    {
      socketPath: config.pluginSocket,
      range: config.ipallocRange,
      defaultSubnet: config.ipallocDefaultSubnet ?? config.ipallocRange,
      mtu: config.mtu,
      timeoutMs: config.attachTimeoutMs,
      docker: dockerEndpoint(config),
      downResponder: true,
    },
    pluginDeps,
  )
  status.addSection('plugin', { order: 35, lines: () => plugin.statusLines() })
  status.addReport('Plugin', () => plugin.report())
  return plugin
}
