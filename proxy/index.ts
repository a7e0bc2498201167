/**
 * The Docker API proxy (public door). The daemon creates it with `createProxy(config, deps)`,
 * fills `deps.hooks` with its IPAM and attach logic, and calls `start()`/`stop()`.
 *
 *   const proxy = createProxy(
 *     { socketPath: '/run/weave/weave.sock', docker: { socketPath: '/var/run/docker.sock' },
 *       weavewaitDir: '/run/weave/w', defaultIpalloc: true },
 *     { clock, logger, hooks: { onStarted: (c) => attachEthwe(c), onEvent: (e) => releaseOnDeath(e) } })
 *   await proxy.start()
 */
export { createProxy } from './server'
export type { Proxy, ProxyConfig, ProxyDeps, ProxyHooks, StartedContainer, CreateContext, WeaveAddress } from './types'
export type { DockerEndpoint } from './engine-client'
export { createEngineClient, describeEndpoint, type EngineClient } from './engine-client'
export type { ContainerEvent } from './events'
export { parseWeaveCidr, formatCidrItem, type CidrItem, type WeaveCidrResult } from './weave-cidr'
export { decideAttach, weaveCidrFromEnv, type AttachDecision } from './qualify'
export { WEAVEWAIT_ENTRYPOINT, WEAVEWAIT_MOUNT } from './create-rewrite'
export { weaveContainerFromInspect, inspectWeaveContainer, type ContainerJson } from './container-info'
export { installWeavewait, weavewaitBuildPath } from './weavewait-install'
export { parseDockerHost, DEFAULT_DOCKER_HOST, DEFAULT_PROXY_TCP_PORT, type DockerHostResult } from './docker-host'
