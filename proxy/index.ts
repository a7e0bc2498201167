/**
 * The Docker API proxy (public door). The daemon creates it with `createProxy(config, deps)`,
 * fills `deps.hooks` with its IPAM and attach logic, and calls `start()`/`stop()`.
 *
 *   const docker = parseDockerHost(flags.dockerApi ?? env.DOCKER_HOST ?? DEFAULT_DOCKER_HOST)
 *   const proxy = createProxy(
 *     { socketPath: `${runDir}/weave.sock`, docker: docker.endpoint,
 *       weavewaitDir: installWeavewait(`${runDir}/weavewait`), defaultIpalloc: !flags.noDefaultIpalloc },
 *     { clock, logger, hooks: {
 *         onStarted: (c) => attachEthwe(c),      // IPAM allocate/claim for c.items, router/net attach into c.pid
 *         onEvent: (e) => onContainerEvent(e),   // die → release after grace, destroy → release, start → attach
 *     } })
 *   await proxy.start()
 *
 * For containers the proxy did not start (restart policies, containers running at launch),
 * `inspectWeaveContainer(createEngineClient(endpoint), id, defaultIpalloc)` says whether and
 * with which addresses to attach.
 */
export { createProxy } from './server'
export type { Proxy, ProxyConfig, ProxyDeps, ProxyHooks, StartedContainer, CreateContext, WeaveAddress, ProxyTls } from './types'
export type { DockerEndpoint } from './engine-client'
export { createEngineClient, describeEndpoint, type EngineClient } from './engine-client'
export type { ContainerEvent, EventWatcher } from './events'
export { watchContainerEvents } from './events'
export { parseWeaveCidr, formatCidrItem, type CidrItem, type WeaveCidrResult } from './weave-cidr'
export { decideAttach, weaveCidrFromEnv, networkModeSkipReason, type AttachDecision } from './qualify'
export { WEAVEWAIT_ENTRYPOINT, WEAVEWAIT_MOUNT } from './create-rewrite'
export { weaveContainerFromInspect, inspectWeaveContainer, type ContainerJson } from './container-info'
export { installWeavewait, weavewaitBuildPath } from './weavewait-install'
export { parseDockerHost, DEFAULT_DOCKER_HOST, DEFAULT_PROXY_TCP_PORT, type DockerHostResult } from './docker-host'
