/**
 * IPAM state on disk: ring, leases and our consensus record in one JSON file, replaced atomically
 * (write a temp file, fsync it, rename over the old one, fsync the directory), so a SIGKILL at any
 * moment leaves either the old or the new state, never a torn one. State written for another range
 * or another peer name is refused with a message instead of being dropped silently (Weave
 * discarded it; reference (b) 5).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import type { RingWire } from './ring'
import type { PaxosRecord } from './consensus'

export const STATE_FORMAT = 1

export interface IpamState {
  format: number
  peerName: string
  /** The universe as CIDR text, e.g. 10.32.0.0/12. */
  range: string
  ring?: RingWire
  /** Our own consensus record, so a restarted peer stays the same acceptor. */
  paxos?: PaxosRecord
  /** Container ID -> its addresses as CIDR text (address/subnet prefix). */
  leases: Record<string, string[]>
  /** Set when rmpeer on another peer removed us; we never allocate again until reset. */
  removed?: boolean
}

export interface StateStore {
  /** The saved text, or undefined when nothing was saved yet. */
  load(): Promise<string | undefined>
  /** Replace the saved text atomically and durably; resolves once it is on disk. */
  save(text: string): Promise<void>
  /** Where the state lives, for messages. */
  readonly where: string
}

/** A store in memory (simulations, unit tests). `saves` counts writes. */
export function memoryStore(initial?: string): StateStore & { text: string | undefined; saves: number } {
  const s = {
    text: initial,
    saves: 0,
    where: 'memory',
    async load() {
      return s.text
    },
    async save(text: string) {
      s.text = text
      s.saves++
    },
  }
  return s
}

/** A store in one file, replaced atomically. */
export function fileStore(file: string): StateStore {
  const dir = path.dirname(file)
  const tmp = `${file}.tmp`
  return {
    where: file,
    async load() {
      try {
        return await fs.promises.readFile(file, 'utf8')
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
        throw err
      }
    },
    async save(text: string) {
      await fs.promises.mkdir(dir, { recursive: true })
      const fh = await fs.promises.open(tmp, 'w', 0o600)
      try {
        await fh.writeFile(text)
        await fh.sync()
      } finally {
        await fh.close()
      }
      await fs.promises.rename(tmp, file)
      // The rename is durable only once the directory entry is.
      const dh = await fs.promises.open(dir, 'r')
      try {
        await dh.sync()
      } finally {
        await dh.close()
      }
    },
  }
}

export type LoadResult = { ok: true; state: IpamState | undefined } | { ok: false; reason: string }

/** Parse and validate saved state for peer `peerName` and range `range`. */
export function decodeState(text: string | undefined, expect: { peerName: string; range: string; where: string }): LoadResult {
  if (text === undefined) return { ok: true, state: undefined }
  let o: IpamState
  try {
    o = JSON.parse(text)
  } catch (err) {
    return { ok: false, reason: `IPAM state in ${expect.where} is not valid JSON (${(err as Error).message}); move it away to start afresh` }
  }
  if (!o || typeof o !== 'object' || o.format !== STATE_FORMAT) {
    return { ok: false, reason: `IPAM state in ${expect.where} has unknown format ${String(o?.format)}` }
  }
  if (o.peerName !== expect.peerName) {
    return {
      ok: false,
      reason: `IPAM state in ${expect.where} belongs to peer ${o.peerName}, not ${expect.peerName}; ` +
        `launch with that peer name, or run 'weave reset' to discard it`,
    }
  }
  if (o.range !== expect.range) {
    return {
      ok: false,
      reason: `IPAM state in ${expect.where} is for range ${o.range}, but --ipalloc-range is ${expect.range}; ` +
        `launch with --ipalloc-range ${o.range}, or run 'weave reset' to discard it`,
    }
  }
  if (!o.leases || typeof o.leases !== 'object') return { ok: false, reason: `IPAM state in ${expect.where} has no lease table` }
  for (const [id, addrs] of Object.entries(o.leases)) {
    if (!Array.isArray(addrs) || !addrs.every((a) => typeof a === 'string')) {
      return { ok: false, reason: `IPAM state in ${expect.where}: bad leases for ${id}` }
    }
  }
  return { ok: true, state: o }
}
