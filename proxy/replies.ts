/** Bodies and replies: reading a request body whole, and answering a client ourselves. */
import { STATUS_CODES } from 'node:http'
import type * as net from 'node:net'
import { decodeChunked, getHeader, setHeader, type HttpHead } from './http-head'

/** Go's engine allows 1 MiB; Docker clients send a few hundred bytes. */
export const MAX_HEAD = 64 * 1024
/** Create/start bodies are JSON of a few KiB; small framed answers are not much bigger. */
export const MAX_BODY = 16 * 1024 * 1024

/** Thrown to answer the client with a Docker-style error instead of forwarding. */
export class ProxyReply extends Error {
  constructor(readonly status: number, message: string) { super(message) }
}

/** Read a request body framed by Content-Length or chunked encoding; `rest` is what came with the head. */
export function readBody(client: net.Socket, head: HttpHead, rest: Buffer): Promise<Buffer> {
  const chunked = /chunked/i.test(getHeader(head, 'Transfer-Encoding') ?? '')
  const length = Number(getHeader(head, 'Content-Length') ?? 0)
  if (!chunked && !(length > 0)) return Promise.resolve(Buffer.alloc(0))
  if (!chunked && length > MAX_BODY) return Promise.reject(new ProxyReply(413, 'request body too large'))
  return new Promise((resolve, reject) => {
    let buf: Buffer = rest
    const check = (): boolean => {
      if (chunked) {
        const r = decodeChunked(buf)
        if (r.kind === 'error') { reject(new ProxyReply(400, `bad chunked body: ${r.reason}`)); return true }
        if (r.kind === 'done') { resolve(r.body); return true }
      } else if (buf.length >= length) { resolve(buf.subarray(0, length)); return true }
      if (buf.length > MAX_BODY + 1024) { reject(new ProxyReply(413, 'request body too large')); return true }
      return false
    }
    if (check()) return
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      if (check()) { client.off('data', onData); client.off('end', onEnd); client.pause() }
    }
    const onEnd = () => reject(new ProxyReply(400, 'request body ended early'))
    client.on('data', onData)
    client.once('end', onEnd)
    client.resume()
  })
}

/** Whether a request head announces a body (Content-Length above 0, or chunked). */
export function hasRequestBody(head: HttpHead): boolean {
  return /chunked/i.test(getHeader(head, 'Transfer-Encoding') ?? '') || Number(getHeader(head, 'Content-Length') ?? 0) > 0
}

/** The head for a body we re-framed: exact length, no chunking. */
export function withBody(head: HttpHead, body: Buffer): HttpHead {
  return setHeader(setHeader(head, 'Transfer-Encoding', undefined), 'Content-Length', String(body.length))
}

/** A Docker-style JSON error (`{"message": ...}`), then close. */
export function replyError(client: net.Socket, status: number, message: string): void {
  if (client.destroyed || client.writableEnded) return
  const body = Buffer.from(JSON.stringify({ message }) + '\n')
  const head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`
  finish(client, Buffer.concat([Buffer.from(head, 'latin1'), body]))
}

/** Send a whole answer and close; drain what the client still sends so its FIN frees the socket. */
export function finish(client: net.Socket, answer: Buffer): void {
  client.end(answer)
  client.resume()
}
