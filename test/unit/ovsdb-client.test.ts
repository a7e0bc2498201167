/** The OVSDB client over an in-memory transport and a unix socket, and the value/op helpers. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import {
  checkTransactResult, connectOvsdb, createOvsdbClient, eq, insert, map, mapEntries, mapObject, mutate, namedUuid,
  optional, OvsdbError, parseOvsdbTarget, select, set, setValues, uuid, uuidOf, uuidsOf, wait, type Operation, type OvsdbClient,
} from '../../router/ovsdb'

const U1 = '0b6f7d3c-95a8-4d63-9d2e-5a3f6c1f2e10'
const U2 = '6a1c2b3d-0000-4a5b-8c7d-1234567890ab'

/** A client wired to a scripted server: `answer(req)` returns the reply's result/error, or undefined to hold it. */
function fakeServer(answer: (req: any) => { result?: unknown; error?: unknown } | undefined) {
  const requests: any[] = []
  const client = createOvsdbClient({
    write(text) {
      const msg = JSON.parse(text)
      requests.push(msg)
      if (msg.id === null || msg.method === undefined) return
      const a = answer(msg)
      if (a) queueMicrotask(() => push({ id: msg.id, result: a.result ?? null, error: a.error ?? null }))
    },
    close() {},
  })
  const push = (m: unknown) => client.receive(Buffer.from(JSON.stringify(m)))
  return { client, requests, push }
}

test('transact: sends [db, ...ops] and returns one result per op', async () => {
  const ops: Operation[] = [insert('Bridge', { name: 'b' }, 'br'), select('Bridge', [eq('name', 'b')], ['name'])]
  const { client, requests } = fakeServer(() => ({ result: [{ uuid: ['uuid', U1] }, { rows: [{ name: 'b' }] }] }))
  const res = await client.transact('Open_vSwitch', ops)
  assert.equal(requests[0].method, 'transact')
  assert.equal(requests[0].params, ['Open_vSwitch', ...ops])
  assert.is(uuidOf(res[0].uuid), U1)
  assert.equal(res[1].rows, [{ name: 'b' }])
})

test('transact: an op error becomes OvsdbError with the server\'s error, details and op index', async () => {
  const { client } = fakeServer(() => ({ result: [{ rows: [] }, { error: 'constraint violation', details: 'duplicate name' }, null] }))
  const err = await client.transact('Open_vSwitch', [select('Bridge', []), insert('Bridge', {}), select('Port', [])]).then(() => undefined, (e) => e)
  assert.instance(err, OvsdbError)
  assert.is(err.code, 'constraint violation')
  assert.is(err.details, 'duplicate name')
  assert.is(err.opIndex, 1)
  assert.is(client.isOpen, true)
})

test('checkTransactResult: a commit failure past the last op, short results and non-arrays', () => {
  const ops = [select('Bridge', [])]
  const commit = (() => { try { checkTransactResult(ops, [{ rows: [] }, { error: 'referential integrity violation' }]) } catch (e) { return e as OvsdbError } })()
  assert.is(commit?.code, 'referential integrity violation')
  assert.is(commit?.opIndex, undefined)
  assert.throws(() => checkTransactResult(ops, []), (e: OvsdbError) => e.code === 'protocol')
  assert.throws(() => checkTransactResult(ops, { rows: [] }), (e: OvsdbError) => e.code === 'protocol')
})

test('a request-level error (unknown database) rejects with its code', async () => {
  const { client } = fakeServer(() => ({ error: { error: 'unknown database', details: 'x' } }))
  const err = await client.transact('x', []).then(() => undefined, (e) => e)
  assert.is(err?.code, 'unknown database')
})

test('listDbs checks its answer', async () => {
  assert.equal(await fakeServer(() => ({ result: ['Open_vSwitch', '_Server'] })).client.listDbs(), ['Open_vSwitch', '_Server'])
  const bad = await fakeServer(() => ({ result: [1] })).client.listDbs().then(() => undefined, (e) => e)
  assert.is(bad?.code, 'protocol')
})

test('monitor: initial contents returned, updates dispatched by monitor id, cancel stops them', async () => {
  const { client, requests, push } = fakeServer((req) => {
    if (req.method === 'monitor') return { result: { Bridge: { [U1]: { new: { name: 'a' } } } } }
    if (req.method === 'monitor_cancel') return { result: {} }
    return undefined
  })
  const seen: unknown[] = []
  const mon = await client.monitor('Open_vSwitch', ['Bridge'], (u) => seen.push(u))
  assert.equal(requests[0].params, ['Open_vSwitch', mon.id, { Bridge: {} }])
  assert.equal(mon.initial, { Bridge: { [U1]: { new: { name: 'a' } } } })
  push({ method: 'update', params: [mon.id, { Bridge: { [U2]: { new: { name: 'b' } } } }], id: null })
  push({ method: 'update', params: ['someone-else', { Bridge: {} }], id: null })
  assert.equal(seen, [{ Bridge: { [U2]: { new: { name: 'b' } } } }])
  await mon.cancel()
  assert.equal(requests.at(-1).params, [mon.id])
  push({ method: 'update', params: [mon.id, { Bridge: { [U2]: { old: { name: 'b' } } } }], id: null })
  assert.is(seen.length, 1)
})

