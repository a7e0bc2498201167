/**
 * JSON-RPC 1.0 as OVSDB speaks it (RFC 7047 §4): JSON objects sent back to back on a stream with
 * no delimiter or length prefix. The parser finds message boundaries by counting brackets outside
 * strings, so it must track string and escape state across chunk boundaries; it works on bytes,
 * since every byte of a multi-byte UTF-8 sequence is ≥ 0x80 and can never look like `"`, `\`,
 * `{`, `}`, `[` or `]`.
 */
import type { Clock, Logger } from '../deps'
import { JsonRpcFramingError, OvsdbError } from './errors'

/** Default cap on one message; a full monitor dump of a big Open_vSwitch db stays far below. */
export const DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024
/** Nesting deeper than any OVSDB value needs (a map of sets is 4 deep in a 6-deep message). */
export const DEFAULT_MAX_DEPTH = 128

const QUOTE = 0x22, BACKSLASH = 0x5c
const OPEN_BRACE = 0x7b, CLOSE_BRACE = 0x7d, OPEN_BRACKET = 0x5b, CLOSE_BRACKET = 0x5d

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09
}

export interface ParseResult {
  /** Every complete value found, in order. */
  values: unknown[]
  /** Set once the stream is broken; values before the break are still in `values`. */
  error?: JsonRpcFramingError
}

/**
 * Incremental splitter + parser for a stream of concatenated JSON values (objects or arrays).
 * Bad input is returned as a value; after the first error the parser stays failed.
 */
export class JsonStreamParser {
  private parts: Uint8Array[] = []
  private inMessage = false
  private depth = 0
  private inString = false
  private escaped = false
  private size = 0
  private failure: JsonRpcFramingError | undefined

  constructor(private readonly maxBytes = DEFAULT_MAX_MESSAGE_BYTES, private readonly maxDepth = DEFAULT_MAX_DEPTH) {}

  /** Bytes of a message received but not yet complete. */
  get buffered(): number { return this.inMessage ? this.size : 0 }

  push(chunk: Uint8Array): ParseResult {
    const values: unknown[] = []
    if (this.failure) return { values, error: this.failure }
    let start = 0
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]
      if (!this.inMessage) {
        if (isSpace(b)) continue
        if (b !== OPEN_BRACE && b !== OPEN_BRACKET) {
          return this.fail(values, 'garbage', `unexpected byte 0x${b.toString(16).padStart(2, '0')} between messages`)
        }
        this.inMessage = true
        this.depth = 0
        this.size = 0
        start = i
      }
      if (++this.size > this.maxBytes) return this.fail(values, 'too-large', `message exceeds ${this.maxBytes} bytes`)
      if (this.inString) {
        if (this.escaped) this.escaped = false
        else if (b === BACKSLASH) this.escaped = true
        else if (b === QUOTE) this.inString = false
        continue
      }
      if (b === QUOTE) this.inString = true
      else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
        if (++this.depth > this.maxDepth) return this.fail(values, 'too-deep', `nesting deeper than ${this.maxDepth}`)
      } else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) {
        if (--this.depth === 0) {
          this.parts.push(chunk.subarray(start, i + 1))
          const text = Buffer.concat(this.parts).toString('utf8')
          this.parts = []
          this.inMessage = false
          try {
            values.push(JSON.parse(text))
          } catch (err) {
            return this.fail(values, 'bad-json', (err as Error).message)
          }
        }
      }
    }
    // keep a copy: the caller may reuse its buffer
    if (this.inMessage) this.parts.push(Uint8Array.prototype.slice.call(chunk, start))
    return { values }
  }

  private fail(values: unknown[], reason: JsonRpcFramingError['reason'], detail: string): ParseResult {
    this.failure = new JsonRpcFramingError(reason, detail)
    this.parts = []
    return { values, error: this.failure }
  }
}

export type RpcId = string | number
export type RpcMessage =
  | { kind: 'request'; method: string; params: unknown[]; id: RpcId }
  | { kind: 'notification'; method: string; params: unknown[] }
  | { kind: 'response'; id: RpcId | null; result: unknown; error: unknown }

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** Classify one parsed value (JSON-RPC 1.0); anything else is `undefined`, a protocol error. */
export function classifyMessage(v: unknown): RpcMessage | undefined {
  if (!isObject(v)) return undefined
  if (typeof v.method === 'string') {
    const params = Array.isArray(v.params) ? v.params : v.params === undefined ? [] : undefined
    if (!params) return undefined
    if (v.id === null || v.id === undefined) return { kind: 'notification', method: v.method, params }
    if (typeof v.id !== 'string' && typeof v.id !== 'number') return undefined
    return { kind: 'request', method: v.method, params, id: v.id }
  }
  if (!('result' in v) && !('error' in v)) return undefined
  if (v.id !== null && typeof v.id !== 'string' && typeof v.id !== 'number') return undefined
  return { kind: 'response', id: v.id, result: v.result ?? null, error: v.error ?? null }
}

/** Turn a response's non-null `error` into an OvsdbError (`{error, details}` or a bare string). */
export function rpcError(error: unknown): OvsdbError {
  if (typeof error === 'string') return new OvsdbError(error)
  if (isObject(error) && typeof error.error === 'string') {
    return new OvsdbError(error.error, typeof error.details === 'string' ? error.details : undefined)
  }
  return new OvsdbError('error', JSON.stringify(error))
}

