/**
 * The plugin's commands: VERSION answers by itself; ADD, DEL and CHECK each become one request to
 * the local router (router/cni-api), which allocates, attaches and verifies. The request function
 * is passed in, so the whole decision table is testable without a router.
 */
import { parseCommand, parseEnv, parseNetConf, peekVersion, type CniEnv, type NetConf } from './conf'
import { CniError, ERR, formatError, formatResult, formatVersionInfo } from './spec'
import { RouterUnreachable, type RouterAnswer } from './router-client'

export interface PluginInput {
  env: Record<string, string | undefined>
  stdin: string
  /** The router's API socket when the conf names none. */
  defaultSocket: string
}

export interface PluginOutput {
  stdout: string
  exitCode: number
}

export type RouterCall = (socket: string, path: string, body: unknown) => Promise<RouterAnswer>

export async function runPlugin(input: PluginInput, call: RouterCall): Promise<PluginOutput> {
  try {
    if (parseCommand(input.env) === 'VERSION') return { stdout: formatVersionInfo(peekVersion(input.stdin)), exitCode: 0 }
    const env = parseEnv(input.env)
    const conf = parseNetConf(input.stdin, input.defaultSocket)
    return { stdout: await dispatch(env, conf, call), exitCode: 0 }
  } catch (err) {
    const e = err instanceof CniError ? err : new CniError(ERR.IO_FAILURE, (err as Error).message)
    return { stdout: formatError(e, peekVersion(input.stdin)), exitCode: 1 }
  }
}

async function dispatch(env: CniEnv, conf: NetConf, call: RouterCall): Promise<string> {
  const who = { containerId: env.containerId, netns: env.netns, ifname: env.ifname }
  switch (env.command) {
    case 'ADD': {
      const a = await ask(call, conf.socket, '/cni/add', {
        ...who, mtu: conf.mtu, hairpin: conf.hairpinMode, subnet: conf.subnet, routes: conf.routes,
      })
      const r = JSON.parse(a.body) as { mac: string; addresses: string[]; gateway?: string; routes: Array<{ dst: string; gw?: string }>; hostVeth: string }
      return formatResult(conf.cniVersion, { ...r, ifname: env.ifname, netns: env.netns! })
    }
    case 'DEL':
      await ask(call, conf.socket, '/cni/del', who)
      return ''
    case 'CHECK':
      // CHECK arrived with 0.4.0; a runtime speaking 0.3.x never sends it.
      if (conf.cniVersion === '0.3.0' || conf.cniVersion === '0.3.1') {
        throw new CniError(ERR.INCOMPATIBLE_VERSION, `CHECK is not part of CNI ${conf.cniVersion} (it needs 0.4.0 or later)`)
      }
      await ask(call, conf.socket, '/cni/check', { ...who, addresses: conf.prevAddresses })
      return ''
    default:
      throw new CniError(ERR.INVALID_ENV, `unexpected command ${env.command}`)
  }
}

/** One router request; anything but 200 becomes a CniError naming the router's reason. */
async function ask(call: RouterCall, socket: string, path: string, body: unknown): Promise<RouterAnswer> {
  let a: RouterAnswer
  try {
    a = await call(socket, path, body)
  } catch (err) {
    if (err instanceof RouterUnreachable) throw new CniError(ERR.TRY_AGAIN_LATER, err.message, `start it with "weave launch"; the conf's "socket" names where it listens`)
    throw new CniError(ERR.IO_FAILURE, (err as Error).message)
  }
  if (a.status === 200) return a
  const op = path.slice('/cni/'.length).toUpperCase()
  const why = a.body.trim() || `HTTP ${a.status}`
  if (a.status === 404 && why.startsWith('no such API path')) {
    throw new CniError(ERR.ROUTER_FAILED, `the router at ${socket} has no CNI API (${why}): is it weave-ts?`)
  }
  const code = a.status === 400 ? ERR.INVALID_CONFIG
    : a.status === 503 ? ERR.TRY_AGAIN_LATER
    : a.status === 404 ? ERR.CONTAINER_UNKNOWN
    : a.status === 409 && op === 'CHECK' ? ERR.CHECK_FAILED
    : ERR.ROUTER_FAILED
  throw new CniError(code, `${op} failed: ${why}`)
}
