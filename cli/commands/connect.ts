import { CliFailure, expectOk, positionalOnly, type Command } from '../context'

/** `weave connect [--replace] PEER...`: add (or with --replace, set) the running router's direct targets. */
export const command: Command = {
  name: 'connect',
  usage:
    'Usage: weave connect [--replace] PEER...\n\nPEER is HOST or HOST:PORT (port 6783 by default). The router keeps trying them,\n' +
    'also after a restart, until `weave forget`. --replace makes these the only targets.\n',
  async run(args, ctx) {
    const peers = positionalOnly(args, 'connect', ['--replace'])
    const replace = args.includes('--replace')
    if (peers.length === 0 && !replace) throw new CliFailure('weave connect needs at least one peer')
    const body = JSON.stringify({ peers, replace })
    expectOk(await ctx.api('POST', '/connect', body), 'connect')
  },
}

/** `weave forget PEER...`: stop trying (and remembering) direct targets. */
export const forgetCommand: Command = {
  name: 'forget',
  usage: 'Usage: weave forget PEER...\n\nThe router stops connecting to these addresses (existing connections stay until they end).\n',
  async run(args, ctx) {
    const peers = positionalOnly(args, 'forget')
    if (peers.length === 0) throw new CliFailure('weave forget needs at least one peer')
    expectOk(await ctx.api('POST', '/forget', JSON.stringify({ peers })), 'forget')
  },
}
