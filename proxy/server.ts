/**
 * The Docker API proxy: listens like a Docker engine and forwards to the real one.
 *
 * Small framed calls (routes.ts keepAliveSafe: `HEAD /_ping`, version, lists, inspects) keep the
 * client's connection and the proxy's engine connection open: the answer is read whole by its
 * framing and the next request head is read after it, so the docker client's ping + call costs
 * one connection each way. Any other request is the last on its connection: the proxy forwards
 * it on a fresh engine connection with `Connection: close` added, and from then on copies bytes
 * both ways, relaying half-closes. Nothing of such a body is parsed, so chunked streams (logs -f,
 * events, stats), 101 upgrades and Docker's classic raw-stream hijack all pass unchanged, in any
 * API version. Only create (rewritten) and start/restart (held until `ethwe` is attached) are read.
 *
 * This file is the wiring: connections are routed in routing.ts, bytes moved in streams.ts, the
 * intercepted calls are create-intercept.ts, start-attach.ts and inspect-rewrite.ts.
 */
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import { requestLatency } from '../router/metrics'
import { listenerPolicy } from '../router/api'
import type { ProxyContext } from './context'
import { createEngineClient, describeEndpoint } from './engine-client'
import { watchContainerEvents, type EventWatcher } from './events'
import { addressOf, copyOwnerAndMode, listen, removeStaleSocket } from './listeners'
import { onConnection } from './routing'
import { createTlsServer } from './tls-listener'
import type { Proxy, ProxyConfig, ProxyDeps } from './types'

export function createProxy(config: ProxyConfig, deps: ProxyDeps): Proxy {
  const log = deps.logger
  const sockets = new Set<net.Socket>()
  const servers: net.Server[] = []
  let watcher: EventWatcher | undefined
  let unixListening = false

  const track = (s: net.Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    return s
  }
  const upstreamTarget: net.NetConnectOpts = 'socketPath' in config.docker
    ? { path: config.docker.socketPath, allowHalfOpen: true }
    : { host: config.docker.host, port: config.docker.port, allowHalfOpen: true }

  const ctx: ProxyContext = {
    config,
    deps,
    log,
    engine: createEngineClient(config.docker, { timeoutMs: config.engineTimeoutMs }),
    latency: requestLatency('proxy'),
    connectUpstream: () => track(net.connect(upstreamTarget).setNoDelay(true)),
    fromTcp: new WeakSet<net.Socket>(),
    tcpPolicy: undefined,
    refusals: 0,
  }

  const newServer = (viaTcp = false) => {
    const s = viaTcp && config.tls
      ? createTlsServer(config.tls, (c) => onConnection(ctx, track(c), true), (err) => log.warn(`proxy TLS: ${err.message}`))
      : net.createServer({ allowHalfOpen: true }, (c) => onConnection(ctx, track(c), viaTcp))
    servers.push(s)
    return s
  }

  return {
    async start() {
      removeStaleSocket(config.socketPath)
      await listen(newServer(), { path: config.socketPath })
      unixListening = true
      copyOwnerAndMode(config, log)
      if (config.tcp) {
        const s = newServer(true)
        await listen(s, config.tcp)
        // The TCP listener is reachable from web pages: Host must name it (no DNS rebinding) and
        // no request may carry an Origin (Docker clients never send one; browsers send it on every
        // cross-origin write). Writes cannot demand a non-simple Content-Type here: the docker CLI
        // sends `text/plain` on body-less POSTs such as start. `docker` and `api.moby.localhost`
        // are the names Docker clients send on local sockets.
        ctx.tcpPolicy = listenerPolicy(config.tcp.host, (s.address() as net.AddressInfo).port,
          { writesNeedNonSimpleType: false, refuseAnyOrigin: true, extraHosts: ['docker', 'api.moby.localhost', os.hostname()] })
      }
      if (deps.hooks.onEvent) watcher = watchContainerEvents(ctx.engine, deps.hooks.onEvent, { clock: deps.clock, logger: log })
      log.info(`Docker API proxy on ${this.addresses().join(', ')} → ${describeEndpoint(config.docker)}`)
    },
    async stop() {
      watcher?.stop()
      const closed = servers.map((s) => new Promise<void>((resolve) => s.listening ? s.close(() => resolve()) : resolve()))
      for (const s of sockets) s.destroy()
      await Promise.all(closed)
      servers.length = 0
      if (unixListening) { try { fs.unlinkSync(config.socketPath) } catch { /* already gone */ } unixListening = false }
    },
    openConnections: () => sockets.size,
    addresses() {
      return servers.filter((s) => s.listening).map(addressOf)
    },
  }
}
