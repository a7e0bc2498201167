/**
 * One clock for a whole in-memory network: its connections' heartbeats and handshake deadlines
 * run on one timer of the injected clock, and before any of them fires the network delivers
 * everything queued, so a simulation that advances a FakeClock by many seconds at once sees
 * heartbeat timeouts only on cut links, never on healthy ones.
 */
import type { Clock } from '../deps'

/**
 * Many timers multiplexed on one timer of `base`: a binary min-heap on (deadline, creation order),
 * so timers due at the same time fire in the order they were set, as FakeClock's do. Before a
 * batch of due timers runs, `beforeFire` (the network's flush) runs.
 */
export function coalescedClock(base: Clock, beforeFire: () => void): Clock {
  type Timer = { at: number; seq: number; fn: () => void; live: boolean }
  const heap: Timer[] = []
  let seq = 0
  let armed: { at: number; cancel: () => void } | undefined
  const less = (a: Timer, b: Timer) => a.at < b.at || (a.at === b.at && a.seq < b.seq)
  const push = (t: Timer) => {
    heap.push(t)
    for (let i = heap.length - 1; i > 0;) {
      const p = (i - 1) >> 1
      if (!less(heap[i], heap[p])) break
      ;[heap[i], heap[p]] = [heap[p], heap[i]]
      i = p
    }
  }
  const pop = (): Timer => {
    const top = heap[0]
    const last = heap.pop()!
    if (heap.length) {
      heap[0] = last
      for (let i = 0; ;) {
        const l = 2 * i + 1, r = l + 1
        let m = i
        if (l < heap.length && less(heap[l], heap[m])) m = l
        if (r < heap.length && less(heap[r], heap[m])) m = r
        if (m === i) break
        ;[heap[i], heap[m]] = [heap[m], heap[i]]
        i = m
      }
    }
    return top
  }
  const arm = () => {
    while (heap.length && !heap[0].live) pop()
    const next = heap[0]
    if (!next) { armed?.cancel(); armed = undefined; return }
    if (armed && armed.at <= next.at) return
    armed?.cancel()
    const at = next.at
    armed = { at, cancel: base.setTimer(at - base.now(), fire) }
  }
  const fire = () => {
    armed = undefined
    beforeFire()
    const now = base.now()
    while (heap.length && heap[0].at <= now) {
      const t = pop()
      if (t.live) { t.live = false; t.fn() }
    }
    arm()
  }
  return {
    now: () => base.now(),
    setTimer(ms, fn) {
      const t: Timer = { at: base.now() + Math.max(0, ms), seq: seq++, fn, live: true }
      push(t)
      arm()
      return () => { t.live = false }
    },
  }
}
