/**
 * The container-create rewrite (pure): bind weavewait read-only at /w and run the container's
 * command through /w/w, so the command starts only once `ethwe` is up.
 */

/** The entrypoint every weave container gets in front of its own. */
export const WEAVEWAIT_ENTRYPOINT = '/w/w'
/** Where the weavewait directory is bound inside the container. */
export const WEAVEWAIT_MOUNT = '/w'

/** The parts of an image's config the rewrite needs (from GET /images/{name}/json → Config). */
export interface ImageCommand {
  Entrypoint: string[] | null
  Cmd: string[] | null
}

export type CreateRewrite =
  | { ok: true; body: Record<string, unknown> }
  | { ok: false; status: number; message: string }

/** Docker's strslice: null, a string (one element) or an array of strings. */
export function strSlice(v: unknown): string[] | null {
  if (v === null || v === undefined) return null
  if (typeof v === 'string') return [v]
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v
  return null
}

const isEmpty = (s: string[] | null) => s === null || s.length === 0
/** `--entrypoint ""` arrives as [""]: the user cleared the image's entrypoint. */
const isCleared = (s: string[] | null) => s !== null && s.length === 1 && s[0] === ''

/**
 * True when the rewrite needs the image's Entrypoint/Cmd: the request names no entrypoint of its
 * own, so Docker would take the image's — and once we set one, Docker would ignore the image's Cmd.
 */
export function needsImageCommand(body: Record<string, unknown>): boolean {
  const ep = strSlice(body.Entrypoint)
  return isEmpty(ep)
}

/** Binds without any existing /w, plus ours (read-only). */
function withWeavewaitBind(hostConfig: Record<string, unknown>, weavewaitDir: string): Record<string, unknown> {
  const binds = Array.isArray(hostConfig.Binds) ? (hostConfig.Binds as unknown[]).filter((b): b is string => typeof b === 'string') : []
  const kept = binds.filter((b) => b.split(':')[1] !== WEAVEWAIT_MOUNT)
  const out: Record<string, unknown> = { ...hostConfig, Binds: [...kept, `${weavewaitDir}:${WEAVEWAIT_MOUNT}:ro`] }
  if (Array.isArray(hostConfig.Mounts)) {
    out.Mounts = (hostConfig.Mounts as unknown[]).filter((m) => !(m && typeof m === 'object' && (m as { Target?: unknown }).Target === WEAVEWAIT_MOUNT))
  }
  return out
}

/**
 * Rewrite a create body. `image` must be given when `needsImageCommand(body)`.
 * Prepends /w/w exactly once: a body whose entrypoint already starts with /w/w (a re-create, or
 * an image committed from a weave container) is not wrapped twice.
 */
export function rewriteCreate(body: Record<string, unknown>, weavewaitDir: string, image?: ImageCommand): CreateRewrite {
  const requested = strSlice(body.Entrypoint)
  let cmd = strSlice(body.Cmd)
  let entrypoint: string[]
  if (isCleared(requested)) {
    entrypoint = []
  } else if (requested === null || requested.length === 0) {
    if (!image) throw new Error('rewriteCreate: the image command is needed for a body without Entrypoint')
    entrypoint = image.Entrypoint ?? []
    if (isEmpty(cmd)) cmd = image.Cmd
  } else {
    entrypoint = requested
  }
  if (entrypoint.length === 0 && isEmpty(cmd)) {
    return { ok: false, status: 400, message: 'No command specified' }
  }
  if (entrypoint[0] !== WEAVEWAIT_ENTRYPOINT) entrypoint = [WEAVEWAIT_ENTRYPOINT, ...entrypoint]
  const hostConfig = body.HostConfig && typeof body.HostConfig === 'object' ? body.HostConfig as Record<string, unknown> : {}
  return {
    ok: true,
    body: { ...body, Entrypoint: entrypoint, Cmd: cmd, HostConfig: withWeavewaitBind(hostConfig, weavewaitDir) },
  }
}
