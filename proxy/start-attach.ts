/**
 * The intercepted start/restart: forward it, and hold Docker's answer until the daemon has
 * attached `ethwe` (hooks.onStarted); a container that cannot be attached is killed and the start
 * fails with the reason.
 */
import type * as net from 'node:net'
import type { ProxyContext } from './context'
import { inspectWeaveContainer } from './container-info'
import { engineMessage } from './engine-client'
import { findHeadEnd, parseHead, statusOf, type HttpHead } from './http-head'
import { ProxyReply, finish } from './replies'
import { exchange } from './streams'

const DEFAULT_ATTACH_TIMEOUT_MS = 60_000

/** Forward a start/restart and hold Docker's answer until `ethwe` is attached. */
export async function interceptStart(ctx: ProxyContext, client: net.Socket, head: HttpHead, body: Buffer, container: string): Promise<void> {
  const answer = await exchange(ctx, head, body)
  const status = statusOf(parseHead(answer.subarray(0, Math.max(0, findHeadEnd(answer)))) ?? { startLine: '', headers: [] })
  if (status === 204) {
    try {
      await attachStarted(ctx, container)
    } catch (err) {
      const msg = (err as Error).message
      ctx.log.warn(`start ${container}: attach failed, killing the container: ${msg}`)
      const k = await ctx.engine.request('POST', `/containers/${encodeURIComponent(container)}/kill`).catch((e: Error) => ({ status: 0, text: e.message, json: undefined }))
      const killed = k.status === 204 || k.status === 409 // 409: it already stopped
      throw new ProxyReply(500, `weave: could not attach ethwe to container ${container}: ${msg}; ${killed ? 'the container was stopped' : `stopping it failed too: ${engineMessage(k)}`}`)
    }
  }
  finish(client, answer)
}

async function attachStarted(ctx: ProxyContext, container: string): Promise<void> {
  const { config, deps } = ctx
  const onStarted = deps.hooks.onStarted
  if (!onStarted) return
  const t0 = deps.clock.now()
  const started = await inspectWeaveContainer(ctx.engine, container, config.defaultIpalloc)
  const t1 = deps.clock.now()
  if (started) await withTimeout(ctx, onStarted(started), config.attachTimeoutMs ?? DEFAULT_ATTACH_TIMEOUT_MS)
  ctx.log.debug(`start ${container.slice(0, 12)}: inspect ${t1 - t0} ms, attach ${deps.clock.now() - t1} ms`)
}

function withTimeout<T>(ctx: ProxyContext, p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const cancel = ctx.deps.clock.setTimer(ms, () => reject(new Error(`attaching took longer than ${ms} ms`)))
    p.then((v) => { cancel(); resolve(v) }, (e: Error) => { cancel(); reject(e) })
  })
}
