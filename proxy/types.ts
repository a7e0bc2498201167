/** The proxy's configuration, the hooks the daemon fills, and its handle. Re-exported by index.ts. */
import type { Clock, Logger } from '../router/deps'
import type { DockerEndpoint } from './engine-client'
import type { ContainerEvent } from './events'
import type { CidrItem } from './weave-cidr'

export interface ProxyConfig {
  /** Unix socket the proxy listens on (e.g. /run/weave/weave.sock); a stale socket file is replaced. */
  socketPath: string
  /** Also listen on TCP (`--proxy-listen tcp://…`); loopback unless the caller says otherwise. */
  tcp?: { host: string; port: number }
  /** Serve the TCP listener over TLS (`--tls`/`--tlsverify`); the unix sockets stay plain. */
  tls?: ProxyTls
  /** The real Docker engine. */
  docker: DockerEndpoint
  /** File whose owner and mode the unix socket copies; default: the Docker socket (when it is one). */
  socketModeFrom?: string
  /** Host directory holding the weavewait program as `w`; bound read-only at /w in containers. */
  weavewaitDir: string
  /** Containers without WEAVE_CIDR get a default-subnet address (false = `--no-default-ipalloc`). */
  defaultIpalloc: boolean
  /** Show the weave address in `docker inspect` (`--rewrite-inspect`; needs hooks.inspectAddress). */
  rewriteInspect?: boolean
  /** Longest wait for `onStarted` before the start is failed; default 60 s (IPAM may await consensus). */
  attachTimeoutMs?: number
  /** Every call the proxy itself makes to the engine ends by then (default 30 s): a hung dockerd
   *  gets a 504 to the client, not a hung proxy. */
  engineTimeoutMs?: number
}

/** The TCP listener's TLS material (PEM), as `--tlscert`, `--tlskey`, `--tlscacert` name it. */
export interface ProxyTls {
  cert: Buffer
  key: Buffer
  /** CA that signs client certificates (needed with verifyClients). */
  ca?: Buffer
  /** `--tlsverify`: refuse clients without a certificate signed by `ca`. */
  verifyClients: boolean
}

/** A container's first weave address, for `--rewrite-inspect`. */
export interface WeaveAddress { ip: string; prefixLen: number; mac?: string }

/** A container Docker has just started that should get `ethwe`. */
export interface StartedContainer {
  /** Full container ID. */
  id: string
  /** Name without the leading slash. */
  name: string
  /** PID of the container's first process: its network namespace is /proc/PID/ns/net. */
  pid: number
  /** Addresses asked for by WEAVE_CIDR (at least one). */
  items: CidrItem[]
  hostname: string
}

/** What the proxy tells `onCreate` about a container it is about to create. */
export interface CreateContext {
  /** The `?name=` of the create call, if any. */
  name?: string
  items: CidrItem[]
}

/**
 * The daemon's side of the proxy: IPAM and attaching live behind these, so the proxy knows
 * nothing of either. Every hook is optional; a proxy without `onStarted` creates weave
 * containers but never attaches them (their weavewait then times out with its message).
 */
export interface ProxyHooks {
  /** Adjust a create body after the weave rewrite (e.g. DNS settings); may not remove /w/w. */
  onCreate?(body: Record<string, unknown>, ctx: CreateContext): Record<string, unknown> | Promise<Record<string, unknown>>
  /**
   * Attach `ethwe` with addresses for `c.items` before the start response is returned.
   * A rejection (its message is shown to the user) makes the proxy kill the container and
   * fail the start with HTTP 500.
   */
  onStarted?: (c: StartedContainer) => Promise<void>
  /**
   * Container events from the engine (die/destroy → release; start → attach if not done, e.g.
   * after a restart-policy restart: `inspectWeaveContainer` says whether and with what).
   * A start through the proxy also arrives here, after or while `onStarted` runs, so attaching
   * must be idempotent per container and pid.
   */
  onEvent?: (e: ContainerEvent) => void
  /**
   * With `rewriteInspect`: the weave address to show in `docker inspect` as
   * NetworkSettings.IPAddress/IPPrefixLen/MacAddress, or undefined to leave the answer alone.
   */
  inspectAddress?: (containerId: string) => WeaveAddress | undefined | Promise<WeaveAddress | undefined>
}

export interface ProxyDeps {
  clock: Clock
  logger: Logger
  hooks: ProxyHooks
}

export interface Proxy {
  /** Listen (unix socket, then TCP) and follow the events stream when `onEvent` is set. */
  start(): Promise<void>
  /** Close listeners and every open connection; resolves when all are closed. */
  stop(): Promise<void>
  /** `unix:///…` and `tcp://host:port` addresses being served (after start). */
  addresses(): string[]
  /** Client and engine connections currently open (for status; 0 when idle). */
  openConnections(): number
}
