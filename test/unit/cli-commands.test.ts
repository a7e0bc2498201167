/** The `weave` command table: every entry loads the command it names, and names are unique. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { COMMANDS } from '../../cli/commands'

test('each entry loads a command of its own name, with usage text', async () => {
  const names = COMMANDS.map((c) => c.name)
  assert.is(new Set(names).size, names.length, 'unique names')
  for (const e of COMMANDS) {
    const c = await e.load()
    assert.is(c.name, e.name)
    assert.match(c.usage, /^Usage: .*weave/, `${e.name} has usage text`)
    assert.ok(e.summary.length > 10 && !e.summary.endsWith('.'), `${e.name}: a one-line summary`)
  }
})

test.run()
