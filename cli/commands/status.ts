import { CliFailure, expectOk, positionalOnly, type Command } from '../context'

export const command: Command = {
  name: 'status',
  usage:
    'Usage: weave status [VIEW]\n\nWithout VIEW: a summary of every service. VIEWs: peers, connections, targets, ipam, dns\n' +
    '(whatever the running router offers under /status/VIEW).\n',
  async run(args, ctx) {
    const views = positionalOnly(args, 'status')
    if (views.length > 1) throw new CliFailure('weave status takes at most one view')
    const view = views[0]
    if (view !== undefined && !/^[a-z-]+$/.test(view)) throw new CliFailure(`"${view}" is not a status view`)
    const a = await ctx.api('GET', view ? `/status/${view}` : '/status')
    if (a.status === 404 && view) throw new CliFailure(`unknown status view "${view}" (try: peers, connections, targets, ipam, dns)`)
    ctx.out(expectOk(a, 'status'))
  },
}
