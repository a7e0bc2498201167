/**
 * Counted skips. A test file (or one test) skips only for something missing on the machine: not
 * root, a tool or kernel module absent. It never skips because the feature under test misbehaves.
 *
 * A skip is registered with uvu's `test.skip`, so uvu counts it under "Skipped:", and it prints one
 * line `# skip: TITLE: REASON` that scripts/run-tests.js collects and lists. Under CI (CI=true),
 * where .ci/run installs everything, a skip whose reason is not on ALLOWED_IN_CI fails the run.
 *
 * ```ts
 * const why = labUnavailableReason({ docker: true })
 * if (why) skipFile('docker proxy e2e', why)
 * else { test.before(...); test('...', ...) }
 * ```
 */
import { test, type Test } from 'uvu'

/**
 * Register one skipped test named `title`, saying why. `on` is the uvu suite the file runs (its
 * default `test`, or a `suite(...)`): uvu counts only skips of a suite that is run.
 */
export function skipTest<T>(title: string, reason: string, on: Test<T> = test as unknown as Test<T>): void {
  console.log(`# skip: ${title}: ${oneLine(reason)}`)
  on.skip(`${title} (skipped: ${oneLine(reason)})`, () => {})
}

/** A whole file skips: one skipped test, and `test.run()` is still the caller's job. */
export const skipFile = skipTest

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim()
}
