/**
 * The OVSDB client (RFC 7047 §4.1): list_dbs, get_schema, transact, monitor/monitor_cancel,
 * echo, over one JSON-RPC session. `connectOvsdb` is the socket edge; `createOvsdbClient` runs
 * the same client over any transport (tests use an in-memory one).
 */
import * as net from 'node:net'
import type { Clock, Logger } from '../deps'
import { OvsdbError } from './errors'
import { JsonRpcSession, type JsonRpcTransport } from './jsonrpc'
import type { OpResult, Operation } from './ops'
import type { Row } from './values'

/** One row's change in a monitor update: `old` absent on insert, `new` absent on delete (§4.1.6). */
export interface RowUpdate { old?: Row; new?: Row }
/** table → row UUID → change. */
export type TableUpdates = Record<string, Record<string, RowUpdate>>

/** What to monitor in one table; all columns and all kinds of change by default. */
export interface MonitorRequest {
  columns?: string[]
  select?: { initial?: boolean; insert?: boolean; delete?: boolean; modify?: boolean }
}

export interface Monitor {
  readonly id: string
  /** The table contents when the monitor started (not passed to `onUpdate`). */
  readonly initial: TableUpdates
  /** Stop the updates (`monitor_cancel`); a no-op once the connection is gone. */
  cancel(): Promise<void>
}

export interface OvsdbClient {
  /** Names of the databases the server holds. */
  listDbs(): Promise<string[]>
  getSchema(db: string): Promise<unknown>
  /**
   * Run `ops` as one transaction. Resolves with one result per op; rejects with OvsdbError
   * whose `code` is the server's `error` (and `opIndex` the failing op) when any op or the
   * commit fails, in which case nothing was changed.
   */
  transact(db: string, ops: Operation[]): Promise<OpResult[]>
  /** Start a monitor; `onUpdate` gets every later change of the selected tables. */
  monitor(db: string, tables: string[] | Record<string, MonitorRequest>, onUpdate: (u: TableUpdates) => void): Promise<Monitor>
  /** Round trip to the server. */
  echo(...args: unknown[]): Promise<unknown>
  /** Close the connection; pending calls reject with code `closed`. */
  close(): void
  readonly isOpen: boolean
  /** Resolves (never rejects) with the reason once the connection has ended. */
  readonly closed: Promise<OvsdbError>
}

export interface OvsdbClientOptions {
  logger?: Logger
  /** With `callTimeoutMs`: every call rejects with code `timeout` after that long. */
  clock?: Clock
  callTimeoutMs?: number
  maxMessageBytes?: number
}

