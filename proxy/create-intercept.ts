/**
 * The intercepted `POST /containers/create`: decide whether the container is a weave container
 * (its WEAVE_CIDR, or the image's, and its network mode), and if so rewrite the body so its
 * command runs behind weavewait (create-rewrite.ts) and let the daemon adjust it (hooks.onCreate).
 */
import type { ProxyContext } from './context'
import { rewriteCreate, needsImageCommand, strSlice, type ImageCommand } from './create-rewrite'
import { engineMessage } from './engine-client'
import { decideAttach, networkModeSkipReason, weaveCidrFromEnv } from './qualify'
import { ProxyReply } from './replies'

/** The body to send on: rewritten for a weave container, else as it came. */
export async function interceptCreate(ctx: ProxyContext, body: Buffer, name: string | undefined): Promise<Buffer> {
  const { config, deps } = ctx
  let req: Record<string, unknown>
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'))
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return body
    req = parsed as Record<string, unknown>
  } catch {
    return body // not JSON: let the engine refuse it in its own words
  }
  const hostConfig = (req.HostConfig ?? {}) as { NetworkMode?: string }
  const reqEnv = Array.isArray(req.Env) ? req.Env as string[] : []
  const networkMode = hostConfig.NetworkMode
  const netSkip = networkModeSkipReason(networkMode)
  if (netSkip) return skipCreate(ctx, body, name, netSkip)
  const own = decideAttach({ env: reqEnv, networkMode, defaultIpalloc: config.defaultIpalloc })
  if (own.kind === 'invalid') throw new ProxyReply(400, `weave: ${own.error}`)
  // Without a WEAVE_CIDR of its own the container inherits the image's (Docker merges the
  // env), which must be judged now: a container given /w/w but left alone at start would
  // only time out.
  const inherits = weaveCidrFromEnv(reqEnv) === undefined
  if (!inherits && own.kind === 'skip') return skipCreate(ctx, body, name, own.reason)
  const tImage = deps.clock.now()
  const image = inherits || needsImageCommand(req) ? await imageConfig(ctx, req.Image) : undefined
  ctx.log.debug(`create: image config ${deps.clock.now() - tImage} ms`)
  const decision = inherits ? decideAttach({ env: [...(image?.Env ?? []), ...reqEnv], networkMode, defaultIpalloc: config.defaultIpalloc }) : own
  if (decision.kind === 'invalid') throw new ProxyReply(400, `weave: ${decision.error} (set in image ${String(req.Image)})`)
  if (decision.kind === 'skip') return skipCreate(ctx, body, name, decision.reason)
  const rw = rewriteCreate(req, config.weavewaitDir, image)
  if (!rw.ok) throw new ProxyReply(rw.status, rw.message)
  const final = deps.hooks.onCreate ? await deps.hooks.onCreate(rw.body, { name, items: decision.items }) : rw.body
  return Buffer.from(JSON.stringify(final))
}

function skipCreate(ctx: ProxyContext, body: Buffer, name: string | undefined, reason: string): Buffer {
  ctx.log.debug(`create${name ? ` ${name}` : ''}: not a weave container (${reason})`)
  return body
}

/** The image's command and environment, which a create without its own inherits. */
async function imageConfig(ctx: ProxyContext, image: unknown): Promise<ImageCommand & { Env: string[] }> {
  if (typeof image !== 'string' || !image) throw new ProxyReply(400, 'weave: the create request names no image')
  const r = await ctx.engine.request('GET', `/images/${encodeURI(image)}/json`)
  // A 404 in Docker's words makes the docker client pull the image and create again.
  if (r.status === 404) throw new ProxyReply(404, `No such image: ${image}`)
  if (r.status !== 200) throw new ProxyReply(r.status, engineMessage(r))
  const cfg = ((r.json as { Config?: Record<string, unknown> } | undefined)?.Config ?? {})
  return { Entrypoint: strSlice(cfg.Entrypoint), Cmd: strSlice(cfg.Cmd), Env: Array.isArray(cfg.Env) ? cfg.Env.filter((e): e is string => typeof e === 'string') : [] }
}
