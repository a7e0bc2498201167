import * as fs from 'node:fs'
import * as path from 'node:path'
import { parseDaemonArgs, resetHost } from '../../router'
import { CliFailure, positionalOnly, type CliContext, type Command } from '../context'
import { command as stop } from './stop'

/**
 * While the router still runs, give our IPAM ranges to a live peer (DELETE /peer waits for it to
 * confirm); otherwise they would stay owned by a name that no longer exists until someone runs
 * `weave rmpeer`. Not fatal: a lone router has no one to give them to.
 */
async function handOverAddressSpace(ctx: CliContext): Promise<void> {
  let a
  try {
    a = await ctx.api('DELETE', '/peer')
  } catch (err) {
    if (err instanceof CliFailure) return // not running: nothing to hand over now
    throw err
  }
  const body = a.body.trim()
  if (a.status >= 200 && a.status < 300) {
    if (body) ctx.err(body)
  } else {
    ctx.err(`weave: could not hand this peer's address ranges to another peer (${body || `HTTP ${a.status}`}); run "weave rmpeer" on another peer if they are needed`)
  }
}

/** The Docker plugin socket the router would use: removing it ends the router-down responder. */
function pluginSocket(ctx: CliContext): string | undefined {
  try {
    return parseDaemonArgs([], ctx.env).pluginSocket
  } catch {
    return undefined
  }
}

/** The OVSDB server the router would use (flags and environment as `weave launch`), if any. */
function ovsdbTarget(ctx: CliContext): string | undefined {
  try {
    return parseDaemonArgs([], ctx.env).ovsdb
  } catch {
    return undefined
  }
}

export const command: Command = {
  name: 'reset',
  usage:
    'Usage: weave reset\n\nHands this peer\'s IP address ranges to a live peer, stops the router if it runs,\n' +
    'deletes the weave bridge, the OVS bridge datapath, every vethwe* link and weave\'s iptables\n' +
    'chains and rules, and empties the state directory (peer name, IPAM state, targets).\n',
  async run(args, ctx) {
    if (positionalOnly(args, 'reset').length) throw new CliFailure('weave reset takes no arguments')
    await handOverAddressSpace(ctx)
    await stop.run([], ctx)
    const sock = pluginSocket(ctx)
    if (sock) fs.rmSync(sock, { force: true })
    for (const line of (await resetHost({ ovsdbTarget: ovsdbTarget(ctx) })).messages) ctx.err(line)
    if (fs.existsSync(ctx.stateDir)) {
      for (const name of fs.readdirSync(ctx.stateDir)) fs.rmSync(path.join(ctx.stateDir, name), { recursive: true, force: true })
    }
  },
}
