/**
 * The daemon's control API: an HTTP router that components register routes on, the status and
 * report model behind `weave status` / `weave report`, and the socket edge.
 *
 * How a component plugs in (from router/weaver.ts):
 *   api.router.route('GET', '/status/peers', () => ({ text: mesh.statusPeers() }))
 *   api.status.addSection('router', { order: 10, lines: () => mesh.statusLines() })
 *   api.status.addReport('Router', () => mesh.report())
 */
export { ApiRouter, ApiError } from './router'
export type { ApiRequest, ApiResult, ApiHandler } from './router'
export { StatusModel, formatBlocks } from './status'
export type { StatusLines, StatusSection } from './status'
export { createApiServer } from './server'
export type { ApiListen, ApiServer } from './server'
