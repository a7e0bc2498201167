/**
 * Loading the native addon (weave_native.c and its units) and its raw surface. Loading is lazy:
 * importing this file does no I/O; `nativeStatus()` tells a data-plane factory whether the addon
 * works here and, if not, why.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

export type Handle = { readonly __brand: 'NativeSocket' }

/** The raw addon surface; each function's contract is above its C function (weave_native.c lists the units). */
export interface Addon {
  MAX_BATCH: number
  packetOpen(ifname: string, netns: string | null, bufBytes: number, flags?: number, ethertype?: number): Handle
  udpOpen(addr: string, port: number, netns: string | null, bufBytes: number, flags: number): Handle
  localPort(h: Handle): number
  features(h: Handle): number
  recvBatch(h: Handle, buf: Buffer, slotSize: number, max: number, offs: Uint32Array, lens: Int32Array, addrs: Uint32Array | null, ports: Uint16Array | null): number
  sendBatch(h: Handle, bufs: readonly Uint8Array[], addrs: Uint32Array | null, ports: Uint16Array | null, status: Int32Array, vnet?: Uint8Array | null, segs?: Uint16Array | null): number
  sendPieces(h: Handle, addr: number, port: number, head: Uint8Array, id: number, parts: readonly Uint8Array[], room: number): number
  collectPieces(buf: Buffer, offs: Uint32Array, lens: Int32Array, addrs: Uint32Array, ports: Uint16Array, start: number, end: number, state: Uint32Array, dest: Buffer | null,
    aead?: AeadContext, dir?: number): number
  injectPieces?(h: Handle, buf: Buffer, offs: Uint32Array, lens: Int32Array, start: number, count: number, skip: number, vnet: Uint8Array): number
  pollStart(h: Handle, events: number, fn: (status: number, events: number) => void): void
  pollStop(h: Handle): void
  close(h: Handle): void
  fd(h: Handle): number
  pathMtu(h: Handle, addr: number, port: number): number
  aeadAvailable(): boolean
  aeadSeal(key: Uint8Array, dir: number, seq: number, buf: Uint8Array, adLen: number): void
  aeadOpen(key: Uint8Array, dir: number, seq: number, buf: Uint8Array, adLen: number): boolean
  aeadCiphers?(): number
  aeadContext?(alg: number, key: Uint8Array, sodiumOnly?: boolean): AeadContext
  aeadCtxSeal?(ctx: AeadContext, dir: number, seq: number, buf: Uint8Array, adLen: number): void
  aeadCtxOpen?(ctx: AeadContext, dir: number, seq: number, buf: Uint8Array, adLen: number): boolean
  aeadCtxSealv?(ctx: AeadContext, dir: number, seq: number, out: Uint8Array, adLen: number, parts: readonly Uint8Array[]): void
  aeadCtxPiece?(ctx: AeadContext, dir: number, dest: Uint8Array, src: Uint8Array, off: number, total: number): boolean
  aeadCtxPiecesDone?(ctx: AeadContext, buf: Uint8Array): boolean
}
/** A native AEAD key (opaque); UdpSocket.collectPieces can open pieces with it. */
export type AeadContext = { readonly __brand: 'AeadContext' }

/** Thrown when the addon was not built or cannot load; `code` is stable for callers. */
export class NativeUnavailableError extends Error {
  readonly code = 'ERR_NATIVE_UNAVAILABLE'
  constructor(message: string, options?: { cause?: unknown }) { super(message, options) }
}

const candidates = [
  // from dist/router/native/index.js (the compiled tree) back to the source tree's build output
  path.join(__dirname, '..', '..', '..', 'router', 'native', 'build', 'weave_native.node'),
  path.join(__dirname, 'build', 'weave_native.node'),
]

let loaded: Addon | undefined
let loadError: NativeUnavailableError | undefined

export function addon(): Addon {
  if (loaded) return loaded
  if (loadError) throw loadError
  const file = candidates.find((f) => fs.existsSync(f))
  if (!file) {
    loadError = new NativeUnavailableError(`native module not built (looked for ${candidates.join(', ')}); run: node scripts/build-native.js`)
    throw loadError
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- a native addon is loaded by path, at run time
    loaded = require(file) as Addon
    return loaded
  } catch (err) {
    loadError = new NativeUnavailableError(`native module ${file} failed to load: ${(err as Error).message}`, { cause: err })
    throw loadError
  }
}

/** Whether the addon loads here; a data plane that needs it refuses with `reason` otherwise. */
export function nativeStatus(): { ok: true } | { ok: false; reason: string } {
  try { addon(); return { ok: true } } catch (err) { return { ok: false, reason: (err as Error).message } }
}

/** Most messages one system call moves. */
export const MAX_BATCH = 256
