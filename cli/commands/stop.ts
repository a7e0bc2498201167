import * as fs from 'node:fs'
import { isAlive, pidFilePath, runningPid } from '../../router'
import { positionalOnly, type Command } from '../context'

/** A daemon gets this long to close its sockets and flush state before SIGKILL. */
const STOP_TIMEOUT_MS = 15_000

export const command: Command = {
  name: 'stop',
  summary: 'stop the weave router on this host',
  usage: 'Usage: weave stop\n\nStops the weave router (SIGTERM, then SIGKILL after 15 s). Its state is kept.\n',
  async run(args, ctx) {
    const extra = positionalOnly(args, 'stop')
    if (extra.length) throw new Error(`weave stop takes no arguments`)
    const file = pidFilePath(ctx.runDir)
    const pid = runningPid(file)
    if (pid === undefined) {
      ctx.err('weave router is not running')
      return 0
    }
    process.kill(pid, 'SIGTERM')
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
