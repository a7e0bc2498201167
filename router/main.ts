/**
 * The daemon's process entry (`node dist/router/main.js [launch args]`), started detached by
 * `weave launch`. Owns the process-level edges: the pid file, signals, logging to stderr (which
 * the launcher points at the log file), and the exit code.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { ConfigError, parseDaemonArgs } from './config'
import { createWeaver } from './weaver'
import { createLogger, cryptoRng, systemClock } from './deps'
import { claimPidFile, pidFilePath } from './pid-file'

async function main(): Promise<void> {
  let config
  try {
    config = parseDaemonArgs(process.argv.slice(2), process.env, {
      dockerSocketExists: (p) => fs.existsSync(p),
    })
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`weaver: ${err.message}\n`)
      process.exit(2)
    }
    throw err
  }
  const logger = createLogger({ write: (l) => process.stderr.write(l) }, { level: config.logLevel })
  fs.mkdirSync(config.runDir, { recursive: true })
  const pidFile = pidFilePath(config.runDir)
  const claim = claimPidFile(pidFile, process.pid)
  if (!claim.ok) {
    logger.error(`the weave router is already running (pid ${claim.runningPid})`)
    process.exit(3)
  }
  const weaver = createWeaver(config, { clock: systemClock(), rng: cryptoRng(), logger })
  let stopping = false
  const shutdown = (why: string, code: number) => {
    if (stopping) return
    stopping = true
    logger.info(`shutting down (${why})`)
    // A stuck component must not keep a stopped daemon alive forever.
    const hard = setTimeout(() => process.exit(code || 1), 10_000)
    hard.unref()
    weaver
      .stop()
      .catch((err: Error) => logger.error(`stop failed: ${err.message}`))
      .finally(() => {
        fs.rmSync(pidFile, { force: true })
        process.exit(code)
      })
  }
  process.on('SIGTERM', () => shutdown('SIGTERM', 0))
  process.on('SIGINT', () => shutdown('SIGINT', 0))
  process.on('uncaughtException', (err) => {
    logger.error(`uncaught exception: ${err.stack ?? err.message}`)
    shutdown('uncaught exception', 1)
  })
  try {
    await weaver.start()
  } catch (err) {
    logger.error(`cannot start: ${(err as Error).message}`)
    shutdown('start failed', 1)
    return
  }
  fs.writeFileSync(path.join(config.runDir, 'peer-name'), weaver.peerName + '\n')
  process.send?.('ready') // to the supervisor (router/supervisor.ts), when it started us
}

main().catch((err: Error) => {
  process.stderr.write(`weaver: ${err.stack ?? err.message}\n`)
  process.exit(1)
})
