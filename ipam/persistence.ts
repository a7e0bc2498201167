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

/**
 * What a store holds: a snapshot (the IpamState JSON) and a journal of lease changes made since
 * that snapshot. Each snapshot starts a new journal generation; a journal whose generation does
 * not match the snapshot's (a crash between writing the two) is ignored, because the snapshot
 * already holds everything in it. A torn last journal line (a crash mid-append) was never
 * acknowledged, so it is dropped.
 */
export interface StoredState {
  snapshot?: string
  journal: string[]
}

export interface StateStore {
  load(): Promise<StoredState>
  /** Replace the snapshot atomically and durably and start an empty journal; resolves once on disk. */
  save(snapshot: string): Promise<void>
  /** Append records (one line each, no newlines inside) durably to the journal. */
  append(records: string[]): Promise<void>
  /** Release open files (the daemon is stopping). */
  close?(): Promise<void>
  /** Where the state lives, for messages. */
  readonly where: string
}

/** A store in memory (simulations, unit tests). `saves`/`appends` count writes. */
export function memoryStore(): StateStore & { snapshot: string | undefined; journal: string[]; saves: number; appends: number } {
  const s = {
    snapshot: undefined as string | undefined,
    journal: [] as string[],
    saves: 0,
    appends: 0,
    where: 'memory',
    async load(): Promise<StoredState> {
      return { snapshot: s.snapshot, journal: [...s.journal] }
    },
    async save(text: string) {
      s.snapshot = text
      s.journal = []
      s.saves++
    },
    async append(records: string[]) {
      s.journal.push(...records)
      s.appends++
    },
  }
  return s
}

/**
 * A store in two files: `file` (a generation line, then the snapshot), replaced atomically
 * (write a temp file, fsync, rename, fsync the directory), and `file.journal` (the same
 * generation line, then one record per line), appended with fdatasync.
 */
export function fileStore(file: string): StateStore {
  const dir = path.dirname(file)
  const journalFile = `${file}.journal`
  let gen = 0
  let journal: fs.promises.FileHandle | undefined

  const replace = async (target: string, text: string) => {
    const tmp = `${target}.tmp`
    const fh = await fs.promises.open(tmp, 'w', 0o600)
    try {
      await fh.writeFile(text)
      await fh.sync()
    } finally {
      await fh.close()
    }
    await fs.promises.rename(tmp, target)
  }
  const syncDir = async () => {
    // A rename is durable only once the directory entry is.
    const dh = await fs.promises.open(dir, 'r')
    try {
      await dh.sync()
    } finally {
      await dh.close()
    }
  }
  const readOrUndefined = async (f: string) => {
    try {
      return await fs.promises.readFile(f, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
  }
  const genOf = (firstLine: string): number | undefined => {
    const m = /^\{"gen":(\d+)\}$/.exec(firstLine)
    return m ? Number(m[1]) : undefined
  }

  return {
    where: file,
    async load() {
      const text = await readOrUndefined(file)
      if (text === undefined) return { journal: [] }
      const nl = text.indexOf('\n')
      const g = nl < 0 ? undefined : genOf(text.slice(0, nl))
      if (g === undefined) return { snapshot: text, journal: [] }
      gen = g
      const snapshot = text.slice(nl + 1)
      const jtext = (await readOrUndefined(journalFile)) ?? ''
      const lines = jtext.split('\n')
      if (genOf(lines[0]) !== g) return { snapshot, journal: [] }
      const records = lines.slice(1).filter((l) => l.length > 0)
      // Only complete lines count: the file ends with a newline after every acknowledged append.
      if (!jtext.endsWith('\n') && records.length > 0) records.pop()
      return { snapshot, journal: records }
    },
    async save(text: string) {
      await fs.promises.mkdir(dir, { recursive: true })
      gen++
      const header = `{"gen":${gen}}\n`
      await replace(file, header + text)
      // The new snapshot must be durable before the old journal goes: the other order could
      // leave the old snapshot with an empty journal after a crash, losing acknowledged leases.
      await syncDir()
      await journal?.close()
      journal = undefined
      await replace(journalFile, header)
      await syncDir()
    },
    async close() {
      await journal?.close()
      journal = undefined
    },
    async append(records: string[]) {
      if (records.length === 0) return
      if (!journal) journal = await fs.promises.open(journalFile, 'a', 0o600)
      await journal.write(records.join('\n') + '\n')
      await journal.datasync()
    },
  }
}

/** Apply journal records (`["+", id, cidr]` adds a lease, `["-", id, cidr]` drops it) to loaded state. */
export function applyJournal(state: IpamState, records: string[], where: string): LoadResult {
  for (const [i, line] of records.entries()) {
    let r: unknown
    try {
      r = JSON.parse(line)
    } catch {
      return { ok: false, reason: `IPAM journal of ${where}: record ${i + 1} is not JSON` }
    }
    if (!Array.isArray(r) || r.length !== 3 || (r[0] !== '+' && r[0] !== '-') || typeof r[1] !== 'string' || typeof r[2] !== 'string') {
      return { ok: false, reason: `IPAM journal of ${where}: bad record ${i + 1}` }
    }
    const [op, id, cidr] = r as [string, string, string]
    const list = state.leases[id] ?? []
    if (op === '+') {
      if (!list.includes(cidr)) state.leases[id] = [...list, cidr]
    } else {
      const keep = list.filter((c) => c !== cidr)
      if (keep.length) state.leases[id] = keep
      else delete state.leases[id]
    }
  }
  return { ok: true, state }
}

export type LoadResult = { ok: true; state: IpamState | undefined } | { ok: false; reason: string }

/** Parse and validate saved state for peer `peerName` and range `range`. */
export function decodeState(text: string | undefined, expect: { peerName: string; range: string; where: string }): LoadResult {
  if (text === undefined) return { ok: true, state: undefined }
  let o: IpamState
  try {
    o = JSON.parse(text) as IpamState // checked field by field below
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

/**
 * The range saved state in `file` was written for, read synchronously (for `weave launch`'s check
 * before it starts the daemon); undefined when there is no readable state.
 */
export function savedRange(file: string): string | undefined {
  let text: string
  try { text = fs.readFileSync(file, 'utf8') } catch { return undefined }
  const nl = text.indexOf('\n')
  const body = nl >= 0 && /^\{"gen":\d+\}$/.test(text.slice(0, nl)) ? text.slice(nl + 1) : text
  try {
    const o = JSON.parse(body) as { range?: unknown }
    return typeof o.range === 'string' ? o.range : undefined
  } catch {
    return undefined
  }
}
