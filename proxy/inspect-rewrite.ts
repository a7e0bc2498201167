/** `--rewrite-inspect`: the weave address in the NetworkSettings of `docker inspect`'s answer. */
import type { ProxyContext } from './context'
import { serializeHead, splitResponse, statusOf } from './http-head'
import { withBody } from './replies'

/** Whether inspect answers are rewritten (the flag, and a hook that knows the addresses). */
export function rewritesInspect(ctx: ProxyContext): boolean {
  return !!(ctx.config.rewriteInspect && ctx.deps.hooks.inspectAddress)
}

/** The answer with the weave address; undefined leaves the answer as it was. */
export async function rewriteInspectAnswer(ctx: ProxyContext, answer: Buffer): Promise<Buffer | undefined> {
  const inspectAddress = ctx.deps.hooks.inspectAddress
  const split = splitResponse(answer)
  if (!inspectAddress || !split || statusOf(split.head) !== 200) return undefined
  let json: { Id?: unknown; NetworkSettings?: Record<string, unknown> }
  try { json = JSON.parse(split.body.toString('utf8')) as typeof json } catch { return undefined }
  if (typeof json.Id !== 'string') return undefined
  const addr = await inspectAddress(json.Id)
  if (!addr) return undefined
  json.NetworkSettings = { ...json.NetworkSettings, IPAddress: addr.ip, IPPrefixLen: addr.prefixLen, ...(addr.mac ? { MacAddress: addr.mac } : {}) }
  const body = Buffer.from(JSON.stringify(json) + '\n')
  return Buffer.concat([serializeHead(withBody(split.head, body)), body])
}
