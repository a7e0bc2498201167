import { VERSION } from '../../router'
import { CliFailure, positionalOnly, type Command } from '../context'

export const command: Command = {
  name: 'version',
  usage: 'Usage: weave version\n',
  async run(args, ctx) {
    positionalOnly(args, 'version')
    ctx.out(`weave script ${VERSION}`)
    try {
      const a = await ctx.api('GET', '/version')
      ctx.out(`weave router ${a.body.trim()}`)
    } catch (err) {
      if (!(err instanceof CliFailure)) throw err
      ctx.out('weave router not running')
    }
  },
}
