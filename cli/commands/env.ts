import * as path from 'node:path'
import { CliFailure, expectOk, positionalOnly, type CliContext, type Command } from '../context'

/** The proxy's unix socket: `${runDir}/weave.sock` (/run/weave/weave.sock by default, as Weave's). */
export function proxySocketUrl(ctx: CliContext): string {
  return `unix://${path.join(ctx.runDir, 'weave.sock')}`
}

/** Fail unless the running router says its proxy is listening. */
async function requireProxy(ctx: CliContext): Promise<void> {
  const report = JSON.parse(expectOk(await ctx.api('GET', '/report'), 'report')) as { Proxy?: { Addresses?: string[] } }
  if (!report.Proxy?.Addresses?.length) throw new CliFailure('the weave proxy is not running (launch the router on a host with Docker, without --no-proxy)')
}

export const command: Command = {
  name: 'env',
  usage:
    'Usage: eval $(weave env)            point DOCKER_HOST at the weave proxy\n' +
    '       eval $(weave env --restore)  point it back\n\n' +
    'Prints `export DOCKER_HOST=... ORIG_DOCKER_HOST=...`; ORIG_DOCKER_HOST is set only when\n' +
    'DOCKER_HOST does not already point at the proxy, so running it twice keeps the original.\n',
  async run(args, ctx) {
    positionalOnly(args, 'env', ['--restore'])
    if (args.includes('--restore')) {
      const orig = ctx.env.ORIG_DOCKER_HOST
      if (orig === undefined) {
        ctx.err('weave: nothing to restore (ORIG_DOCKER_HOST is not set)')
        return 0
      }
      ctx.out(orig === '' ? 'unset DOCKER_HOST ORIG_DOCKER_HOST' : `export DOCKER_HOST=${orig}; unset ORIG_DOCKER_HOST`)
      return 0
    }
    await requireProxy(ctx)
    const proxy = proxySocketUrl(ctx)
    const current = ctx.env.DOCKER_HOST ?? ''
    ctx.out(current === proxy ? `export DOCKER_HOST=${proxy}` : `export DOCKER_HOST=${proxy} ORIG_DOCKER_HOST=${current}`)
  },
}

export const configCommand: Command = {
  name: 'config',
  usage: 'Usage: docker $(weave config) COMMAND ...\n\nPrints -H=unix://.../weave.sock.\n',
  async run(args, ctx) {
    positionalOnly(args, 'config')
    await requireProxy(ctx)
    ctx.out(`-H=${proxySocketUrl(ctx)}`)
  },
}