/** The byte stream under a session; the session is told about data and closure separately. */
export interface JsonRpcTransport {
  write(text: string): void
  close(): void
}

export interface JsonRpcSessionOptions {
  maxMessageBytes?: number
  /** Reject a call with `timeout` after this long (needs `clock`); default: wait forever. */
  callTimeoutMs?: number
  clock?: Clock
  logger?: Logger
  /** Server-to-client notifications (`update`, `locked`, `stolen`). */
  onNotification?: (method: string, params: unknown[]) => void
  /** Called once when the session ends, with the reason. */
  onClose?: (err: OvsdbError) => void
}

interface Pending {
  method: string
  resolve: (v: unknown) => void
  reject: (e: unknown) => void
  cancelTimer?: () => void
}

/**
 * One JSON-RPC conversation: ids and pending calls, `echo` answered (the server's keepalive,
 * RFC 7047 §4.1.11), notifications dispatched. Feed it bytes with `receive`, tell it the stream
 * ended with `transportClosed`; every pending call is rejected when it ends.
 */
export class JsonRpcSession {
  private readonly parser: JsonStreamParser
  private readonly pending = new Map<RpcId, Pending>()
  private nextId = 1
  private ended: OvsdbError | undefined

  constructor(private readonly transport: JsonRpcTransport, private readonly opts: JsonRpcSessionOptions = {}) {
    this.parser = new JsonStreamParser(opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES)
  }

  get isOpen(): boolean { return !this.ended }
  get pendingCalls(): number { return this.pending.size }

  /** Send a request; resolves with `result`, rejects with OvsdbError on `error` or a lost session. */
  call(method: string, params: unknown[]): Promise<unknown> {
    if (this.ended) return Promise.reject(this.ended)
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      const p: Pending = { method, resolve, reject }
      const { clock, callTimeoutMs } = this.opts
      if (clock && callTimeoutMs !== undefined) {
        p.cancelTimer = clock.setTimer(callTimeoutMs, () => {
          if (this.pending.delete(id)) reject(new OvsdbError('timeout', `${method} got no answer within ${callTimeoutMs} ms`))
        })
      }
      this.pending.set(id, p)
      this.send({ method, params, id })
    })
  }

  /** Send a notification (no answer expected). */
  notify(method: string, params: unknown[]): void {
    if (!this.ended) this.send({ method, params, id: null })
  }

  /** Bytes from the transport. */
  receive(chunk: Uint8Array): void {
    if (this.ended) return
    const { values, error } = this.parser.push(chunk)
    for (const v of values) {
      if (this.ended) return
      this.dispatch(v)
    }
    if (error) this.end(new OvsdbError('protocol', error.message, undefined, { cause: error }), true)
  }

  /** The transport is gone (peer closed, socket error). */
  transportClosed(err?: Error): void {
    this.end(new OvsdbError('connection-lost', err?.message ?? 'connection closed by the server', undefined, { cause: err }), false)
  }

  /** End the session from our side; pending calls are rejected with `closed`. */
  close(): void {
    this.end(new OvsdbError('closed', 'connection closed by the client'), true)
  }

  private dispatch(v: unknown): void {
    const m = classifyMessage(v)
    if (!m) {
      this.end(new OvsdbError('protocol', `not a JSON-RPC message: ${JSON.stringify(v).slice(0, 200)}`), true)
      return
    }
    switch (m.kind) {
      case 'response': return this.handleResponse(m)
      case 'request': return this.handleRequest(m)
      case 'notification': return this.opts.onNotification?.(m.method, m.params)
    }
  }

  private handleResponse(m: Extract<RpcMessage, { kind: 'response' }>): void {
    const p = m.id === null ? undefined : this.pending.get(m.id)
    if (!p || m.id === null) {
      this.opts.logger?.debug(`response to unknown request id ${JSON.stringify(m.id)}`)
      return
    }
    this.pending.delete(m.id)
    p.cancelTimer?.()
    if (m.error !== null) p.reject(rpcError(m.error))
    else p.resolve(m.result)
  }

  private handleRequest(m: Extract<RpcMessage, { kind: 'request' }>): void {
    if (m.method === 'echo') {
      this.send({ result: m.params, error: null, id: m.id })
      return
    }
    // JSON-RPC 1.0 wants an answer to every request, even one we do not serve
    this.send({ result: null, error: { error: 'unknown method', details: m.method }, id: m.id })
  }

  private send(msg: object): void {
    try {
      this.transport.write(JSON.stringify(msg))
    } catch (err) {
      this.transportClosed(err as Error)
    }
  }

  private end(err: OvsdbError, closeTransport: boolean): void {
    if (this.ended) return
    this.ended = err
    if (err.code !== 'closed') this.opts.logger?.warn(`ovsdb session ended: ${err.message}`)
    const calls = [...this.pending.values()]
    this.pending.clear()
    for (const p of calls) { p.cancelTimer?.(); p.reject(err) }
    if (closeTransport) { try { this.transport.close() } catch { /* already gone */ } }
    this.opts.onClose?.(err)
  }
}
