// nsExec (router/native/ns-exec.c) with a child that misbehaves: one that sleeps forever is
// killed at its deadline and reported (exit 124) while the event loop keeps running; one that
// writes far more than a pipe holds before exiting does not block on the full pipe; a normal one
// reports its exit code and output. No namespace is entered (netns null), so no root is needed.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { nativeNetlink, NS_EXEC_TIMED_OUT } from '../../router/native'
import { skipFile } from '../skip'

const nl = nativeNetlink()

function nsExec(argv: string[], input = '', timeoutMs?: number): Promise<{ code: number; output: string; ms: number }> {
  const t0 = performance.now()
  return new Promise((resolve) => nl!.nsExec!(null, argv, input, (code, output) => resolve({ code, output, ms: performance.now() - t0 }), timeoutMs))
}

if (!nl?.nsExec) skipFile('nsExec', 'the native addon is not built here')
else {
  test('a child that sleeps forever is killed at its deadline; the loop keeps turning meanwhile', async () => {
    let ticks = 0
    const tick = setInterval(() => ticks++, 20)
    try {
      const r = await nsExec(['sh', '-c', 'echo started; exec sleep 1000000'], '', 500)
      assert.is(r.code, NS_EXEC_TIMED_OUT, r.output)
      assert.match(r.output, /^started\n/)
      assert.match(r.output, /killed: no exit within 500 ms/)
      assert.ok(r.ms >= 450 && r.ms < 10_000, `reported after ${r.ms.toFixed(0)} ms`)
      assert.ok(ticks >= 5, `the event loop ran ${ticks} timer ticks while the child hung`)
    } finally { clearInterval(tick) }
  })

  test('a child writing 4 MiB (far past a pipe) exits normally; the output is capped and says so', async () => {
    const r = await nsExec(['sh', '-c', 'head -c 4194304 /dev/zero | tr "\\0" x; echo; echo done >&2; exit 3'], '', 20_000)
    assert.is(r.code, 3, r.output.slice(-200))
    assert.ok(r.output.length <= 16_384, `${r.output.length} chars kept`)
    assert.match(r.output, /\(\d+ more bytes of output dropped\)$/)
  })

  test('a normal child: its input, exit code and output', async () => {
    const r = await nsExec(['sh', '-c', 'cat; echo err >&2; exit 0'], 'hello\n')
    assert.is(r.code, 0)
    assert.is(r.output, 'hello\nerr\n')
    assert.is((await nsExec(['/nonexistent/tool'])).code, 127)
  })

  test('a bad timeout is refused', () => {
    assert.throws(() => nl.nsExec!(null, ['true'], '', () => {}, 0), /timeoutMs/)
  })
}

test.run()
