/** JSON-RPC framing for OVSDB: the stream parser and the session (ids, echo, notifications, loss). */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { FakeClock } from '../../router/deps'
import { JsonRpcSession, JsonStreamParser, OvsdbError, classifyMessage } from '../../router/ovsdb'

const bytes = (s: string) => Buffer.from(s, 'utf8')

function parseAll(chunks: Uint8Array[], max?: number) {
  const p = new JsonStreamParser(max)
  const values: unknown[] = []
  let error
  for (const c of chunks) {
    const r = p.push(c)
    values.push(...r.values)
    if (r.error) { error = r.error; break }
  }
  return { values, error, parser: p }
}

test('parser: concatenated objects with no delimiter, strings holding braces and escaped quotes', () => {
  const msgs = [
    { id: 1, method: 'echo', params: ['{', '}', '[', ']'] },
    { id: 2, result: { s: 'a "quoted} {string"', b: '\\' }, error: null },
    { id: null, method: 'update', params: ['m1', { Bridge: { u: { new: { name: 'x\\"}' } } } }] },
  ]
  const text = msgs.map((m) => JSON.stringify(m)).join('') + '\n  ' + JSON.stringify([1, [2]])
  const { values, error } = parseAll([bytes(text)])
  assert.is(error, undefined)
  assert.equal(values, [...msgs, [1, [2]]])
})

test('parser: split at every byte boundary, including inside multi-byte UTF-8 and escapes', () => {
  const text = JSON.stringify({ id: 'ä€😀', params: ['\\"', '}{', 'x'] }) + JSON.stringify({ id: 2 })
  const buf = bytes(text)
  for (let cut = 1; cut < buf.length; cut++) {
    const { values, error } = parseAll([buf.subarray(0, cut), buf.subarray(cut)])
    assert.is(error, undefined)
    assert.equal(values, [{ id: 'ä€😀', params: ['\\"', '}{', 'x'] }, { id: 2 }], `cut at ${cut}`)
  }
  // one byte at a time
  const { values } = parseAll([...buf].map((b) => Uint8Array.of(b)))
  assert.is(values.length, 2)
})

test('parser: a buffer the caller reuses after push does not corrupt a partial message', () => {
  const p = new JsonStreamParser()
  const chunk = Buffer.from('{"a":"xyz')
  assert.equal(p.push(chunk).values, [])
  chunk.fill(0x20)
  assert.equal(p.push(bytes('"}')).values, [{ a: 'xyz' }])
})

test('property: any sequence of JSON objects, any chunking, parses back to the same values', () => {
  fc.assert(fc.property(
    fc.array(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 4 })), { minLength: 1, maxLength: 6 }),
    fc.array(fc.nat(), { maxLength: 8 }),
    fc.constantFrom('', ' ', '\n', '\r\n\t'),
    (objs, cuts, sep) => {
      const buf = bytes(objs.map((o) => JSON.stringify(o)).join(sep))
      const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b)
      const chunks: Uint8Array[] = []
      let last = 0
      for (const c of points) { chunks.push(buf.subarray(last, c)); last = c }
      chunks.push(buf.subarray(last))
      const { values, error } = parseAll(chunks)
      assert.is(error, undefined)
      assert.equal(values, objs.map((o) => JSON.parse(JSON.stringify(o))))
    }), { numRuns: 300 })
})

test('property: arbitrary or corrupted bytes never throw, from the parser or the session', () => {
  const valid = bytes(JSON.stringify({ id: 1, result: [{ rows: [{ name: 'a}"b' }] }], error: null }) + JSON.stringify({ method: 'echo', params: [], id: 'e' }))
  const corrupted = fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 4 })
    .map((flips) => { const b = Buffer.from(valid); for (const [i, v] of flips) b[i] = v; return b })
  fc.assert(fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }), corrupted), fc.nat(200), (buf, cut) => {
    const p = new JsonStreamParser(150)
    const c = Math.min(cut, buf.length)
    p.push(buf.subarray(0, c))
    p.push(buf.subarray(c))
    const s = new JsonRpcSession({ write: () => {}, close: () => {} }, { maxMessageBytes: 150 })
    const call = s.call('list_dbs', []).catch(() => {})
    s.receive(buf.subarray(0, c))
    s.receive(buf.subarray(c))
    void call
  }), { numRuns: 500 })
})

test('parser: garbage between messages is a typed error, values before it are kept, and it stays failed', () => {
  const { values, error, parser } = parseAll([bytes('{"id":1} hello {"id":2}')])
  assert.equal(values, [{ id: 1 }])
  assert.is(error?.reason, 'garbage')
  const again = parser.push(bytes('{"id":3}'))
  assert.equal(again.values, [])
  assert.is(again.error?.reason, 'garbage')
})

test('parser: oversized, too deep and malformed input', () => {
  assert.is(parseAll([bytes(JSON.stringify({ s: 'x'.repeat(200) }))], 100).error?.reason, 'too-large')
  // oversized even when it never completes: no unbounded buffering
  const big = parseAll([bytes('{"s":"' + 'y'.repeat(60)), bytes('y'.repeat(60))], 100)
  assert.is(big.error?.reason, 'too-large')
  assert.is(parseAll([bytes('['.repeat(1000))]).error?.reason, 'too-deep')
  assert.is(parseAll([bytes('{"a":1,}')]).error?.reason, 'bad-json')
  assert.is(parseAll([bytes('{"a":]')]).error?.reason, 'bad-json')
  assert.is(parseAll([bytes('"just a string"')]).error?.reason, 'garbage')
  assert.is(parseAll([Uint8Array.of(0xef, 0xbb, 0xbf), bytes('{}')]).error?.reason, 'garbage')
})

