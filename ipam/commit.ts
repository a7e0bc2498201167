/**
 * Group commit of IPAM state: callers ask to be told once the current state is on disk; all who
 * ask while a write is in flight share the next write. Lease changes alone are appended to the
 * journal (small, fsynced); any other change, or a long journal, writes a new snapshot.
 */
import type { Logger } from '../router/deps'
import type { StateStore } from './persistence'

/** A journal this long is folded into a new snapshot. */
export const MAX_JOURNAL_RECORDS = 20_000

export interface CommitSource {
  /** Everything but the leases, as JSON text; a change here forces a snapshot. */
  head(): string
  /** The full snapshot for `head`. */
  snapshot(head: string): string
  /** Journal records of lease changes since the last call. */
  takeOps(): string[]
  /** Called as a write starts; the returned function runs once it is durable. */
  beginWrite(): () => void
}

export class GroupCommit {
  private dirty = false
  private saving = false
  private waiting: Array<(err?: Error) => void> = []
  /** Head of the last snapshot written; undefined forces a snapshot. */
  private savedHead: string | undefined
  private journalCount = 0

  constructor(private readonly store: StateStore, private readonly log: Logger, private readonly src: CommitSource) {}

  /** Run `fn` once the current state is on disk (with the error if the write failed). */
  whenDurable(fn: (err?: Error) => void): void {
    this.dirty = true
    this.waiting.push(fn)
    if (!this.saving) void this.loop()
  }

  durable(): Promise<void> {
    return new Promise((resolve, reject) => this.whenDurable((err) => (err ? reject(err) : resolve())))
  }

  /** Resolves once nothing is being or waiting to be written. */
  async idle(): Promise<void> {
    // Joining the queue (rather than waiting for the in-flight write's callbacks, which were
    // taken when it started) guarantees we are called back.
    if (this.saving || this.dirty) await this.durable().catch(() => {})
  }

  private async loop(): Promise<void> {
    this.saving = true
    while (this.dirty) {
      this.dirty = false
      const waiting = this.waiting.splice(0)
      const done = this.src.beginWrite()
      const head = this.src.head()
      const ops = this.src.takeOps()
      let err: Error | undefined
      try {
        if (head !== this.savedHead || this.journalCount + ops.length > MAX_JOURNAL_RECORDS) {
          this.savedHead = undefined
          await this.store.save(this.src.snapshot(head))
          this.savedHead = head
          this.journalCount = 0
        } else if (ops.length > 0) {
          await this.store.append(ops)
          this.journalCount += ops.length
        }
        done()
      } catch (e) {
        err = e as Error
        // What failed may be half-written: the next write is a full snapshot.
        this.savedHead = undefined
        this.log.error(`cannot save IPAM state to ${this.store.where}: ${err.message}`)
      }
      for (const fn of waiting) fn(err)
    }
    this.saving = false
  }
}
