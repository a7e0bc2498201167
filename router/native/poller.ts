/** Readiness callbacks for one socket, from the addon's uv_poll on node's own loop (readiness.c). */
import type { Addon, Handle } from './addon'

const READABLE = 1
const WRITABLE = 2

/** One uv_poll per socket; readable interest is persistent, writable interest one-shot. */
export class Poller {
  private onReadable: (() => void) | undefined
  private writeWaiters: Array<() => void> = []
  private mask = 0
  constructor(private readonly a: Addon, private readonly h: Handle) {}

  setReadable(fn: (() => void) | undefined): void { this.onReadable = fn; this.update() }
  waitWritable(): Promise<void> {
    return new Promise((resolve) => { this.writeWaiters.push(resolve); this.update() })
  }
  stop(): void {
    this.onReadable = undefined
    const w = this.writeWaiters
    this.writeWaiters = []
    this.update()
    for (const r of w) r() // a closed socket is "writable": the next send fails loudly instead of hanging
  }

  private update(): void {
    const want = (this.onReadable ? READABLE : 0) | (this.writeWaiters.length ? WRITABLE : 0)
    if (want === this.mask) return
    this.mask = want
    if (want === 0) this.a.pollStop(this.h)
    else this.a.pollStart(this.h, want, (status, events) => this.fire(status, events))
  }

  private fire(status: number, events: number): void {
    // A poll error (status < 0) is reported as readiness: the next read or send surfaces the errno.
    if (status < 0 || events & WRITABLE) {
      const w = this.writeWaiters
      this.writeWaiters = []
      this.update()
      for (const r of w) r()
    }
    if ((status < 0 || events & READABLE) && this.onReadable) this.onReadable()
  }
}
