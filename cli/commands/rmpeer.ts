import { CliFailure, expectOk, positionalOnly, type Command } from '../context'

export const command: Command = {
  name: 'rmpeer',
  usage:
    'Usage: weave rmpeer PEER...\n\nPEER is a peer name or nickname. The peer must be stopped (unreachable): its address\n' +
    'ranges move to this peer, and it is marked removed so it can never claim them back. A majority of the\n' +
    'other peers owning space must agree; name every dead peer in one command.\n',
  async run(args, ctx) {
    const peers = positionalOnly(args, 'rmpeer')
    if (peers.length === 0) throw new CliFailure('weave rmpeer needs at least one peer name or nickname')
    for (const p of peers) {
      // The other names are dead too: they must not count in the majority that has to agree.
      const also = peers.filter((q) => q !== p).map(encodeURIComponent).join(',')
      const a = await ctx.api('DELETE', `/peer/${encodeURIComponent(p)}${also ? `?also=${also}` : ''}`)
      if (a.status === 404 && a.body.startsWith('no such API path')) throw new CliFailure('IPAM is not running in this router')
      ctx.out(expectOk(a, `rmpeer ${p}`))
    }
  },
}
