import { expectOk, positionalOnly, type Command } from '../context'

export const command: Command = {
  name: 'report',
  usage: 'Usage: weave report\n\nPrints the router report (peers, connections, IPAM, ...) as JSON.\n',
  async run(args, ctx) {
    positionalOnly(args, 'report')
    ctx.out(expectOk(await ctx.api('GET', '/report'), 'report'))
  },
}
