/**
 * While the router is stopped, Docker still calls the plugin for every `--net=weave` container,
 * and with nothing on the socket it retries for about 15 s before failing with a bare "connection
 * refused". So `weave stop` leaves this small responder on the socket: it answers Plugin.Activate
 * as the plugin would and every other call with an error that names the cause, and exits as soon
 * as the socket file is no longer its own (the next `weave launch` replaced it, or `weave reset`
 * removed it). A router that is killed (SIGKILL) leaves no responder: then Docker's retries apply.
 */
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import type { Logger } from '../router/deps'
import { createPluginServer } from './server'
import { IMPLEMENTS, PluginError, type Handler } from './protocol'

export const ROUTER_DOWN = 'the weave router is not running on this host (weave stop); start it with `weave launch`'

/** How often the responder checks that the socket file is still its own. */
const CHECK_MS = 500

/** Routes of the responder: Activate answers, everything weave serves says the router is down. */
export function downRoutes(names: Iterable<string>): Map<string, Handler> {
  const routes = new Map<string, Handler>()
  for (const n of names) {
    routes.set(n, () => { throw new PluginError(503, ROUTER_DOWN) })
  }
  routes.set('Plugin.Activate', () => ({ Implements: [...IMPLEMENTS] }))
  return routes
}

/** Start the responder as a detached process (it outlives the daemon); resolves once it listens. */
export async function spawnDownResponder(socketPath: string, names: Iterable<string>, logger: Logger): Promise<void> {
  const main = path.join(__dirname, 'down-main.js')
  if (!fs.existsSync(main)) return
  const child = spawn(process.execPath, [main, socketPath, ...names], { detached: true, stdio: ['ignore', 'ignore', 'ignore', 'ipc'] })
  await new Promise<void>((resolve) => {
    const done = () => { clearTimeout(t); child.removeAllListeners(); child.disconnect?.(); child.unref(); resolve() }
    const t = setTimeout(done, 3000)
    child.once('message', done)
    child.once('exit', done)
    child.once('error', (err) => { logger.warn(`router-down responder: ${err.message}`); done() })
  })
  logger.info(`router-down responder (pid ${child.pid}) answers on ${socketPath} until the next launch`)
}

/** The responder process itself (down-main.ts): serve, then exit once the socket is replaced. */
export async function runDownResponder(socketPath: string, names: string[], logger: Logger): Promise<void> {
  const server = createPluginServer(socketPath, downRoutes(names), logger, { closeEach: true })
  await server.start()
  const ino = fs.statSync(socketPath).ino
  const timer = setInterval(() => {
    let mine = false
    try { mine = fs.statSync(socketPath).ino === ino } catch { /* gone */ }
    if (!mine) {
      clearInterval(timer)
      // Not server.stop(): that would unlink the socket, which is the new daemon's now.
      process.exit(0)
    }
  }, CHECK_MS)
}
