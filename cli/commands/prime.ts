import { expectOk, positionalOnly, type Command } from '../context'

export const command: Command = {
  name: 'prime',
  usage: 'Usage: weave prime\n\nBlocks until this peer has an IP allocation ring, starting consensus if needed.\n',
  async run(args, ctx) {
    positionalOnly(args, 'prime')
    expectOk(await ctx.api('GET', '/ring'), 'prime')
  },
}
