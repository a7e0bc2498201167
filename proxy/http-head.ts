/**
 * Just enough HTTP/1.1 for a transparent proxy (pure): find and parse a message head, edit its
 * headers, write it back, and decode a chunked body. Bodies of passed-through calls are never
 * parsed: the proxy forwards their bytes as they come, which is what keeps streams, hijacked
 * connections and every API version working unchanged.
 */

/** A request or status line plus headers, in their original order and spelling. */
export interface HttpHead {
  startLine: string
  headers: Array<[string, string]>
}

export interface RequestLine { method: string; target: string; version: string }

const CRLFCRLF = Buffer.from('\r\n\r\n')

/** Offset just past the blank line ending the head, or -1 if the head is not complete yet. */
export function findHeadEnd(buf: Buffer): number {
  const i = buf.indexOf(CRLFCRLF)
  return i < 0 ? -1 : i + 4
}

/** Parse a head (without the final blank line or including it); undefined when malformed. */
export function parseHead(raw: Buffer | string): HttpHead | undefined {
  const text = typeof raw === 'string' ? raw : raw.toString('latin1')
  const lines = text.split('\r\n')
  while (lines.length && lines[lines.length - 1] === '') lines.pop()
  const startLine = lines.shift()
  if (!startLine) return undefined
  const headers: Array<[string, string]> = []
  for (const line of lines) {
    const colon = line.indexOf(':')
    if (colon <= 0) return undefined
    headers.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()])
  }
  return { startLine, headers }
}

export function parseRequestLine(line: string): RequestLine | undefined {
  const m = /^([A-Z]+) (\S+) (HTTP\/\d\.\d)$/.exec(line)
  return m ? { method: m[1], target: m[2], version: m[3] } : undefined
}

/** Status code of a response head's status line, or undefined. */
export function statusOf(head: HttpHead): number | undefined {
  const m = /^HTTP\/\d\.\d (\d{3})/.exec(head.startLine)
  return m ? Number(m[1]) : undefined
}

export function getHeader(head: HttpHead, name: string): string | undefined {
  const n = name.toLowerCase()
  return head.headers.find(([k]) => k.toLowerCase() === n)?.[1]
}

/** A copy with `name` replaced by one `value` (appended when absent), or removed when undefined. */
export function setHeader(head: HttpHead, name: string, value: string | undefined): HttpHead {
  const n = name.toLowerCase()
  const headers: Array<[string, string]> = []
  let placed = false
  for (const [k, v] of head.headers) {
    if (k.toLowerCase() !== n) headers.push([k, v])
    else if (!placed && value !== undefined) { headers.push([k, value]); placed = true }
  }
  if (!placed && value !== undefined) headers.push([name, value])
  return { startLine: head.startLine, headers }
}

export function serializeHead(head: HttpHead): Buffer {
  return Buffer.from(`${head.startLine}\r\n${head.headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`, 'latin1')
}

/**
 * The Connection header for a request forwarded upstream: its tokens plus `close`, so the engine
 * closes after one response. One request per upstream connection (as Weave's proxy did) means a
 * client can never slip a second request past the interceptors on a kept-alive connection.
 */
export function withConnectionClose(value: string | undefined): string {
  const tokens = (value ?? '').split(',').map((t) => t.trim()).filter((t) => t && t.toLowerCase() !== 'keep-alive')
  if (!tokens.some((t) => t.toLowerCase() === 'close')) tokens.push('close')
  return tokens.join(', ')
}

export type ChunkedResult =
  | { kind: 'done'; body: Buffer; consumed: number }
  | { kind: 'more' }
  | { kind: 'error'; reason: string }

/** Decode a complete chunked body at the start of `buf` (trailers are skipped). */
export function decodeChunked(buf: Buffer): ChunkedResult {
  const parts: Buffer[] = []
  let pos = 0
  for (;;) {
    const eol = buf.indexOf('\r\n', pos, 'latin1')
    if (eol < 0) return buf.length - pos > 1024 ? { kind: 'error', reason: 'chunk size line too long' } : { kind: 'more' }
    const sizeText = buf.toString('latin1', pos, eol).split(';')[0].trim()
    if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) return { kind: 'error', reason: `bad chunk size ${JSON.stringify(sizeText)}` }
    const size = parseInt(sizeText, 16)
    pos = eol + 2
    if (size === 0) {
      // Trailer section: header lines until an empty line.
      for (;;) {
        const end = buf.indexOf('\r\n', pos, 'latin1')
        if (end < 0) return { kind: 'more' }
        const empty = end === pos
        pos = end + 2
        if (empty) return { kind: 'done', body: Buffer.concat(parts), consumed: pos }
      }
    }
    if (buf.length < pos + size + 2) return { kind: 'more' }
    parts.push(buf.subarray(pos, pos + size))
    if (buf.toString('latin1', pos + size, pos + size + 2) !== '\r\n') return { kind: 'error', reason: 'chunk not followed by CRLF' }
    pos += size + 2
  }
}

/**
 * Split a complete response read until the engine closed: its head and decoded body
 * (chunked, Content-Length or close-delimited). Undefined when malformed or incomplete.
 */
export function splitResponse(answer: Buffer): { head: HttpHead; body: Buffer } | undefined {
  const end = findHeadEnd(answer)
  const head = end > 0 ? parseHead(answer.subarray(0, end)) : undefined
  if (!head) return undefined
  const rest = answer.subarray(end)
  if (/chunked/i.test(getHeader(head, 'Transfer-Encoding') ?? '')) {
    const r = decodeChunked(rest)
    return r.kind === 'done' ? { head, body: r.body } : undefined
  }
  const len = getHeader(head, 'Content-Length')
  if (len === undefined) return { head, body: rest }
  return rest.length >= Number(len) ? { head, body: rest.subarray(0, Number(len)) } : undefined
}

export type ResponseFrame =
  | { kind: 'more' }
  /** The response is the first `length` bytes; `close` when the engine said it closes after it. */
  | { kind: 'done'; length: number; close: boolean }
  /** Not a response a kept-alive connection can carry on after (upgrade, close-delimited, bad). */
  | { kind: 'unframed' }

/**
 * Where a complete response to a `method` request ends at the start of `buf`, for keeping the
 * connection alive after it (RFC 9112 §6.3): no body for HEAD, 1xx, 204 and 304; else chunked or
 * Content-Length framing. Anything else (101, close-delimited, malformed) is `unframed`.
 */
export function responseFrame(buf: Buffer, method: string): ResponseFrame {
  const end = findHeadEnd(buf)
  if (end < 0) return { kind: 'more' }
  const head = parseHead(buf.subarray(0, end))
  const status = head && statusOf(head)
  if (!head || status === undefined || status === 101) return { kind: 'unframed' }
  const close = /(^|,)\s*close\s*(,|$)/i.test(getHeader(head, 'Connection') ?? '')
  if (method === 'HEAD' || (status >= 100 && status < 200) || status === 204 || status === 304) return { kind: 'done', length: end, close }
  if (/chunked/i.test(getHeader(head, 'Transfer-Encoding') ?? '')) {
    const r = decodeChunked(buf.subarray(end))
    if (r.kind === 'error') return { kind: 'unframed' }
    return r.kind === 'more' ? { kind: 'more' } : { kind: 'done', length: end + r.consumed, close }
  }
  const cl = getHeader(head, 'Content-Length')
  if (cl === undefined || !/^\d+$/.test(cl)) return { kind: 'unframed' }
  const length = end + Number(cl)
  return buf.length >= length ? { kind: 'done', length, close } : { kind: 'more' }
}
