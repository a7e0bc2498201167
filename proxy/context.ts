/**
 * What the proxy's parts share: its config and hooks, the engine client, the way to open a
 * tracked engine connection, and the TCP listener's policy. Built once by createProxy (server.ts).
 */
import type * as net from 'node:net'
import type { Logger } from '../router/deps'
import type { LocalPolicy } from '../router/api'
import type { LatencyRecorder } from '../router/metrics'
import type { EngineClient } from './engine-client'
import type { ProxyConfig, ProxyDeps } from './types'

export interface ProxyContext {
  readonly config: ProxyConfig
  readonly deps: ProxyDeps
  readonly log: Logger
  /** For the proxy's own calls (image config, inspect, kill, events). */
  readonly engine: EngineClient
  /** Request latencies of intercepted calls (metrics). */
  readonly latency: LatencyRecorder
  /** A new engine connection, closed by stop() with every other socket. */
  connectUpstream(): net.Socket
  /** Client connections that came through the TCP listener (the only ones a web page can reach). */
  readonly fromTcp: WeakSet<net.Socket>
  /**
   * The TCP listener's Host/Origin policy (routing.ts), set once the listener has its port (port 0
   * in tests).
   */
  tcpPolicy: LocalPolicy | undefined
  /** Requests refused by that policy so far (the log is thinned out). */
  refusals: number
}