test('monitor: per-table requests are sent as given; a refused monitor leaves nothing registered', async () => {
  const { client, requests } = fakeServer(() => ({ error: { error: 'unknown table', details: 'Nope' } }))
  const req = { Interface: { columns: ['ofport'], select: { initial: false } } }
  const err = await client.monitor('Open_vSwitch', req, () => {}).then(() => undefined, (e) => e)
  assert.is(err?.code, 'unknown table')
  assert.equal(requests[0].params[2], req)
})

test('close: pending calls reject with closed and `closed` resolves', async () => {
  const { client } = fakeServer(() => undefined)
  const p = client.echo('x')
  client.close()
  assert.is((await p.then(() => undefined, (e) => e))?.code, 'closed')
  assert.is((await client.closed).code, 'closed')
  assert.is(client.isOpen, false)
})

test('parseOvsdbTarget', () => {
  assert.equal(parseOvsdbTarget('unix:/run/openvswitch/db.sock'), { path: '/run/openvswitch/db.sock' })
  assert.equal(parseOvsdbTarget('tcp:127.0.0.1:6640'), { host: '127.0.0.1', port: 6640 })
  assert.equal(parseOvsdbTarget('tcp:[::1]:6640'), { host: '::1', port: 6640 })
  for (const bad of ['unix:', 'tcp:host', 'tcp:h:0', 'ssl:h:1', '/path']) assert.throws(() => parseOvsdbTarget(bad), bad)
})

test('values: builders validate, readers accept bare atoms as sets of one', () => {
  assert.equal(uuid(U1), ['uuid', U1])
  assert.throws(() => uuid('not-a-uuid'))
  assert.equal(namedUuid('port_1'), ['named-uuid', 'port_1'])
  assert.throws(() => namedUuid('1port'))
  assert.throws(() => insert('Port', {}, 'bad-name'))
  assert.equal(set(['a', 'b']), ['set', ['a', 'b']])
  assert.equal(map({ key: 'flow' }), ['map', [['key', 'flow']]])
  assert.equal(map([['a', 1]]), ['map', [['a', 1]]])
  assert.equal(setValues('x'), ['x'])
  assert.equal(setValues(['set', []]), [])
  assert.equal(setValues(['uuid', U1]), [['uuid', U1]], 'a uuid atom is one atom, not a set')
  assert.is(optional(['set', []]), undefined)
  assert.is(optional(5), 5)
  assert.equal(uuidsOf(['set', [['uuid', U1], ['uuid', U2]]]), [U1, U2])
  assert.equal(uuidsOf(['uuid', U1]), [U1])
  assert.equal(mapEntries(['map', [['k', 1]]]), [['k', 1]])
  assert.equal(mapObject(['map', [['dst_port', '6784'], ['n', 3]]]), { dst_port: '6784', n: '3' })
  assert.throws(() => mapEntries('x'))
  assert.throws(() => uuidOf('x'))
  assert.equal(mutate('Open_vSwitch', [], [['next_cfg', '+=', 1]]), { op: 'mutate', table: 'Open_vSwitch', where: [], mutations: [['next_cfg', '+=', 1]] })
  assert.equal(wait('Bridge', [], ['name'], '==', [], 0), { op: 'wait', table: 'Bridge', where: [], columns: ['name'], until: '==', rows: [], timeout: 0 })
})

test('connectOvsdb over a unix socket: echo answered, bytes split anywhere, server close rejects pending calls', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ovsdb-unit-'))
  const sock = path.join(dir, 'db.sock')
  const received: any[] = []
  let conn: net.Socket | undefined
  const server = net.createServer((c) => {
    conn = c
    let buf = ''
    c.on('data', (d) => {
      buf += d.toString()
      // test server: one JSON message per data event is good enough for our small requests
      for (const m of buf.split(/(?<=\})(?=\{)/)) received.push(JSON.parse(m))
      buf = ''
      const last = received.at(-1)
      if (last.method === 'list_dbs') {
        // a keepalive echo from the server first, and the reply split mid-string into two writes
        c.write(JSON.stringify({ method: 'echo', params: ['ka'], id: 'echo' }))
        const reply = JSON.stringify({ id: last.id, result: ['Open_vSwitch'], error: null })
        c.write(reply.slice(0, 20))
        setTimeout(() => c.write(reply.slice(20)), 5)
      }
    })
  })
  await new Promise<void>((r) => server.listen(sock, r))
  let client: OvsdbClient | undefined
  try {
    const missing = await connectOvsdb(`unix:${dir}/nope.sock`).then(() => undefined, (e) => e)
    assert.is(missing?.code, 'connect-failed')
    client = await connectOvsdb(`unix:${sock}`)
    assert.equal(await client.listDbs(), ['Open_vSwitch'])
    // the answer reaches the server's side of the socket a moment later
    for (let i = 0; i < 100 && !received.some((m) => m.id === 'echo'); i++) await new Promise((r) => setTimeout(r, 10))
    assert.ok(received.some((m) => m.id === 'echo' && m.error === null && m.result?.[0] === 'ka'), 'echo answered')
    const pending = client.transact('Open_vSwitch', [])
    await new Promise((r) => setTimeout(r, 20))
    conn!.destroy()
    assert.is((await pending.then(() => undefined, (e) => e))?.code, 'connection-lost')
    assert.is((await client.closed).code, 'connection-lost')
  } finally {
    client?.close()
    conn?.destroy()
    server.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test.run()
