/**
 * Length-prefixed frames on the mesh's TCP stream.
 *
 * Wire form: a 4-byte big-endian body length, then the body. Bodies are capped at
 * MAX_FRAME_BYTES (10 MiB, as Weave's mesh), so a peer announcing a huge length is refused as
 * soon as the prefix arrives instead of making us buffer it.
 *
 * The decoder is incremental (feed it whatever the socket hands over) and never throws on peer
 * bytes: bad input is a value, `{ ok: false, reason }`, after which the decoder stays failed.
 */

/** Largest frame body we send or accept. */
export const MAX_FRAME_BYTES = 10 * 1024 * 1024
/** Bytes of the length prefix. */
export const FRAME_HEADER_BYTES = 4

export type FrameFailure = 'too-large' | 'empty-frame'

export type FrameResult =
  | { ok: true; frames: Uint8Array[] }
  | { ok: false; reason: FrameFailure; detail: string }

/** One frame: length prefix + body. Throws only on API misuse (a body over the cap). */
export function encodeFrame(body: Uint8Array): Uint8Array {
  if (body.length > MAX_FRAME_BYTES) throw new RangeError(`frame body of ${body.length} bytes exceeds ${MAX_FRAME_BYTES}`)
  const out = new Uint8Array(FRAME_HEADER_BYTES + body.length)
  new DataView(out.buffer).setUint32(0, body.length, false)
  out.set(body, FRAME_HEADER_BYTES)
  return out
}

/**
 * Incremental frame decoder. `push(chunk)` returns every frame completed by the chunk.
 * Chunks are kept as a list and joined only when a frame completes, so a large frame arriving in
 * many small chunks costs one copy, not one per chunk.
 */
export class FrameDecoder {
  private chunks: Uint8Array[] = []
  private buffered = 0
  private failure: { reason: FrameFailure; detail: string } | undefined

  constructor(private readonly maxBytes = MAX_FRAME_BYTES) {}

  /** Bytes received but not yet part of a returned frame. */
  get pendingBytes(): number { return this.buffered }

  push(chunk: Uint8Array): FrameResult {
    if (this.failure) return { ok: false, ...this.failure }
    if (chunk.length > 0) { this.chunks.push(chunk); this.buffered += chunk.length }
    const frames: Uint8Array[] = []
    for (;;) {
      if (this.buffered < FRAME_HEADER_BYTES) break
      const len = this.peekLength()
      if (len > this.maxBytes) {
        this.failure = { reason: 'too-large', detail: `frame of ${len} bytes exceeds the ${this.maxBytes}-byte cap` }
        this.chunks = []; this.buffered = 0
        return { ok: false, ...this.failure }
      }
      if (len === 0) {
        this.failure = { reason: 'empty-frame', detail: 'zero-length frame' }
        this.chunks = []; this.buffered = 0
        return { ok: false, ...this.failure }
      }
      if (this.buffered < FRAME_HEADER_BYTES + len) break
      this.take(FRAME_HEADER_BYTES)
      frames.push(this.take(len))
    }
    return { ok: true, frames }
  }

  /** Everything buffered and not yet framed; empties the decoder (used when a handshake hands over). */
  drain(): Uint8Array {
    return this.take(this.buffered)
  }

  private peekLength(): number {
    const c0 = this.chunks[0]
    if (c0.length >= FRAME_HEADER_BYTES) return ((c0[0] << 24) | (c0[1] << 16) | (c0[2] << 8) | c0[3]) >>> 0
    const head = new Uint8Array(FRAME_HEADER_BYTES)
    let got = 0
    for (const c of this.chunks) {
      const n = Math.min(c.length, FRAME_HEADER_BYTES - got)
      head.set(c.subarray(0, n), got)
      got += n
      if (got === FRAME_HEADER_BYTES) break
    }
    return new DataView(head.buffer).getUint32(0, false)
  }

  /** Remove and return the first `n` buffered bytes (n <= buffered). */
  private take(n: number): Uint8Array {
    const first = this.chunks[0]
    if (first && first.length >= n) {
      // Common case: the bytes sit in one chunk; slice without copying.
      const out = first.subarray(0, n)
      if (first.length === n) this.chunks.shift()
      else this.chunks[0] = first.subarray(n)
      this.buffered -= n
      return out
    }
    const out = new Uint8Array(n)
    let got = 0
    while (got < n) {
      const c = this.chunks[0]
      const k = Math.min(c.length, n - got)
      out.set(c.subarray(0, k), got)
      got += k
      if (k === c.length) this.chunks.shift()
      else this.chunks[0] = c.subarray(k)
    }
    this.buffered -= n
    return out
  }
}
