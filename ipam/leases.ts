/**
 * Who holds which address: container ID -> its leases. Each change is also kept as a journal
 * record for the state file, and each ID's JSON text is kept ready, so a snapshot joins strings
 * instead of re-serialising every lease (with tens of thousands of leases, JSON.stringify of the
 * whole table dominated a write).
 */
import { formatCidr } from './address'

export interface Lease {
  addr: number
  /** Prefix of the subnet it was allocated in (answers are `addr/prefix`). */
  prefix: number
}

export class LeaseTable {
  private readonly byId = new Map<string, Lease[]>()
  private readonly json = new Map<string, string>()
  private ops: string[] = []

  /** Record a lease; `journal` false when it is being restored from saved state. */
  add(id: string, l: Lease, journal = true): void {
    const list = this.byId.get(id)
    if (list) list.push(l)
    else this.byId.set(id, [l])
    if (journal) this.ops.push(JSON.stringify(['+', id, text(l)]))
    this.changed(id)
  }

  /** Drop `addr` of `id` (all of its leases when undefined); returns what was dropped. */
  remove(id: string, addr?: number): Lease[] {
    const list = this.byId.get(id)
    if (!list) return []
    const drop = addr === undefined ? list : list.filter((l) => l.addr === addr)
    if (drop.length === 0) return []
    const keep = list.filter((l) => !drop.includes(l))
    if (keep.length) this.byId.set(id, keep)
    else this.byId.delete(id)
    for (const l of drop) this.ops.push(JSON.stringify(['-', id, text(l)]))
    this.changed(id)
    return drop
  }

  get(id: string): readonly Lease[] {
    return this.byId.get(id) ?? []
  }

  ids(): string[] {
    return [...this.byId.keys()]
  }

  entries(): IterableIterator<[string, Lease[]]> {
    return this.byId.entries()
  }

  /** Journal records of the changes since the last call. */
  takeOps(): string[] {
    return this.ops.splice(0)
  }

  /** The table as the body of a JSON object: `"id":["a.b.c.d/n",...],...`. */
  jsonBody(): string {
    return [...this.json.values()].join(',')
  }

  private changed(id: string): void {
    const list = this.byId.get(id)
    if (!list) this.json.delete(id)
    else this.json.set(id, `${JSON.stringify(id)}:${JSON.stringify(list.map(text))}`)
  }
}

function text(l: Lease): string {
  return formatCidr({ ip: l.addr, prefix: l.prefix })
}
