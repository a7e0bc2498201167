/**
 * Does a container get `ethwe`, and with which addresses? (pure; no I/O)
 * Used at create (on the request's own Env) and at start (on the merged Env Docker reports).
 */
import { parseWeaveCidr, type CidrItem } from './weave-cidr'

export type AttachDecision =
  | { kind: 'skip'; reason: string }
  | { kind: 'attach'; items: CidrItem[] }
  | { kind: 'invalid'; token: string; error: string }

export interface QualifyInput {
  /** `KEY=value` strings (Config.Env); null when absent. */
  env: readonly string[] | null | undefined
  /** HostConfig.NetworkMode: '', 'default', 'bridge', 'none', 'host', 'container:ID', or a network name. */
  networkMode: string | null | undefined
  /** Without WEAVE_CIDR, allocate in the default subnet (false = `--no-default-ipalloc`). */
  defaultIpalloc: boolean
}

/** Network modes whose containers get a namespace of their own that we may add `ethwe` to. */
const OWN_NAMESPACE_MODES = new Set(['', 'default', 'bridge', 'none'])

/** The value of WEAVE_CIDR in an env list (last one wins, as in Docker), or undefined. */
export function weaveCidrFromEnv(env: readonly string[] | null | undefined): string | undefined {
  let value: string | undefined
  for (const e of env ?? []) {
    if (typeof e === 'string' && e.startsWith('WEAVE_CIDR=')) value = e.slice('WEAVE_CIDR='.length)
  }
  return value
}

/** Why a network mode rules out `ethwe` (no namespace of its own to add it to), or undefined. */
export function networkModeSkipReason(networkMode: string | null | undefined): string | undefined {
  const mode = networkMode ?? ''
  if (mode === 'host') return 'network mode host'
  if (mode.startsWith('container:')) return `network mode ${mode}`
  if (!OWN_NAMESPACE_MODES.has(mode)) return `user-defined network ${mode}`
  return undefined
}

export function decideAttach(input: QualifyInput): AttachDecision {
  const netSkip = networkModeSkipReason(input.networkMode)
  if (netSkip) return { kind: 'skip', reason: netSkip }
  const value = weaveCidrFromEnv(input.env)
  if (value === undefined) {
    return input.defaultIpalloc
      ? { kind: 'attach', items: [{ kind: 'net-default' }] }
      : { kind: 'skip', reason: 'no WEAVE_CIDR and default allocation is off' }
  }
  const r = parseWeaveCidr(value)
  if (!r.ok) return { kind: 'invalid', token: r.token, error: r.error }
  if (r.none) return { kind: 'skip', reason: 'WEAVE_CIDR=none' }
  return { kind: 'attach', items: r.items }
}
