import * as path from 'node:path'
import { CliFailure, type Command } from '../context'

const FLAGS: Record<string, 'binDir' | 'confDir' | 'node' | 'cniVersion'> = {
  '--bin-dir': 'binDir', '--conf-dir': 'confDir', '--node': 'node', '--cni-version': 'cniVersion',
}

/** `--flag VALUE` and `--flag=VALUE`; nothing positional. */
function parse(args: string[]): Partial<Record<(typeof FLAGS)[string], string>> {
  const out: Partial<Record<(typeof FLAGS)[string], string>> = {}
  for (let i = 0; i < args.length; i++) {
    const [flag, inline] = args[i].split(/=(.*)/s, 2)
    const key = FLAGS[flag]
    if (!key) throw new CliFailure(`unknown argument ${args[i]} for "weave setup-cni" (see weave help setup-cni)`)
    const v = inline ?? args[++i]
    if (v === undefined || v === '') throw new CliFailure(`${flag} needs a value`)
    out[key] = v
  }
  return out
}

export const command: Command = {
  name: 'setup-cni',
  usage:
    'Usage: weave setup-cni [--bin-dir DIR] [--conf-dir DIR] [--node PATH] [--cni-version V]\n\n' +
    'Installs the weave-net plugin into DIR (default /opt/cni/bin) and writes 10-weave.conflist into the\n' +
    'conf dir (default /etc/cni/net.d) unless one is there: weave-net chained to portmap, talking to this\n' +
    "router's API socket ($WEAVE_RUN_DIR/api.sock). --node names the node binary the plugin runs with\n" +
    '(default this one); --cni-version the conflist\'s cniVersion (default 1.0.0).\n',
  async run(args, ctx) {
    const o = parse(args)
    const { installCni } = await import('../../cni') // only this command needs the installer
    const r = installCni({ ...o, socket: path.join(ctx.runDir, 'api.sock') })
    ctx.out(`${r.plugin}`)
    ctx.out(r.conflistWritten ? `${r.conflist}` : `${r.conflist} (kept: it was already there)`)
  },
}
