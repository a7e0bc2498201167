import * as fs from 'node:fs'
import * as path from 'node:path'
import { createNetHost } from '../../router/net'
import { connectOvsdb, removeDatapath } from '../../router/ovsdb'
import { parseDaemonArgs } from '../../router/config'
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

/** Remove the `datapath` OVS bridge fastdp made, when an OVSDB server is there to ask. */
async function removeOvsBridge(ctx: CliContext): Promise<void> {
  let target: string
  try {
    target = parseDaemonArgs([], ctx.env).ovsdb
  } catch {
    return
  }
  if (target.startsWith('unix:') && !fs.existsSync(target.slice('unix:'.length))) return
  let client
  try {
    client = await connectOvsdb(target, { callTimeoutMs: 5_000 })
  } catch {
    return // no OVS here: nothing of ours in it
  }
  try {
    if (await removeDatapath(client, 'datapath')) ctx.err('removed the OVS bridge datapath')
  } catch (err) {
    ctx.err(`weave: could not remove the OVS bridge datapath: ${(err as Error).message}`)
  } finally {
    client.close()
  }
}

export const command: Command = {
  name: 'reset',
  summary: 'stop the router and remove everything weave set up on this host',
  usage:
    'Usage: weave reset\n\nHands this peer\'s IP address ranges to a live peer, stops the router if it runs,\n' +
    'deletes the weave bridge, the OVS bridge datapath, every vethwe* link and weave\'s iptables\n' +
    'chains and rules, and empties the state directory (peer name, IPAM state, targets).\n',
  async run(args, ctx) {
    if (positionalOnly(args, 'reset').length) throw new CliFailure('weave reset takes no arguments')
    await handOverAddressSpace(ctx)
    await stop.run([], ctx)
    await removeOvsBridge(ctx)
    const r = await createNetHost().resetHost()
    if (r.links.length || r.iptablesJumps || r.iptablesChains) {
      ctx.err(`removed ${r.links.length} link(s), ${r.iptablesChains} iptables chain(s), ${r.iptablesJumps} jump(s)`)
    }
    if (fs.existsSync(ctx.stateDir)) {
      for (const name of fs.readdirSync(ctx.stateDir)) fs.rmSync(path.join(ctx.stateDir, name), { recursive: true, force: true })
    }
  },
}
