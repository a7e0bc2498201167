/**
 * The plugin's input: the network configuration on stdin and the CNI_* environment. Pure: every
 * problem becomes a CniError with the spec's code and a message naming the field.
 *
 * Network configuration (one entry of a conflist, as the runtime hands it over):
 *   { "cniVersion": "1.0.0", "name": "weave", "type": "weave-net",
 *     "socket": "/run/weave/api.sock",     // the router's API socket (default: $WEAVE_RUN_DIR/api.sock)
 *     "hairpinMode": true, "mtu": 1376,
 *     "ipam": { "subnet": "10.32.0.0/12", "routes": [{ "dst": "0.0.0.0/0", "gw": "10.32.0.1" }] },
 *     "prevResult": { ... }                  // CHECK, and chained plugins
 *   }
 * Without `ipam.routes`, the pod's default route goes via the bridge's address (see router/cni-api).
 */
import { CniError, ERR, isSupported, type CniVersion } from './spec'

export type Command = 'ADD' | 'DEL' | 'CHECK' | 'VERSION'

export interface NetConf {
  cniVersion: CniVersion
  name: string
  socket: string
  hairpinMode: boolean
  mtu?: number
  subnet?: string
  routes?: Array<{ dst: string; gw?: string }>
  /** Addresses of prevResult (CHECK verifies them). */
  prevAddresses: string[]
}

export interface CniEnv {
  command: Command
  containerId: string
  /** Absent for DEL when the runtime no longer has the namespace. */
  netns?: string
  ifname: string
}

const CIDR = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/
const IP = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/

function isCidr(s: unknown): s is string {
  const m = typeof s === 'string' ? CIDR.exec(s) : null
  return !!m && m.slice(1, 5).every((o) => Number(o) <= 255) && Number(m[5]) <= 32
}

function isIp(s: unknown): s is string {
  const m = typeof s === 'string' ? IP.exec(s) : null
  return !!m && m.slice(1, 5).every((o) => Number(o) <= 255)
}

/** CNI_COMMAND alone (VERSION needs nothing else). */
export function parseCommand(env: Record<string, string | undefined>): Command {
  const c = env.CNI_COMMAND
  if (c === 'ADD' || c === 'DEL' || c === 'CHECK' || c === 'VERSION') return c
  if (c === undefined || c === '') throw new CniError(ERR.INVALID_ENV, 'CNI_COMMAND is not set')
  throw new CniError(ERR.INVALID_ENV, `CNI_COMMAND ${JSON.stringify(c)} is not one of ADD, DEL, CHECK, VERSION`)
}

export function parseEnv(env: Record<string, string | undefined>): CniEnv {
  const command = parseCommand(env)
  const need = (k: string) => {
    const v = env[k]
    if (v === undefined || v === '') throw new CniError(ERR.INVALID_ENV, `${k} is not set (needed for ${command})`)
    return v
  }
  const containerId = need('CNI_CONTAINERID')
  const ifname = need('CNI_IFNAME')
  const netns = command === 'DEL' ? (env.CNI_NETNS || undefined) : need('CNI_NETNS')
  return { command, containerId, ifname, netns }
}

/** The cniVersion of whatever is on stdin, for VERSION and error JSON (undefined when unreadable). */
export function peekVersion(stdin: string): string | undefined {
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion
    return typeof v === 'string' ? v : undefined
  } catch {
    return undefined
  }
}

export function parseNetConf(stdin: string, defaultSocket: string): NetConf {
  let raw: unknown
  try {
    raw = JSON.parse(stdin)
  } catch (err) {
    throw new CniError(ERR.DECODE, `network configuration on stdin is not JSON: ${(err as Error).message}`)
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new CniError(ERR.DECODE, 'network configuration on stdin is not a JSON object')
  const c = raw as Record<string, unknown>
  if (!isSupported(c.cniVersion)) {
    throw new CniError(ERR.INCOMPATIBLE_VERSION, `cniVersion ${JSON.stringify(c.cniVersion)} is not supported (weave-net speaks 0.3.0, 0.3.1, 0.4.0, 1.0.0)`)
  }
  if (typeof c.name !== 'string' || c.name === '') throw new CniError(ERR.INVALID_CONFIG, 'network configuration has no "name"')
  const bad = (field: string, want: string) => new CniError(ERR.INVALID_CONFIG, `"${field}": expected ${want}, got ${JSON.stringify(c[field] ?? null)}`)
  if (c.socket !== undefined && (typeof c.socket !== 'string' || !c.socket.startsWith('/'))) throw bad('socket', 'an absolute path')
  if (c.hairpinMode !== undefined && typeof c.hairpinMode !== 'boolean') throw bad('hairpinMode', 'true or false')
  if (c.mtu !== undefined && (typeof c.mtu !== 'number' || !Number.isInteger(c.mtu) || c.mtu < 68 || c.mtu > 65535)) throw bad('mtu', 'an integer from 68 to 65535')
  const conf: NetConf = {
    cniVersion: c.cniVersion,
    name: c.name,
    socket: c.socket ?? defaultSocket,
    hairpinMode: c.hairpinMode === true,
    mtu: c.mtu,
    prevAddresses: prevAddresses(c.prevResult),
  }
  Object.assign(conf, parseIpam(c.ipam))
  return conf
}

function parseIpam(v: unknown): Pick<NetConf, 'subnet' | 'routes'> {
  if (v === undefined) return {}
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new CniError(ERR.INVALID_CONFIG, '"ipam": expected an object')
  const ipam = v as Record<string, unknown>
  if (ipam.type !== undefined && ipam.type !== '' && ipam.type !== 'weave-ipam') {
    throw new CniError(ERR.UNSUPPORTED_FIELD, `"ipam.type" ${JSON.stringify(ipam.type)}: weave-net allocates addresses itself (leave it out, or "weave-ipam")`)
  }
  const out: Pick<NetConf, 'subnet' | 'routes'> = {}
  if (ipam.subnet !== undefined) {
    if (!isCidr(ipam.subnet)) throw new CniError(ERR.INVALID_CONFIG, `"ipam.subnet": ${JSON.stringify(ipam.subnet)} is not an IPv4 CIDR`)
    out.subnet = ipam.subnet
  }
  if (ipam.routes !== undefined) {
    if (!Array.isArray(ipam.routes)) throw new CniError(ERR.INVALID_CONFIG, '"ipam.routes": expected a list of {"dst", "gw"}')
    out.routes = ipam.routes.map((r: unknown, i: number) => {
      const x = (r ?? {}) as { dst?: unknown; gw?: unknown }
      if (!isCidr(x.dst)) throw new CniError(ERR.INVALID_CONFIG, `"ipam.routes[${i}].dst": ${JSON.stringify(x.dst)} is not an IPv4 CIDR`)
      if (x.gw !== undefined && !isIp(x.gw)) throw new CniError(ERR.INVALID_CONFIG, `"ipam.routes[${i}].gw": ${JSON.stringify(x.gw)} is not an IPv4 address`)
      return x.gw === undefined ? { dst: x.dst } : { dst: x.dst, gw: x.gw }
    })
  }
  return out
}

function prevAddresses(v: unknown): string[] {
  if (typeof v !== 'object' || v === null) return []
  const ips = (v as { ips?: unknown }).ips
  if (!Array.isArray(ips)) return []
  return ips.map((i: { address?: unknown }) => i?.address).filter((a): a is string => isCidr(a))
}
