import { CliFailure, expectOk, positionalOnly, type Command } from '../context'

export const command: Command = {
  name: 'rmpeer',
  summary: "take over the IP address ranges of dead peers",
  usage:
    'Usage: weave rmpeer PEER...\n\nPEER is a peer name or nickname. The peer must be stopped (unreachable): its address\n' +
    'ranges move to this peer, and it is marked removed so it can never claim them back.\n',
  async run(args, ctx) {
    const peers = positionalOnly(args, 'rmpeer')
    if (peers.length === 0) throw new CliFailure('weave rmpeer needs at least one peer name or nickname')
    for (const p of peers) {
      const a = await ctx.api('DELETE', `/peer/${encodeURIComponent(p)}`)
      if (a.status === 404 && a.body.startsWith('no such API path')) throw new CliFailure('IPAM is not running in this router')
      ctx.out(expectOk(a, `rmpeer ${p}`))
    }
  },
}