/** A client over `transport`; the caller feeds it the transport's bytes and its end. */
export interface OvsdbConnection extends OvsdbClient {
  receive(chunk: Uint8Array): void
  transportClosed(err?: Error): void
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** Check a transact result (§4.1.3): an `error` in any slot fails the whole transaction. */
export function checkTransactResult(ops: Operation[], result: unknown): OpResult[] {
  if (!Array.isArray(result)) throw new OvsdbError('protocol', `transact result is not an array: ${JSON.stringify(result)?.slice(0, 200)}`)
  for (let i = 0; i < result.length; i++) {
    const r: unknown = result[i]
    if (isObject(r) && typeof r.error === 'string') {
      const details = typeof r.details === 'string' ? r.details : undefined
      // an error past the last op is the commit's own failure (e.g. a constraint checked at commit)
      throw new OvsdbError(r.error, details, i < ops.length ? i : undefined)
    }
  }
  if (result.length < ops.length) throw new OvsdbError('protocol', `transact returned ${result.length} results for ${ops.length} ops`)
  return result.slice(0, ops.length).map((r) => (isObject(r) ? (r as OpResult) : {}))
}

export function createOvsdbClient(transport: JsonRpcTransport, opts: OvsdbClientOptions = {}): OvsdbConnection {
  const monitors = new Map<string, (u: TableUpdates) => void>()
  let monitorSeq = 0
  let resolveClosed!: (e: OvsdbError) => void
  const closed = new Promise<OvsdbError>((r) => { resolveClosed = r })
  const log = opts.logger

  const session = new JsonRpcSession(transport, {
    maxMessageBytes: opts.maxMessageBytes,
    clock: opts.clock,
    callTimeoutMs: opts.callTimeoutMs,
    logger: log,
    onNotification(method, params) {
      if (method !== 'update') { log?.debug(`ignoring ovsdb notification ${method}`); return }
      const [id, updates] = params
      const fn = typeof id === 'string' ? monitors.get(id) : undefined
      if (fn && isObject(updates)) fn(updates as TableUpdates)
    },
    onClose(err) { monitors.clear(); resolveClosed(err) },
  })

  const client: OvsdbConnection = {
    get isOpen() { return session.isOpen },
    closed,
    receive: (chunk) => session.receive(chunk),
    transportClosed: (err) => session.transportClosed(err),
    close: () => session.close(),
    echo: (...args) => session.call('echo', args),
    getSchema: (db) => session.call('get_schema', [db]),
    async listDbs() {
      const r = await session.call('list_dbs', [])
      if (!Array.isArray(r) || !r.every((x) => typeof x === 'string')) throw new OvsdbError('protocol', 'list_dbs result is not an array of names')
      return r
    },
    async transact(db, ops) {
      return checkTransactResult(ops, await session.call('transact', [db, ...ops]))
    },
    async monitor(db, tables, onUpdate) {
      const id = `m${++monitorSeq}`
      const requests = Array.isArray(tables) ? Object.fromEntries(tables.map((t) => [t, {}])) : tables
      // registered before the request: the server may send an update right after its reply
      monitors.set(id, onUpdate)
      let initial: unknown
      try {
        initial = await session.call('monitor', [db, id, requests])
      } catch (err) {
        monitors.delete(id)
        throw err
      }
      return {
        id,
        initial: (isObject(initial) ? initial : {}) as TableUpdates,
        async cancel() {
          if (!monitors.delete(id) || !session.isOpen) return
          await session.call('monitor_cancel', [id])
        },
      }
    },
  }
  return client
}

/** Parse `unix:/path` or `tcp:host:port` (`tcp:[v6addr]:port`) into socket options. */
export function parseOvsdbTarget(target: string): net.NetConnectOpts {
  if (target.startsWith('unix:')) {
    const p = target.slice(5)
    if (!p) throw new TypeError(`empty socket path in ${target}`)
    return { path: p }
  }
  const m = /^tcp:(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(target)
  if (m) {
    const port = Number(m[3])
    if (port < 1 || port > 65535) throw new TypeError(`bad port in ${target}`)
    return { host: m[1] ?? m[2], port }
  }
  throw new TypeError(`OVSDB target must be unix:PATH or tcp:HOST:PORT, not ${target}`)
}

/** Connect to an ovsdb-server; rejects with OvsdbError `connect-failed` when it cannot. */
export function connectOvsdb(target: string, opts: OvsdbClientOptions = {}): Promise<OvsdbClient> {
  const sockOpts = parseOvsdbTarget(target)
  return new Promise((resolve, reject) => {
    const sock = net.connect(sockOpts)
    const onConnectError = (err: Error) => {
      reject(new OvsdbError('connect-failed', `${target}: ${err.message}`, undefined, { cause: err }))
    }
    sock.once('error', onConnectError)
    sock.once('connect', () => {
      sock.off('error', onConnectError)
      sock.setNoDelay?.(true)
      const client = createOvsdbClient({
        write: (text) => { sock.write(text) },
        close: () => { sock.destroy() },
      }, opts)
      let lastError: Error | undefined
      sock.on('data', (chunk: Buffer) => client.receive(chunk))
      sock.on('error', (err) => { lastError = err })
      sock.on('close', () => client.transportClosed(lastError))
      resolve(client)
    })
  })
}
