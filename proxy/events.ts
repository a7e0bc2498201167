/**
 * Follows the engine's container events (GET /events), so the daemon learns of deaths and
 * removals (to release leases) and of starts the proxy did not see (restart policies).
 */
import type { IncomingMessage } from 'node:http'
import type { Clock, Logger } from '../router/deps'
import type { EngineClient } from './engine-client'

export interface ContainerEvent {
  /** start, die, destroy, restart, kill, … as Docker names them. */
  action: string
  /** Full container ID. */
  id: string
  /** Seconds since the epoch, as the engine reports it. */
  time: number
  /** Container labels plus `name`, `image`, `exitCode`, … */
  attributes: Record<string, string>
}

/** Turn one line of the events stream into an event; undefined for other types or junk. */
export function parseEventLine(line: string): ContainerEvent | undefined {
  let e: Record<string, unknown>
  try { e = JSON.parse(line) as Record<string, unknown> } catch { return undefined }
  if (!e || typeof e !== 'object') return undefined
  const actor = (e.Actor ?? {}) as { ID?: unknown; Attributes?: unknown }
  const type = e.Type ?? 'container'
  const action = typeof e.Action === 'string' ? e.Action : e.status
  const id = typeof actor.ID === 'string' ? actor.ID : e.id
  if (type !== 'container' || typeof action !== 'string' || typeof id !== 'string') return undefined
  const attrs: Record<string, string> = {}
  if (actor.Attributes && typeof actor.Attributes === 'object') {
    for (const [k, v] of Object.entries(actor.Attributes)) if (typeof v === 'string') attrs[k] = v
  }
  return { action, id, time: typeof e.time === 'number' ? e.time : 0, attributes: attrs }
}

export interface EventWatcher { stop(): void }

const FIRST_RETRY_MS = 500 // the engine may just be restarting
const MAX_RETRY_MS = 30_000

/**
 * Stream container events to `onEvent` until stopped. After a broken stream it reconnects with
 * backoff (×2 up to 30 s) asking for events since the last one seen, so a short outage loses
 * nothing (a few events may be delivered twice; consumers must be idempotent).
 */
export function watchContainerEvents(engine: EngineClient, onEvent: (e: ContainerEvent) => void, deps: { clock: Clock; logger: Logger }): EventWatcher {
  let stopped = false
  let res: IncomingMessage | undefined
  let cancelTimer: (() => void) | undefined
  let retryMs = FIRST_RETRY_MS
  let since = 0

  const retry = (why: string) => {
    res = undefined
    if (stopped) return
    deps.logger.warn(`docker events stream ended (${why}); reconnecting in ${retryMs} ms`)
    cancelTimer = deps.clock.setTimer(retryMs, connect)
    retryMs = Math.min(retryMs * 2, MAX_RETRY_MS)
  }

  function connect() {
    if (stopped) return
    const filters = encodeURIComponent(JSON.stringify({ type: ['container'] }))
    const path = `/events?filters=${filters}${since ? `&since=${since}` : ''}`
    engine.stream(path).then((r) => {
      if (stopped) { r.destroy(); return }
      if (r.statusCode !== 200) { r.resume(); retry(`HTTP ${r.statusCode}`); return }
      res = r
      retryMs = FIRST_RETRY_MS
      let pending = ''
      r.setEncoding('utf8')
      r.on('data', (chunk: string) => {
        pending += chunk
        let nl: number
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl).trim()
          pending = pending.slice(nl + 1)
          if (!line) continue
          const ev = parseEventLine(line)
          if (!ev) continue
          if (ev.time) since = ev.time
          try { onEvent(ev) } catch (err) { deps.logger.error(`container event handler failed on ${ev.action} ${ev.id.slice(0, 12)}: ${(err as Error).message}`) }
        }
      })
      let ended = false // 'end' and 'error' may both fire; reconnect once
      const endOnce = (why: string) => { if (!ended) { ended = true; retry(why) } }
      r.on('end', () => endOnce('closed by the engine'))
      r.on('error', (err) => endOnce(err.message))
    }, (err: Error) => retry(err.message))
  }

  connect()
  return {
    stop() {
      stopped = true
      cancelTimer?.()
      res?.destroy()
    },
  }
}
