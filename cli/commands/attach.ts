import { CliFailure, expectOk, positionalOnly, type Command, type CliContext } from '../context'

/** `[ADDR...] TARGET`: the last argument is the target, the others its addresses. */
function split(args: string[], name: string, known: string[] = []): { target: string; addresses: string[] } {
  const pos = positionalOnly(args, name, known)
  const target = pos.pop()
  if (target === undefined) throw new CliFailure(`weave ${name} needs a container (name or id), a pid or a netns path`)
  return { target, addresses: pos }
}

async function call(ctx: CliContext, path: string, body: unknown, what: string): Promise<Record<string, unknown>> {
  const a = await ctx.api('POST', path, JSON.stringify(body))
  return JSON.parse(expectOk(a, what)) as Record<string, unknown>
}

const ADDR_HELP =
  'ADDR is net:default, net:CIDR (allocate in that subnet), ip:CIDR or a bare CIDR (exactly that address);\n' +
  'none given means net:default. TARGET is a Docker container (name or id), a pid, a network namespace\n' +
  'path, or the name of a namespace under /var/run/netns.\n'

export const attachCommand: Command = {
  name: 'attach',
  usage: 'Usage: weave attach [--no-multicast-route] [ADDR...] TARGET\n\n' + ADDR_HELP +
    '--no-multicast-route: no 224.0.0.0/4 route via ethwe in the container.\nPrints the addresses on ethwe.\n',
  async run(args, ctx) {
    const { target, addresses } = split(args, 'attach', ['--no-multicast-route'])
    const noMcast = args.includes('--no-multicast-route')
    const r = await call(ctx, '/attach', { target, addresses, ...(noMcast ? { multicastRoute: false } : {}) }, `attach ${target}`)
    ctx.out((r.addresses as string[]).map((a) => a.replace(/\/\d+$/, '')).join(' '))
  },
}

export const detachCommand: Command = {
  name: 'detach',
  usage: 'Usage: weave detach [ADDR...] TARGET\n\n' + ADDR_HELP + 'Prints the addresses removed; their leases are released.\n',
  async run(args, ctx) {
    const { target, addresses } = split(args, 'detach')
    const r = await call(ctx, '/detach', { target, addresses }, `detach ${target}`)
    ctx.out((r.removed as string[]).map((a) => a.replace(/\/\d+$/, '')).join(' '))
  },
}

export const psCommand: Command = {
  name: 'ps',
  usage: 'Usage: weave ps [CONTAINER...]\n\nOne line per attached container: ID MAC CIDR..., after the bridge\'s own line\n' +
    '(weave:expose, with the addresses weave expose gave the host). With CONTAINERs (names, IDs or weave:expose): only those.\n',
  async run(args, ctx) {
    const only = positionalOnly(args, 'ps')
    const q = only.map((t) => `target=${encodeURIComponent(t)}`).join('&')
    ctx.out(expectOk(await ctx.api('GET', `/ps${q ? `?${q}` : ''}`), 'ps'))
  },
}

export const exposeCommand: Command = {
  name: 'expose',
  dashHIsHostname: true,
  usage: 'Usage: weave expose [ADDR...] [-h FQDN]\n\nADDR as for weave attach; none given means net:default. Prints the addresses.\n' +
    'With -h, FQDN names the host\'s addresses in weaveDNS.\n',
  async run(args, ctx) {
    const h = args.indexOf('-h')
    let fqdn: string | undefined
    if (h >= 0) {
      fqdn = args[h + 1]
      if (!fqdn) throw new CliFailure('weave expose: -h needs a name')
      args = [...args.slice(0, h), ...args.slice(h + 2)]
    }
    const addresses = positionalOnly(args, 'expose')
    const r = await call(ctx, '/expose', { addresses }, 'expose')
    const plain = (r.addresses as string[]).map((a) => a.replace(/\/\d+$/, ''))
    if (fqdn) await call(ctx, '/dns-add', { id: 'weave:expose', fqdn, addresses: plain }, `dns-add ${fqdn}`)
    ctx.out(plain.join(' '))
  },
}

export const hideCommand: Command = {
  name: 'hide',
  usage: 'Usage: weave hide [CIDR...]\n\nRemoves the addresses and every rule expose added. Prints what was removed.\n',
  async run(args, ctx) {
    const addresses = positionalOnly(args, 'hide')
    const r = await call(ctx, '/hide', { addresses }, 'hide')
    ctx.out((r.removed as string[]).map((a) => a.replace(/\/\d+$/, '')).join(' '))
  },
}
