/**
 * `npm run vm -- CMD [ARG...]`: runs one command inside the stock-kernel VM from the repository
 * root, streams its output and exits with its code. WEAVE_* variables (except WEAVE_VM_*) are
 * passed into the VM. Options before the command: --timeout SECONDS, --mem MB, --cpus N.
 */
import { runInVm, vmUnavailableReason } from './index'

async function main(): Promise<number> {
  const args = process.argv.slice(2)
  let timeoutMs = 30 * 60_000, memMb = 2048, cpus = 2
  while (args[0]?.startsWith('--')) {
    const flag = args.shift()!
    if (flag === '--') break
    const value = Number(args.shift())
    if (!Number.isFinite(value) || value <= 0) { console.error(`vm: ${flag} needs a positive number`); return 2 }
    if (flag === '--timeout') timeoutMs = value * 1000
    else if (flag === '--mem') memMb = value
    else if (flag === '--cpus') cpus = value
    else { console.error(`vm: unknown option ${flag}`); return 2 }
  }
  if (!args.length) { console.error('usage: npm run vm -- [--timeout S] [--mem MB] [--cpus N] COMMAND [ARG...]'); return 2 }
  const why = vmUnavailableReason()
  if (why) { console.error(`vm: unavailable: ${why}`); return 3 }
  const env = Object.fromEntries(Object.entries(process.env)
    .filter((e): e is [string, string] => e[0].startsWith('WEAVE_') && !e[0].startsWith('WEAVE_VM') && e[1] !== undefined))
  const r = await runInVm({ argv: args, timeoutMs, memMb, cpus, env, stream: process.stdout })
  if (r.exitCode === 124 || r.exitCode === 125) {
    console.error(`vm: ${r.timedOut ? `timed out after ${timeoutMs / 1000}s` : 'the VM ended without an exit code'}; console:\n${r.console}`)
  }
  console.error(`vm: exit ${r.exitCode} after ${r.seconds.toFixed(1)}s (kernel ${r.kernel})`)
  return r.exitCode
}

main().then((code) => { process.exitCode = code }, (err: unknown) => {
  console.error(`vm: ${err instanceof Error ? err.message : String(err)}`)
  process.exitCode = 1
})
