import * as fs from 'node:fs'
import * as path from 'node:path'
import { createNetHost } from '../../router/net'
import { CliFailure, positionalOnly, type Command } from '../context'
import { command as stop } from './stop'

export const command: Command = {
  name: 'reset',
  summary: 'stop the router and remove everything weave set up on this host',
  usage:
    'Usage: weave reset\n\nStops the router if it runs, deletes the weave bridge, every vethwe* link and weave\'s\n' +
    'iptables chains and rules, and empties the state directory (peer name, IPAM state, targets).\n',
  async run(args, ctx) {
    if (positionalOnly(args, 'reset').length) throw new CliFailure('weave reset takes no arguments')
    await stop.run([], ctx)
    const r = await createNetHost().resetHost()
    if (r.links.length || r.iptablesJumps || r.iptablesChains) {
      ctx.err(`removed ${r.links.length} link(s), ${r.iptablesChains} iptables chain(s), ${r.iptablesJumps} jump(s)`)
    }
    if (fs.existsSync(ctx.stateDir)) {
      for (const name of fs.readdirSync(ctx.stateDir)) fs.rmSync(path.join(ctx.stateDir, name), { recursive: true, force: true })
    }
  },
}
