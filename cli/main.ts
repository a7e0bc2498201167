/**
 * `weave COMMAND [args]`: the command-line client. Global options (before the command):
 * --state-dir DIR and --run-dir DIR, or $WEAVE_STATE_DIR / $WEAVE_RUN_DIR, so several routers
 * can run on one machine (one per lab host).
 */
import { COMMANDS } from './commands'
import { CliFailure, createContext, type Command } from './context'

const DEFAULT_STATE_DIR = '/var/lib/weave'
const DEFAULT_RUN_DIR = '/run/weave'

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length))
  const lines = [...COMMANDS, { name: 'help', summary: 'show help for a command: weave help COMMAND' }].map(
    (c) => `  ${c.name.padEnd(width)}  ${c.summary}`,
  )
  return (
    'Usage: weave [--state-dir DIR] [--run-dir DIR] COMMAND [ARGS...]\n\n' +
    'A Weave-style overlay network for Docker hosts.\n\nCommands:\n' +
    lines.join('\n') +
    '\n'
  )
}

async function find(name: string): Promise<Command | undefined> {
  return COMMANDS.find((c) => c.name === name)?.load()
}

export async function run(argv: string[], env: Record<string, string | undefined>): Promise<number> {
  let stateDir = env.WEAVE_STATE_DIR || DEFAULT_STATE_DIR
  let runDir = env.WEAVE_RUN_DIR || DEFAULT_RUN_DIR
  const args = [...argv]
  while (args.length && args[0].startsWith('-')) {
    const flag = args.shift()!
    if (flag === '--help' || flag === '-h') {
      process.stdout.write(usage())
      return 0
    }
    if (flag === '--state-dir' || flag === '--run-dir') {
      const v = args.shift()
      if (!v) return fail(`${flag} needs a directory`, 2)
      if (flag === '--state-dir') stateDir = v
      else runDir = v
      continue
    }
    return fail(`unknown flag ${flag} (see weave --help)`, 2)
  }
  const name = args.shift()
  if (name === undefined) {
    process.stderr.write(usage())
    return 2
  }
  if (name === 'help') {
    const topic = args[0]
    if (!topic) {
      process.stdout.write(usage())
      return 0
    }
    const c = await find(topic)
    if (!c) return fail(`no such command "${topic}" (see weave --help)`, 2)
    process.stdout.write(c.usage)
    return 0
  }
  const command = await find(name)
  if (!command) return fail(`unknown command "${name}" (see weave --help)`, 2)
  if (args.includes('--help') || (args.includes('-h') && !command.dashHIsHostname)) {
    process.stdout.write(command.usage)
    return 0
  }
  const ctx = createContext({ runDir, stateDir, env: { ...env, WEAVE_STATE_DIR: stateDir, WEAVE_RUN_DIR: runDir } })
  try {
    return (await command.run(args, ctx)) ?? 0
  } catch (err) {
    if (err instanceof CliFailure) return fail(err.message, err.exitCode)
    return fail((err as Error).message, 1)
  }
}

function fail(message: string, code: number): number {
  process.stderr.write(`weave: ${message}\n`)
  return code
}

if (require.main === module) {
  void run(process.argv.slice(2), process.env).then((code) => {
    process.exitCode = code
  })
}
