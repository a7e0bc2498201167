/**
 * The live feed behind /ui: a WebSocket endpoint (`/ui/ws` on the API's own server) that sends
 * each page a snapshot of the topology model, then deltas. While a page is open the model is
 * rebuilt every `intervalMs` (1 s: well inside the 2 s the page promises) and at once when the
 * mesh says its peers changed; nothing is sent when nothing changed, and with no page open
 * nothing runs at all.
 *
 * A web page of another origin must not read the mesh: the hub is registered as an API upgrade
 * route (ApiRouter.upgrade), so the API's guard (router/api/local-guard) has refused foreign
 * Host and Origin headers before `handleUpgrade` runs.
 */
import type * as http from 'node:http'
import type { Duplex } from 'node:stream'
import type { WebSocket, WebSocketServer } from 'ws'
import type { Clock, Logger } from '../deps'
import { buildTopology, diffTopology, snapshotMessage, type Topology, type TopologyInput } from './topology-model'

export const UI_WS_PATH = '/ui/ws'
/** More pages than this at once is a leak or an attack, not a user. */
const MAX_CLIENTS = 32
/** A page that stops reading is dropped rather than buffered without bound. */
const MAX_BUFFERED_BYTES = 4 << 20

export interface TopologyHubSources {
  /** Everything but the rates, read when the model is rebuilt. */
  read(): Omit<TopologyInput, 'rates'>
  /** Total bytes (both ways, all data paths) exchanged with each neighbour so far. */
  trafficBytes(): ReadonlyMap<string, number>
  /** The mesh's change notification (coalesced by the mesh); returns an unsubscribe. */
  onChange?(fn: () => void): () => void
}

export interface TopologyHub {
  /** Take an HTTP upgrade for UI_WS_PATH (the API server hands every upgrade here). */
  handleUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void
  /** Pages connected now. */
  clients(): number
  stop(): Promise<void>
}

export function createTopologyHub(
  sources: TopologyHubSources,
  deps: { clock: Clock; logger: Logger; intervalMs?: number },
): TopologyHub {
  const intervalMs = deps.intervalMs ?? 1_000
  // `ws` is loaded when the first page connects: a router nobody looks at never needs it (issue 18).
  let wss: WebSocketServer | undefined
  const server = (): WebSocketServer => {
    if (wss) return wss
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on first use, synchronously (an upgrade cannot wait)
    const ws = require('ws') as typeof import('ws')
    wss = new ws.WebSocketServer({ noServer: true, maxPayload: 4096, perMessageDeflate: false })
    return wss
  }
  const clients = new Set<WebSocket>()
  let model: Topology | undefined
  let lastBytes = new Map<string, number>()
  let lastAt = 0
  let cancelTimer: (() => void) | undefined
  let unsubscribe: (() => void) | undefined
  let soon: (() => void) | undefined
  let stopped = false

  function rebuild(): Topology {
    const now = deps.clock.now()
    const bytes = sources.trafficBytes()
    const dt = (now - lastAt) / 1000
    const rates = new Map<string, number>()
    if (lastAt && dt > 0) for (const [peer, b] of bytes) rates.set(peer, Math.max(0, (b - (lastBytes.get(peer) ?? b)) / dt))
    lastBytes = new Map(bytes)
    lastAt = now
    return buildTopology({ ...sources.read(), rates })
  }

  function send(ws: WebSocket, text: string): void {
    if (ws.bufferedAmount > MAX_BUFFERED_BYTES) { ws.terminate(); return }
    ws.send(text)
  }

  function tick(): void {
    if (stopped || !clients.size) return
    const next = rebuild()
    const delta = model && diffTopology(model, next)
    model = next
    if (delta) {
      const text = JSON.stringify(delta)
      for (const ws of clients) send(ws, text)
    }
  }

  function schedule(): void {
    cancelTimer?.()
    cancelTimer = deps.clock.setTimer(intervalMs, () => {
      cancelTimer = undefined
      tick()
      if (clients.size && !stopped) schedule()
    })
  }

  function onMeshChange(): void {
    // Coalesce a burst of changes into one rebuild shortly after.
    if (soon || !clients.size) return
    soon = deps.clock.setTimer(50, () => {
      soon = undefined
      tick()
    })
  }

  function join(ws: WebSocket): void {
    clients.add(ws)
    if (clients.size === 1) {
      model = undefined
      lastAt = 0
      unsubscribe = sources.onChange?.(onMeshChange)
      schedule()
    }
    model ??= rebuild()
    send(ws, JSON.stringify(snapshotMessage(model)))
    ws.on('message', () => { /* the page sends nothing; ignore what it does */ })
    ws.on('error', (err) => deps.logger.debug(`ui client: ${err.message}`))
    ws.on('close', () => {
      clients.delete(ws)
      if (clients.size) return
      cancelTimer?.(); cancelTimer = undefined
      soon?.(); soon = undefined
      unsubscribe?.(); unsubscribe = undefined
    })
  }

  return {
    handleUpgrade(req, socket, head) {
      const refused = stopped ? { status: 503, text: 'stopping' }
        : clients.size >= MAX_CLIENTS ? { status: 503, text: 'too many pages open' } : undefined
      if (refused) {
        socket.end(`HTTP/1.1 ${refused.status} ${refused.text.replace(/[\r\n]/g, ' ')}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
        return
      }
      server().handleUpgrade(req, socket, head, (ws) => join(ws))
    },
    clients: () => clients.size,
    async stop() {
      stopped = true
      cancelTimer?.(); soon?.(); unsubscribe?.()
      for (const ws of clients) ws.terminate()
      clients.clear()
      if (wss) await new Promise<void>((resolve) => wss!.close(() => resolve()))
    },
  }
}
