/**
 * The daemon's control API: an HTTP router that components register routes on, the status and
 * report model behind `weave status` / `weave report`, and the socket edge.
 *
 * How a component plugs in (from router/weaver.ts):
 *   api.router.route('GET', '/status/peers', () => ({ text: mesh.statusPeers() }))
 *   api.status.addSection('router', { order: 10, lines: () => mesh.statusLines() })
 *   api.status.addReport('Router', () => mesh.report())
 *   api.router.upgrade('/ui/ws', (req, socket, head) => wss.handleUpgrade(req, socket, head, ...))
 *
 * Every request on the TCP listener, upgrades included, first passes the Host/Origin/Content-Type
 * check of local-guard.ts (server.ts does it before routing), so a route needs nothing of its own
 * to be safe from web pages. The unix socket is not reachable from a browser and is not checked.
 */
export { ApiRouter, ApiError } from './router'
export type { ApiRequest, ApiResult, ApiHandler, UpgradeHandler } from './router'
export { refuseForeign, listenerPolicy } from './local-guard'
export type { LocalPolicy, GuardHeaders } from './local-guard'
export { StatusModel, formatBlocks } from './status'
export type { StatusLines, StatusSection } from './status'
export { createApiServer } from './server'
export type { ApiListen, ApiServer } from './server'
