import * as fs from 'node:fs'
import { isAlive, pidFilePath, runningPid, runningSupervisor, supervisorPidFile } from '../../router'
import { positionalOnly, type Command } from '../context'

/** A daemon gets this long to close its sockets and flush state before SIGKILL. */
const STOP_TIMEOUT_MS = 15_000

export const command: Command = {
  name: 'stop',
  usage: 'Usage: weave stop\n\nStops the weave router and its supervisor, so it is not restarted (SIGTERM, then SIGKILL after 15 s).\nIts state is kept.\n',
  async run(args, ctx) {
    const extra = positionalOnly(args, 'stop')
    if (extra.length) throw new Error(`weave stop takes no arguments`)
    const file = pidFilePath(ctx.runDir)
    const pid = runningPid(file)
    // The supervisor first, so it does not start the router again; it stops the router too.
    const sup = runningSupervisor(ctx.runDir)
    if (sup !== undefined) {
      process.kill(sup, 'SIGTERM')
      const deadline = Date.now() + STOP_TIMEOUT_MS
      while (isAlive(sup) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      if (isAlive(sup)) process.kill(sup, 'SIGKILL')
      fs.rmSync(supervisorPidFile(ctx.runDir), { force: true })
    }
    if (pid === undefined || !isAlive(pid)) {
      if (sup === undefined) ctx.err('weave router is not running')
      fs.rmSync(file, { force: true })
      return 0
    }
    try { process.kill(pid, 'SIGTERM') } catch { /* it ended meanwhile */ }
    const deadline = Date.now() + STOP_TIMEOUT_MS
    while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    if (isAlive(pid)) {
      ctx.err(`weave router (pid ${pid}) did not stop within ${STOP_TIMEOUT_MS / 1000} s; killing it`)
      process.kill(pid, 'SIGKILL')
      while (isAlive(pid)) await new Promise((r) => setTimeout(r, 50))
    }
    fs.rmSync(file, { force: true })
    return 0
  },
}
