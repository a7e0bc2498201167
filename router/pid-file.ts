/**
 * The daemon's pid file: claimed atomically (O_EXCL) so two launches racing on one run dir
 * cannot both start; a file left by a killed daemon (its pid no longer alive) is taken over.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

export function pidFilePath(runDir: string): string {
  return path.join(runDir, 'weaver.pid')
}

/** The pid in `file` if that process is alive, else undefined. */
export function runningPid(file: string): number | undefined {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
  const pid = Number(text.trim())
  if (!Number.isInteger(pid) || pid <= 0) return undefined
  return isAlive(pid) ? pid : undefined
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
  // A killed daemon whose parent has not reaped it yet is a zombie: signal 0 still succeeds,
  // but it holds nothing and must not block the next launch.
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return true
  }
}

export function claimPidFile(file: string, pid: number): { ok: true } | { ok: false; runningPid: number } {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, `${pid}\n`, { flag: 'wx' })
      return { ok: true }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const other = runningPid(file)
      if (other !== undefined && other !== pid) return { ok: false, runningPid: other }
      fs.rmSync(file, { force: true }) // stale: its daemon is gone
    }
  }
  throw new Error(`cannot claim pid file ${file}`)
}

/** The supervisor's pid file (router/supervisor.ts), next to the daemon's. */
export function supervisorPidFile(runDir: string): string {
  return path.join(runDir, 'supervisor.pid')
}

/** The supervisor's pid when one runs for `runDir`. */
export function runningSupervisor(runDir: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(supervisorPidFile(runDir), 'utf8').trim())
    return Number.isInteger(pid) && pid > 0 && isAlive(pid) ? pid : undefined
  } catch {
    return undefined
  }
}
