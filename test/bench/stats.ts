/** Small helpers the benchmarks share: medians and timed commands. */
import { performance } from 'node:perf_hooks'
import { run } from '../lab/exec'

/** Median of `xs` (the mean of the two middle values for an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

/** Run `cmd` to completion (throws on failure) and return its wall time in ms. */
export async function timedRun(cmd: string[], timeoutMs = 60_000): Promise<number> {
  const t0 = performance.now()
  await run(cmd, { timeoutMs })
  return performance.now() - t0
}
