/**
 * One JSON request to the router's control API over its unix socket. Hand-written HTTP/1.1 on a
 * plain `net` socket: `node:http` would cost the plugin's every start a few more milliseconds of
 * module loading, and a request with `Connection: close` needs nothing of it.
 */
import * as net from 'node:net'

export interface RouterAnswer {
  status: number
  body: string
}

/** Why the router could not be reached at all (not running, socket missing, connect timed out). */
export class RouterUnreachable extends Error {
  constructor(readonly socketPath: string, readonly reason: string) {
    super(`weave router not running? cannot connect to ${socketPath}: ${reason}`)
    this.name = 'RouterUnreachable'
  }
}

export interface CallOptions {
  /** A router that does not accept within this long counts as not running (default 5 s). */
  connectTimeoutMs?: number
  /** The whole answer (an address may wait for IPAM; default 90 s). */
  timeoutMs?: number
}

export function callRouter(socketPath: string, path: string, body: unknown, opts: CallOptions = {}): Promise<RouterAnswer> {
  const payload = Buffer.from(JSON.stringify(body))
  const head =
    `POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${payload.length}\r\nConnection: close\r\n\r\n`
  return new Promise((resolve, reject) => {
    let connected = false
    const chunks: Buffer[] = []
    const sock = net.connect(socketPath)
    const connectTimer = setTimeout(() => {
      sock.destroy()
      reject(new RouterUnreachable(socketPath, `no answer to connect within ${(opts.connectTimeoutMs ?? 5000) / 1000} s`))
    }, opts.connectTimeoutMs ?? 5000)
    let answerTimer: NodeJS.Timeout | undefined
    sock.on('connect', () => {
      connected = true
      clearTimeout(connectTimer)
      answerTimer = setTimeout(() => {
        sock.destroy()
        reject(new Error(`the router at ${socketPath} did not answer ${path} within ${(opts.timeoutMs ?? 90_000) / 1000} s`))
      }, opts.timeoutMs ?? 90_000)
      // not end(): a half-closed request makes node's HTTP server drop the connection unanswered; it closes after answering (Connection: close)
      sock.write(Buffer.concat([Buffer.from(head), payload]))
    })
    sock.on('data', (d: Buffer) => chunks.push(d))
    sock.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(connectTimer)
      clearTimeout(answerTimer)
      reject(connected ? new Error(`talking to the router at ${socketPath}: ${err.message}`) : new RouterUnreachable(socketPath, err.code ?? err.message))
    })
    sock.on('end', () => {
      clearTimeout(answerTimer)
      try {
        resolve(parseResponse(Buffer.concat(chunks)))
      } catch (err) {
        reject(new Error(`bad answer from the router at ${socketPath}: ${(err as Error).message}`))
      }
    })
  })
}

/** Status and body of an HTTP/1.1 response read to the end (Content-Length or chunked). */
export function parseResponse(raw: Buffer): RouterAnswer {
  const sep = raw.indexOf('\r\n\r\n')
  if (sep < 0) throw new Error('no complete header')
  const head = raw.subarray(0, sep).toString('latin1').split('\r\n')
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head[0])
  if (!m) throw new Error(`not an HTTP status line: ${JSON.stringify(head[0].slice(0, 60))}`)
  const headers = new Map(head.slice(1).map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]))
  let body = raw.subarray(sep + 4)
  if (/chunked/i.test(headers.get('transfer-encoding') ?? '')) body = dechunk(body)
  else if (headers.has('content-length')) body = body.subarray(0, Number(headers.get('content-length')))
  return { status: Number(m[1]), body: body.toString('utf8') }
}

function dechunk(b: Buffer): Buffer {
  const out: Buffer[] = []
  let i = 0
  for (;;) {
    const eol = b.indexOf('\r\n', i)
    if (eol < 0) throw new Error('truncated chunked body')
    const size = parseInt(b.subarray(i, eol).toString('latin1'), 16)
    if (!Number.isFinite(size)) throw new Error('bad chunk size')
    if (size === 0) return Buffer.concat(out)
    out.push(b.subarray(eol + 2, eol + 2 + size))
    i = eol + 2 + size + 2
  }
}
