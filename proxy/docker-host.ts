/**
 * Docker host addresses as users write them (pure): `unix:///var/run/docker.sock`,
 * `tcp://127.0.0.1:2375`, `tcp://:12375`. Used for the upstream (`--docker-api`, DOCKER_HOST)
 * and for `--proxy-listen`.
 */
import type { DockerEndpoint } from './engine-client'

export type DockerHostResult = { ok: true; endpoint: DockerEndpoint } | { ok: false; error: string }

/** The engine's usual socket, when neither --docker-api nor DOCKER_HOST says otherwise. */
export const DEFAULT_DOCKER_HOST = 'unix:///var/run/docker.sock'
/** Weave's TCP proxy port. */
export const DEFAULT_PROXY_TCP_PORT = 12375

/**
 * Parse a docker host address. A TCP address without a host gets `defaultTcpHost` (loopback
 * by default: a proxy never listens on every address unless told to); without a port, `defaultPort`.
 */
export function parseDockerHost(text: string, opts: { defaultTcpHost?: string; defaultPort?: number } = {}): DockerHostResult {
  const bad = (why: string): DockerHostResult => ({ ok: false, error: `invalid docker host ${JSON.stringify(text)}: ${why}` })
  if (text.startsWith('unix://')) {
    const p = text.slice('unix://'.length)
    return p.startsWith('/') ? { ok: true, endpoint: { socketPath: p } } : bad('a unix socket needs an absolute path, like unix:///var/run/docker.sock')
  }
  if (text.startsWith('tcp://')) {
    const rest = text.slice('tcp://'.length).replace(/\/+$/, '')
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:/[\]]*)(?::(\d{1,5}))?$/.exec(rest)
    if (!m) return bad('expected tcp://HOST:PORT')
    const host = m[1].replace(/^\[|\]$/g, '') || opts.defaultTcpHost || '127.0.0.1'
    const port = m[2] !== undefined ? Number(m[2]) : opts.defaultPort
    if (port === undefined) return bad('no port given')
    if (port < 1 || port > 65535) return bad(`port ${port} is out of range`)
    return { ok: true, endpoint: { host, port } }
  }
  if (text.startsWith('/')) return { ok: true, endpoint: { socketPath: text } }
  return bad('expected unix:///PATH or tcp://HOST:PORT')
}
