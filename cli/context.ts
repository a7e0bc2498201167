/**
 * What every `weave` subcommand gets: where the daemon lives, a client for its API, and output.
 * The CLI is the one place that reads the environment (besides the daemon's entry).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

export interface ApiAnswer {
  status: number
  body: string
}

export interface CliContext {
  readonly runDir: string
  readonly stateDir: string
  readonly env: Readonly<Record<string, string | undefined>>
  /** Call the running daemon's API over its unix socket; throws CliFailure when it is not running. */
  api(method: string, path: string, body?: string): Promise<ApiAnswer>
  out(text: string): void
  err(text: string): void
}

export interface Command {
  name: string
  usage: string
  /** `-h FQDN` names a host (dns-add, dns-remove, expose, as Weave), so only --help asks for help. */
  dashHIsHostname?: boolean
  /** Returns the exit code (0 when omitted). */
  run(args: string[], ctx: CliContext): Promise<number | void>
}

/** A failure to report as `weave: <message>` with an exit code. */
export class CliFailure extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message)
  }
}

export const NOT_RUNNING = 'the weave router is not running (start it with: weave launch)'

export function createContext(opts: { runDir: string; stateDir: string; env: Record<string, string | undefined> }): CliContext {
  const socketPath = path.join(opts.runDir, 'api.sock')
  return {
    runDir: opts.runDir,
    stateDir: opts.stateDir,
    env: opts.env,
    api: (method, p, body) => callApi(socketPath, method, p, body),
    out: (t) => process.stdout.write(t.endsWith('\n') || t === '' ? t : t + '\n'),
    err: (t) => process.stderr.write(t.endsWith('\n') ? t : t + '\n'),
  }
}

/** One HTTP request over the daemon's unix socket. */
export async function callApi(socketPath: string, method: string, p: string, body?: string, timeoutMs = 30_000): Promise<ApiAnswer> {
  // No socket, no router: say so without loading the HTTP client (`weave version` stays fast).
  if (!fs.existsSync(socketPath)) throw new CliFailure(NOT_RUNNING)
  const http = await import('node:http')
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath, method, path: p, headers: apiHeaders(method, body) },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }))
        res.on('error', reject)
      },
    )
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`the weave router did not answer ${method} ${p} within ${timeoutMs / 1000} s`)))
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') reject(new CliFailure(NOT_RUNNING))
      else reject(err)
    })
    req.end(body)
  })
}

/**
 * Every write says `Content-Type: application/json`, with a body or not: the daemon refuses writes
 * without a non-simple content type on its TCP address (what a web page could send), and the CLI
 * sends the same on every socket so one client works against either.
 */
export function apiHeaders(method: string, body?: string): Record<string, string | number> {
  const m = method.toUpperCase()
  const h: Record<string, string | number> = {}
  if (m !== 'GET' && m !== 'HEAD') h['content-type'] = 'application/json'
  if (body !== undefined) h['content-length'] = Buffer.byteLength(body)
  return h
}

/** Turn a non-2xx answer into a failure carrying the daemon's message. */
export function expectOk(a: ApiAnswer, what: string): string {
  if (a.status >= 200 && a.status < 300) return a.body
  throw new CliFailure(`${what}: ${a.body.trim() || `HTTP ${a.status}`}`)
}

/** Refuse flags a command does not know; returns the positional arguments. */
export function positionalOnly(args: string[], command: string, known: string[] = []): string[] {
  for (const a of args) {
    if (a.startsWith('-') && !known.includes(a)) throw new CliFailure(`unknown flag ${a} for "weave ${command}" (see weave help ${command})`)
  }
  return args.filter((a) => !a.startsWith('-'))
}
