import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { ConfigError, isAlive, ROUTER_NODE_FLAGS, launchHelp, parseDaemonArgs, pidFilePath, runningPid, runningSupervisor } from '../../router'
import { callApi, CliFailure, type Command } from '../context'

/** How long `weave launch` waits for the daemon's API before giving up. */
const READY_TIMEOUT_MS = 60_000

export const command: Command = {
  name: 'launch',
  usage: launchHelp(),
  async run(args, ctx) {
    // The CLI's global --state-dir/--run-dir become the daemon's, so both agree on the paths.
    const daemonArgs = ['--state-dir', ctx.stateDir, '--run-dir', ctx.runDir, ...args]
    let config
    try {
      config = parseDaemonArgs(daemonArgs, ctx.env, { dockerSocketExists: (p) => fs.existsSync(p) })
    } catch (err) {
      if (err instanceof ConfigError) throw new CliFailure(err.message, 2)
      throw err
    }
    fs.mkdirSync(config.runDir, { recursive: true })
    const running = runningPid(pidFilePath(config.runDir))
    if (running !== undefined) throw new CliFailure(`the weave router is already running (pid ${running}); stop it first with: weave stop`)
    // A supervisor without a router is between restarts of a dead one: this launch takes over.
    const supervisor = runningSupervisor(config.runDir)
    if (supervisor !== undefined) {
      process.kill(supervisor, 'SIGTERM')
      const until = Date.now() + 5000
      while (isAlive(supervisor) && Date.now() < until) await new Promise((r) => setTimeout(r, 50))
      const again = runningPid(pidFilePath(config.runDir))
      if (again !== undefined) throw new CliFailure(`the weave router is already running (pid ${again}); stop it first with: weave stop`)
    }
    await checkSavedRange(config.stateDir, config.ipallocRange)

    const logFile = path.join(config.runDir, 'weaver.log')
    const log = fs.openSync(logFile, 'a')
    // The supervisor restarts the daemon when it dies (Weave: restart policy always); --no-restart runs it alone.
    const entry = path.join(__dirname, '..', '..', 'router', config.noRestart ? 'main.js' : 'supervisor.js')
    const child = spawn(process.execPath, [...ROUTER_NODE_FLAGS, entry, ...daemonArgs], {
      detached: true,
      stdio: ['ignore', log, log],
      env: ctx.env,
    })
    fs.closeSync(log)
    let exited: number | null | undefined
    child.on('exit', (code) => (exited = code))
    child.unref()

    const socket = path.join(config.runDir, 'api.sock')
    const deadline = Date.now() + READY_TIMEOUT_MS
    while (Date.now() < deadline) {
      if (exited !== undefined) {
        throw new CliFailure(`the weave router exited (code ${exited}) while starting; its log (${logFile}) ends:\n${tail(logFile, 15)}`)
      }
      try {
        const a = await callApi(socket, 'GET', '/report', undefined, 2000)
        if (a.status === 200) {
          const report = JSON.parse(a.body) as { Daemon?: { PeerName?: string; Pid?: number } }
          // Another daemon on the same socket would be a bug in the pid-file guard; check it.
          if (report.Daemon?.Pid !== undefined && (report.Daemon.Pid === child.pid || parentOf(report.Daemon.Pid) === child.pid)) {
            ctx.out(report.Daemon?.PeerName ?? '')
            return 0
          }
        }
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100))
    }
    throw new CliFailure(`the weave router did not answer within ${READY_TIMEOUT_MS / 1000} s; see ${logFile}`)
  },
}

/**
 * The daemon refuses IPAM state saved for another range (its addresses and ring would be
 * meaningless); say so here, with what to do, instead of letting it exit with a log line.
 */
async function checkSavedRange(stateDir: string, range: string): Promise<void> {
  // Loaded here, not at the top: every weave command imports this file, and IPAM is not light.
  const { IPAM_STATE_FILE, formatCidr, parseCidr, savedRange } = await import('../../ipam')
  const stateFile = path.join(stateDir, IPAM_STATE_FILE)
  const saved = savedRange(stateFile)
  const given = parseCidr(range)
  if (saved === undefined || range === '' || (given && formatCidr(given) === saved)) return
  throw new CliFailure(
    `this host's saved IP allocation state (${stateFile}) is for range ${saved}, but --ipalloc-range is ${range}.\n` +
      `Either launch again with --ipalloc-range ${saved} (keeping this host's addresses and ring),\n` +
      `or run 'weave reset' first to discard that state (this host's containers lose their weave addresses) and launch with ${range}.`,
  )
}

/** The parent pid of `pid` (from /proc), or undefined. */
function parentOf(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
  } catch {
    return undefined
  }
}

function tail(file: string, lines: number): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}
