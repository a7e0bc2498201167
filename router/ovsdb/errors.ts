/**
 * Errors of the OVSDB client. Callers branch on `code`, never on the message.
 */

/**
 * An error the database reported (RFC 7047 §3.1: `{"error": <string>, "details": <string>}`),
 * either for one operation of a transaction (`opIndex` set) or for a whole request, or a
 * failure of the connection itself (`connection-lost`, `closed`, `timeout`, `protocol`).
 */
export class OvsdbError extends Error {
  override readonly name = 'OvsdbError'
  constructor(
    /** The server's `error` string (`constraint violation`, `timed out`, …) or one of ours. */
    readonly code: string,
    /** The server's `details`, when it gave any. */
    readonly details?: string,
    /** Index of the failing operation within `transact`'s ops. */
    readonly opIndex?: number,
    options?: { cause?: unknown },
  ) {
    super(details ? `${code}: ${details}` : code, options)
  }
}

/** Why a byte stream could not be read as JSON-RPC messages. */
export type FramingReason = 'too-large' | 'too-deep' | 'garbage' | 'bad-json' | 'bad-message'

/** Untrusted input that broke the framing; the connection cannot continue after it. */
export class JsonRpcFramingError extends Error {
  override readonly name = 'JsonRpcFramingError'
  constructor(readonly reason: FramingReason, detail: string) {
    super(`${reason}: ${detail}`)
  }
}
