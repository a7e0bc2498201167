/** `weave dns-add | dns-remove | dns-lookup | dns-args`: weaveDNS records by hand, and lookups. */
import type * as Packet from 'dns-packet'
import { CliFailure, expectOk, type CliContext, type Command } from '../context'

interface DnsArgs { addresses: string[]; target?: string; fqdn?: string }

/** `[IP...] [CONTAINER] [-h FQDN]` (Weave's grammar). */
export function parseDnsArgs(args: string[], name: string): DnsArgs {
  const out: DnsArgs = { addresses: [] }
  for (let i = 0; i < args.length; i++) {
    const a = args[i]
    if (a === '-h' || a === '--hostname') {
      if (i + 1 >= args.length) throw new CliFailure(`weave ${name}: -h needs a name`)
      out.fqdn = args[++i]
    } else if (a.startsWith('-')) {
      throw new CliFailure(`unknown flag ${a} for "weave ${name}" (see weave help ${name})`)
    } else if (/^\d{1,3}(\.\d{1,3}){3}(\/\d+)?$/.test(a)) {
      out.addresses.push(a.replace(/\/\d+$/, ''))
    } else if (out.target === undefined) {
      out.target = a
    } else {
      throw new CliFailure(`weave ${name}: one container at most ("${out.target}", "${a}")`)
    }
  }
  return out
}

const USAGE_TAIL = 'IP addresses default to the container\'s; the name defaults to the container\'s hostname.\n' +
  'Without a container the record belongs to weave:extern and needs -h and an address.\n'

export const dnsAddCommand: Command = {
  name: 'dns-add',
  dashHIsHostname: true,
  usage: 'Usage: weave dns-add [IP...] [CONTAINER] [-h FQDN]\n\n' + USAGE_TAIL,
  async run(args, ctx) {
    const a = parseDnsArgs(args, 'dns-add')
    if (!a.target && !a.fqdn) throw new CliFailure('weave dns-add needs a container or -h FQDN')
    if (!a.target && !a.addresses.length) throw new CliFailure('weave dns-add -h FQDN needs at least one IP address')
    const r = await ctx.api('POST', '/dns-add', JSON.stringify(a))
    expectOk(r, 'dns-add')
  },
}

export const dnsRemoveCommand: Command = {
  name: 'dns-remove',
  dashHIsHostname: true,
  usage: 'Usage: weave dns-remove [IP...] [CONTAINER] [-h FQDN]\n\nRemoves the matching records this host owns.\n',
  async run(args, ctx) {
    const a = parseDnsArgs(args, 'dns-remove')
    if (!a.target && !a.fqdn && !a.addresses.length) throw new CliFailure('weave dns-remove needs addresses, a container or -h FQDN')
    expectOk(await ctx.api('POST', '/dns-remove', JSON.stringify(a)), 'dns-remove')
  },
}

export const dnsArgsCommand: Command = {
  name: 'dns-args',
  usage: 'Usage: weave dns-args\n\nPrints --dns=ADDRESS --dns-search=DOMAIN, or nothing when weaveDNS is off.\n',
  async run(args, ctx) {
    if (args.length) throw new CliFailure('weave dns-args takes no arguments')
    const a = await ctx.api('GET', '/dns-args')
    if (a.status === 404) return
    const text = expectOk(a, 'dns-args').trim()
    if (text) ctx.out(text)
  },
}

export const dnsLookupCommand: Command = {
  name: 'dns-lookup',
  usage: 'Usage: weave dns-lookup NAME\n\nAsks weaveDNS (as dig would) and prints the addresses, one per line.\n',
  async run(args, ctx) {
    if (args.length !== 1 || args[0].startsWith('-')) throw new CliFailure('weave dns-lookup needs exactly one NAME')
    const report = JSON.parse(expectOk(await ctx.api('GET', '/report'), 'report')) as { DNS?: { Address?: string } }
    const addr = report.DNS?.Address
    if (!addr) throw new CliFailure('weaveDNS is not running or not listening')
    const m = /^(.*):(\d+)$/.exec(addr)!
    const host = m[1] === '0.0.0.0' ? '127.0.0.1' : m[1]
    // Loaded here, not at the top: every `weave` command loads this file for its help text.
    const [dgram, packet] = await Promise.all([import('node:dgram'), import('dns-packet')])
    const answer = await query(dgram, packet, host, Number(m[2]), args[0])
    for (const a of answer) ctx.out(a)
  },
}

/** One A query over UDP (retrying over TCP is not needed for a list of addresses we print). */
function query(dgram: typeof import('node:dgram'), packet: typeof Packet, host: string, port: number, name: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4')
    const q = packet.encode({
      type: 'query', id: Math.floor(Math.random() * 65536), flags: packet.RECURSION_DESIRED,
      questions: [{ type: 'A', class: 'IN', name }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096 } as unknown as Packet.Answer],
    })
    const t = setTimeout(() => { sock.close(); reject(new CliFailure(`weaveDNS at ${host}:${port} did not answer`)) }, 5000)
    sock.on('message', (msg) => {
      clearTimeout(t)
      sock.close()
      try {
        const r = packet.decode(msg)
        resolve((r.answers ?? []).filter((x) => x.type === 'A').map((x) => String((x as { data?: unknown }).data)))
      } catch (err) { reject(err instanceof Error ? err : new Error(String(err))) }
    })
    sock.send(q, port, host)
  })
}

export type { CliContext }
