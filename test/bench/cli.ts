/**
 * `npm run bench -- cli [RUNS]`: how long the `weave` command takes for what users type most
 * often without a router (`weave version`, `weave --help`), against a bare `node -e 0` in the
 * same run (Node's own start-up, the floor). Medians over RUNS runs (default 21) of the real
 * `./weave` script, no router running (a fresh run dir). Target: under 80 ms.
 * Last line: one JSON object.
 */
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

const RUNS = Number(process.argv[2] ?? 21)
const WEAVE = path.join(__dirname, '..', '..', '..', 'weave')

function medianMs(argv: string[], env: NodeJS.ProcessEnv): { p50: number; min: number; max: number } {
  const times: number[] = []
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now()
    const r = spawnSync(argv[0], argv.slice(1), { env, stdio: 'ignore' })
    times.push(performance.now() - t0)
    if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}`)
  }
  times.sort((a, b) => a - b)
  const round = (x: number) => Math.round(x * 10) / 10
  return { p50: round(times[Math.floor(times.length / 2)]), min: round(times[0]), max: round(times[times.length - 1]) }
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-cli-bench-'))
try {
  const env: NodeJS.ProcessEnv = { ...process.env, WEAVE_RUN_DIR: path.join(dir, 'run'), WEAVE_STATE_DIR: path.join(dir, 'state') }
  const bare = { ...env }
  delete bare.NODE_EXTRA_CA_CERTS // as the weave script runs node
  const node = medianMs([process.execPath, '-e', '0'], bare)
  const version = medianMs([WEAVE, 'version'], env)
  const help = medianMs([WEAVE, '--help'], env)
  console.log(`node -e 0 ${JSON.stringify(node)}\nweave version ${JSON.stringify(version)}\nweave --help ${JSON.stringify(help)}`)
  console.log(JSON.stringify({
    bench: 'cli', runs: RUNS, node_ms_p50: node.p50, version_ms_p50: version.p50, help_ms_p50: help.p50,
    version_over_node_ms: Math.round((version.p50 - node.p50) * 10) / 10, target_ms: 80,
  }))
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
}
