/** The proxy's listeners: a unix socket like Docker's (stale file replaced, owner and mode copied), and TCP. */
import * as fs from 'node:fs'
import type * as net from 'node:net'
import type { Logger } from '../router/deps'
import type { ProxyConfig } from './types'

export function listen(server: net.Server, how: { path: string } | { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(how, () => { server.off('error', reject); resolve() })
  })
}

/** Remove a socket file left by an earlier run; anything else at `path` is refused, not replaced. */
export function removeStaleSocket(path: string): void {
  let st: fs.Stats
  try { st = fs.lstatSync(path) } catch { return }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket; refusing to replace it`)
  fs.unlinkSync(path)
}

/** Give our socket the Docker socket's owner and mode, so the same users may use it. */
export function copyOwnerAndMode(config: ProxyConfig, log: Logger): void {
  const from = config.socketModeFrom ?? ('socketPath' in config.docker ? config.docker.socketPath : undefined)
  if (!from) return
  try {
    const st = fs.statSync(from)
    fs.chownSync(config.socketPath, st.uid, st.gid)
    fs.chmodSync(config.socketPath, st.mode & 0o777)
  } catch (err) {
    log.warn(`cannot copy owner and mode of ${from} to ${config.socketPath}: ${(err as Error).message}`)
  }
}

/** `unix:///…` or `tcp://host:port` for a listening server. */
export function addressOf(server: net.Server): string {
  const a = server.address()
  return typeof a === 'string' ? `unix://${a}` : a ? `tcp://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}` : ''
}