test('classifyMessage: requests, notifications, responses, and what is none of them', () => {
  assert.equal(classifyMessage({ method: 'echo', params: [], id: 'x' }), { kind: 'request', method: 'echo', params: [], id: 'x' })
  assert.equal(classifyMessage({ method: 'update', params: [1], id: null }), { kind: 'notification', method: 'update', params: [1] })
  assert.equal(classifyMessage({ result: 1, error: null, id: 3 }), { kind: 'response', id: 3, result: 1, error: null })
  assert.is(classifyMessage({ id: 3 }), undefined)
  assert.is(classifyMessage([1]), undefined)
  assert.is(classifyMessage({ method: 'x', params: 'no', id: 1 }), undefined)
  assert.is(classifyMessage({ method: 'x', params: [], id: {} }), undefined)
})

function session(opts: ConstructorParameters<typeof JsonRpcSession>[1] = {}) {
  const sent: any[] = []
  let closedTransport = 0
  const s = new JsonRpcSession({ write: (t) => sent.push(JSON.parse(t)), close: () => { closedTransport++ } }, opts)
  const feed = (m: unknown) => s.receive(bytes(JSON.stringify(m)))
  return { s, sent, feed, closedTransport: () => closedTransport }
}

test('session: ids match answers out of order; an error answer rejects with OvsdbError', async () => {
  const { s, sent, feed } = session()
  const a = s.call('list_dbs', [])
  const b = s.call('get_schema', ['nope'])
  assert.equal(sent.map((m) => [m.method, m.id]), [['list_dbs', 1], ['get_schema', 2]])
  feed({ id: 2, result: null, error: { error: 'unknown database', details: 'nope' } })
  feed({ id: 1, result: ['Open_vSwitch'], error: null })
  assert.equal(await a, ['Open_vSwitch'])
  const err = await b.then(() => undefined, (e) => e)
  assert.instance(err, OvsdbError)
  assert.is(err.code, 'unknown database')
  assert.is(err.details, 'nope')
  assert.is(s.pendingCalls, 0)
})

test('session: the server\'s echo is answered with its params; other requests get an error reply', () => {
  const { sent, feed } = session()
  feed({ method: 'echo', params: ['keepalive', 7], id: 'echo' })
  assert.equal(sent, [{ result: ['keepalive', 7], error: null, id: 'echo' }])
  feed({ method: 'frobnicate', params: [], id: 9 })
  assert.equal(sent[1], { result: null, error: { error: 'unknown method', details: 'frobnicate' }, id: 9 })
})

test('session: notifications go to onNotification; a response to an unknown id is ignored', () => {
  const got: unknown[] = []
  const { s, feed } = session({ onNotification: (m, p) => got.push([m, p]) })
  feed({ method: 'update', params: ['m1', { T: {} }], id: null })
  feed({ id: 99, result: {}, error: null })
  assert.equal(got, [['update', ['m1', { T: {} }]]])
  assert.is(s.isOpen, true)
})

test('session: a lost transport rejects every pending call and later calls', async () => {
  let reason: OvsdbError | undefined
  const { s } = session({ onClose: (e) => { reason = e } })
  const calls = [s.call('a', []), s.call('b', [])]
  s.transportClosed(new Error('ECONNRESET'))
  for (const c of calls) {
    const e = await c.then(() => undefined, (x) => x)
    assert.is(e?.code, 'connection-lost')
  }
  assert.is(reason?.code, 'connection-lost')
  assert.is((await s.call('c', []).then(() => undefined, (x) => x))?.code, 'connection-lost')
})

test('session: garbage from the server ends the session with a protocol error and closes the transport', async () => {
  const { s, closedTransport } = session()
  const p = s.call('list_dbs', [])
  s.receive(bytes('HTTP/1.1 400 Bad Request\r\n'))
  const e = await p.then(() => undefined, (x) => x)
  assert.is(e?.code, 'protocol')
  assert.is(e?.cause?.reason, 'garbage')
  assert.is(closedTransport(), 1)
  assert.is(s.isOpen, false)
})

test('session: valid JSON that is not JSON-RPC is a protocol error too', async () => {
  const { s, feed } = session()
  const p = s.call('x', [])
  feed({ hello: 'world' })
  assert.is((await p.then(() => undefined, (x) => x))?.code, 'protocol')
})

test('session: calls time out on the injected clock', async () => {
  const clock = new FakeClock()
  const { s, feed } = session({ clock, callTimeoutMs: 1000 })
  const slow = s.call('transact', [])
  const fast = s.call('echo', [])
  feed({ id: 2, result: [], error: null })
  assert.equal(await fast, [])
  clock.advance(999)
  assert.is(s.pendingCalls, 1)
  clock.advance(1)
  assert.is((await slow.then(() => undefined, (x) => x))?.code, 'timeout')
  assert.is(clock.pending(), 0, 'the answered call cancelled its timer')
  assert.is(s.isOpen, true, 'a timeout does not end the session')
})

test.run()
