/**
 * `weave launch`'s supervisor (`node dist/router/supervisor.js [launch args]`): Weave ran its
 * router with Docker's restart policy `always`; here this small process runs the daemon
 * (router/main.ts) and starts it again when it dies, until `weave stop` (SIGTERM to this process,
 * whose pid is in `${runDir}/supervisor.pid`). `weave launch --no-restart` runs the daemon without it.
 *
 * A first start that fails before the daemon is ready (bad state, port taken) is not retried:
 * the supervisor exits with the daemon's code, so `weave launch` reports it. Later deaths are
 * retried with backoff (1 s doubling to 30 s, back to 1 s after a run that got ready), and the
 * daemon is told (WEAVE_SUPERVISED_RESTART) to resume its stored peer targets.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { ROUTER_NODE_FLAGS } from './node-flags'
import { supervisorPidFile } from './pid-file'

const FIRST_BACKOFF_MS = 1000
const MAX_BACKOFF_MS = 30_000

function runDirOf(args: string[]): string {
  const i = args.indexOf('--run-dir')
  return i >= 0 && args[i + 1] ? args[i + 1] : '/run/weave'
}

function main(): void {
  const args = process.argv.slice(2)
  const runDir = runDirOf(args)
  fs.mkdirSync(runDir, { recursive: true })
  fs.writeFileSync(supervisorPidFile(runDir), `${process.pid}\n`)
  const entry = path.join(__dirname, 'main.js')
  const say = (msg: string) => process.stderr.write(`${new Date().toISOString()} INFO [supervisor] ${msg}\n`)
  let child: ChildProcess | undefined
  let stopping = false
  let backoff = FIRST_BACKOFF_MS
  let runs = 0

  const finish = (code: number) => {
    try { if (fs.readFileSync(supervisorPidFile(runDir), 'utf8').trim() === String(process.pid)) fs.rmSync(supervisorPidFile(runDir)) } catch { /* gone */ }
    process.exit(code)
  }

  const start = () => {
    runs++
    let ready = false
    const env = runs > 1 ? { ...process.env, WEAVE_SUPERVISED_RESTART: '1' } : process.env
    const c = spawn(process.execPath, [...ROUTER_NODE_FLAGS, entry, ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env })
    child = c
    c.on('message', (m) => {
      if (m === 'ready') { ready = true; backoff = FIRST_BACKOFF_MS }
    })
    c.on('exit', (code, signal) => {
      child = undefined
      if (stopping) return finish(0)
      const how = signal ? `signal ${signal}` : `code ${code}`
      if (runs === 1 && !ready) {
        say(`the weave router exited (${how}) before it was ready; not restarting it`)
        return finish(code ?? 1)
      }
      say(`the weave router exited (${how}); restarting it in ${backoff / 1000} s`)
      setTimeout(() => {
        if (stopping) return
        // Our pid file gone (weave reset, the run dir removed) or taken over by a new launch: step down.
        let mine = false
        try { mine = fs.readFileSync(supervisorPidFile(runDir), 'utf8').trim() === String(process.pid) } catch { /* gone */ }
        if (!mine) { say('no longer in charge of this run dir; not restarting the router'); return finish(0) }
        start()
      }, backoff)
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS)
    })
  }

  const stop = () => {
    if (stopping) return
    stopping = true
    if (!child) return finish(0)
    child.kill('SIGTERM')
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  start()
}

if (require.main === module) main()
