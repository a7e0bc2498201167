/**
 * ensureDatapath / removeDatapath / datapathInfo / waitApplied against a small in-memory OVSDB
 * that implements the parts of RFC 7047 they use: select/insert/update/mutate/delete/wait/comment,
 * named-uuid, atomic transactions, unique name indexes and garbage collection of unreferenced
 * rows in non-root tables (as the Open_vSwitch schema has them). The lab test runs the same
 * functions against the real ovsdb-server.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { randomUUID } from 'node:crypto'
import { FakeClock } from '../../router/deps'
import {
  datapathInfo, datapathProblems, ensureDatapath, mapObject, OvsdbError, removeDatapath, waitApplied,
  type Condition, type Monitor, type OpResult, type Operation, type OvsdbClient, type Row, type TableUpdates, type Value,
} from '../../router/ovsdb'

type Table = Map<string, Record<string, any>>
const SET = (): any => ['set', []]
const SCHEMA: Record<string, { root: boolean; defaults: () => Record<string, any>; index?: string }> = {
  Open_vSwitch: { root: true, defaults: () => ({ bridges: SET(), next_cfg: 0, cur_cfg: 0 }) },
  Bridge: { root: false, index: 'name', defaults: () => ({ name: '', ports: SET(), datapath_type: '', fail_mode: SET() }) },
  Port: { root: false, index: 'name', defaults: () => ({ name: '', interfaces: SET() }) },
  Interface: { root: false, index: 'name', defaults: () => ({ name: '', type: '', options: ['map', []], ofport: SET(), error: SET() }) },
}
const REFS: Record<string, [string, string]> = { bridges: ['Open_vSwitch', 'Bridge'], ports: ['Bridge', 'Port'], interfaces: ['Port', 'Interface'] }

const fail = (code: string, details?: string): never => { throw Object.assign(new Error(code), { ovsdb: { error: code, details } }) }
const asSet = (v: any): any[] => (Array.isArray(v) && v[0] === 'set' ? v[1] : [v])
const canon = (v: any): string => JSON.stringify(Array.isArray(v) && (v[0] === 'set' || v[0] === 'map') ? [v[0], [...v[1]].map((x: any) => JSON.stringify(x)).sort()] : v)
/** Stored like the server does: a set column holds a set even when given a bare atom. */
const norm = (old: any, v: any): any => (Array.isArray(old) && old[0] === 'set' ? ['set', asSet(v)] : v)
/** Sets of one go out as the bare atom, as ovsdb-server sends them. */
const wire = (v: any): Value => (Array.isArray(v) && v[0] === 'set' && v[1].length === 1 ? v[1][0] : v)

class FakeOvsdb {
  tables: Record<string, Table> = { Open_vSwitch: new Map(), Bridge: new Map(), Port: new Map(), Interface: new Map() }
  writes = 0
  /** Write transactions tried, committed or not. */
  writeAttempts = 0
  /** Runs once before the next transaction that writes: simulates another client getting in first. */
  beforeNextWrite?: () => void
  /** Acts as ovs-vswitchd after each commit: assigns ofports, catches up cur_cfg. */
  vswitchd = true
  private nextOfport = 1
  private monitors = new Map<string, (u: TableUpdates) => void>()

  constructor(initialised = true) {
    if (initialised) this.tables.Open_vSwitch.set(randomUUID(), SCHEMA.Open_vSwitch.defaults())
  }

  client(): OvsdbClient {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the client's methods below are called with another `this`
    const self = this
    let seq = 0
    return {
      isOpen: true,
      closed: new Promise(() => {}),
      close() {},
      echo: async (...a) => a,
      listDbs: async () => ['Open_vSwitch'],
      getSchema: async () => ({}),
      async transact(_db, ops) { return self.transact(ops) },
      async monitor(_db, _tables, onUpdate): Promise<Monitor> {
        const id = `m${++seq}`
        self.monitors.set(id, onUpdate)
        return { id, initial: self.ovsUpdate(), cancel: async () => { self.monitors.delete(id) } }
      },
    }
  }

  ovsUpdate(): TableUpdates {
    return { Open_vSwitch: Object.fromEntries([...this.tables.Open_vSwitch].map(([u, r]) => [u, { new: { cur_cfg: r.cur_cfg } }])) }
  }

  transact(ops: Operation[]): OpResult[] {
    if (ops.some((o) => o.op !== 'select' && o.op !== 'comment')) this.writeAttempts++
    if (ops.some((o) => o.op !== 'select' && o.op !== 'comment') && this.beforeNextWrite) {
      const f = this.beforeNextWrite
      this.beforeNextWrite = undefined
      f()
    }
    const saved = this.tables
    this.tables = structuredClone(saved)
    const names = new Map<string, string>()
    const results: any[] = []
    try {
      for (const op of ops) results.push(this.run(op, names))
      this.commit()
    } catch (e: any) {
      this.tables = saved
      if (!e.ovsdb) throw e
      results.push(e.ovsdb)
      return checkLikeServer(ops, results)
    }
    if (ops.some((o) => o.op !== 'select' && o.op !== 'comment' && o.op !== 'wait')) this.writes++
    if (this.vswitchd) this.applySwitch()
    return results
  }

  private applySwitch(): void {
    for (const r of this.tables.Interface.values()) if (!asSet(r.ofport).length) r.ofport = ['set', [r.type === 'internal' && r.name === 'datapath' ? 65534 : this.nextOfport++]]
    for (const r of this.tables.Open_vSwitch.values()) r.cur_cfg = r.next_cfg
    for (const fn of this.monitors.values()) fn(this.ovsUpdate())
  }

  private resolve(v: any, names: Map<string, string>): any {
    if (Array.isArray(v)) {
      if (v[0] === 'named-uuid') return ['uuid', names.get(v[1]) ?? fail('referential integrity violation', `no named-uuid ${v[1]}`)]
      return v.map((x) => this.resolve(x, names))
    }
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, this.resolve(x, names)]))
    return v
  }

  private matches(table: string, where: Condition[]): [string, Record<string, any>][] {
    const t = this.tables[table] ?? fail('unknown table', table)
    return [...t].filter(([u, r]) => where.every(([col, fn, val]) => {
      const have = col === '_uuid' ? ['uuid', u] : r[col]
      if (fn !== '==') fail('not supported', `condition ${fn}`)
      return canon(have) === canon(val) || (asSet(have).length === 1 && canon(asSet(have)[0]) === canon(val))
    }))
  }

  private run(op: Operation, names: Map<string, string>): OpResult {
    switch (op.op) {
      case 'comment': return {}
      case 'select': return {
        rows: this.matches(op.table, op.where).map(([u, r]) => {
          const all: Record<string, any> = { _uuid: ['uuid', u], ...r }
          return Object.fromEntries<unknown>((op.columns ?? Object.keys(all)).map((c) => [c, wire(all[c])])) as Row
        }),
      }
      case 'insert': {
        const u = randomUUID()
        if (op['uuid-name']) names.set(op['uuid-name'], u)
        const row = { ...SCHEMA[op.table].defaults() }
        for (const [k, v] of Object.entries(this.resolve(op.row, names))) {
          if (!(k in row)) fail('unknown column', `${k} in ${op.table}`)
          row[k] = norm(row[k], v)
        }
        if (op.table === 'Open_vSwitch' && this.tables.Open_vSwitch.size) fail('constraint violation', 'too many rows')
        this.tables[op.table].set(u, row)
        return { uuid: ['uuid', u] }
      }
      case 'update': {
        const m = this.matches(op.table, op.where)
        for (const [, r] of m) for (const [k, v] of Object.entries(this.resolve(op.row, names))) r[k] = norm(r[k], v)
        return { count: m.length }
      }
      case 'mutate': {
        const m = this.matches(op.table, op.where)
        for (const [, r] of m) for (const [col, mut, val] of op.mutations) {
          const v = this.resolve(val, names)
          if (mut === '+=') r[col] += v
          else if (mut === 'insert') r[col] = ['set', [...asSet(r[col]), ...asSet(v).filter((x) => !asSet(r[col]).some((y) => canon(y) === canon(x)))]]
          else if (mut === 'delete') r[col] = ['set', asSet(r[col]).filter((y) => !asSet(v).some((x) => canon(x) === canon(y)))]
          else fail('not supported', mut)
        }
        return { count: m.length }
      }
      case 'delete': {
        const m = this.matches(op.table, op.where)
        for (const [u] of m) this.tables[op.table].delete(u)
        return { count: m.length }
      }
      case 'wait': {
        const got = this.matches(op.table, op.where).map(([, r]) => canon(Object.fromEntries(op.columns.map((c) => [c, canon(r[c])]))))
        const want = op.rows.map((r) => canon(Object.fromEntries(op.columns.map((c) => [c, canon(r[c])]))))
        const same = got.length === want.length && got.every((g) => want.includes(g))
        if (same !== (op.until === '==')) fail('timed out')
        return {}
      }
      default: return fail('not supported', op.op)
    }
  }

  /** Garbage-collect unreferenced non-root rows, then check the unique name indexes. */
  private commit(): void {
    for (const [col, [from, to]] of Object.entries(REFS)) {
      const live = new Set(([...this.tables[from].values()]).flatMap((r) => asSet(r[col]).map((a: any) => a[1])))
      for (const u of [...this.tables[to].keys()]) if (!live.has(u)) this.tables[to].delete(u)
    }
    for (const [name, s] of Object.entries(SCHEMA)) {
      if (!s.index) continue
      const seen = new Set<string>()
      for (const r of this.tables[name].values()) {
        if (seen.has(r[s.index])) fail('constraint violation', `duplicate ${name} ${r[s.index]}`)
        seen.add(r[s.index])
      }
    }
  }

  bridgeNames(): string[] { return [...this.tables.Bridge.values()].map((b) => b.name).sort() }
  portNames(): string[] { return [...this.tables.Port.values()].map((b) => b.name).sort() }
  iface(name: string) { return [...this.tables.Interface.values()].find((r) => r.name === name) }
}

function checkLikeServer(ops: Operation[], results: any[]): never {
  const i = results.length - 1
  const r = results[i]
  throw new OvsdbError(r.error, r.details, i < ops.length ? i : undefined)
}

const OPTS = { bridge: 'datapath', datapathType: 'netdev' as const, ports: ['vethwe-datapath'] }

test('creates bridge, vxlan port and extra port in one transaction; a second call writes nothing', async () => {
  const db = new FakeOvsdb()
  const c = db.client()
  const r = await ensureDatapath(c, OPTS)
  assert.is(r.created, true)
  assert.is(db.writes, 1)
  assert.equal(db.bridgeNames(), ['datapath'])
  assert.equal(db.portNames(), ['datapath', 'vethwe-datapath', 'vxlan-6784'])
  assert.is(db.iface('vxlan-6784')?.type, 'vxlan')
  assert.equal(mapObject(db.iface('vxlan-6784')?.options), { remote_ip: 'flow', key: 'flow', dst_port: '6784' })
  assert.is(db.iface('datapath')?.type, 'internal')
  assert.is(db.iface('vethwe-datapath')?.type, '')
  assert.equal(await ensureDatapath(c, OPTS), { created: false, changes: [] })
  assert.is(db.writes, 1, 'nothing written the second time')
})

test('custom udp port and vxlan port name, internal ports', async () => {
  const db = new FakeOvsdb()
  await ensureDatapath(db.client(), { bridge: 'dp', datapathType: 'system', udpPort: 4789, internalPorts: ['weave-int'] })
  assert.equal(db.portNames(), ['dp', 'vxlan-4789', 'weave-int'])
  assert.is(mapObject(db.iface('vxlan-4789')?.options).dst_port, '4789')
  assert.is(db.iface('weave-int')?.type, 'internal')
  assert.is([...db.tables.Bridge.values()][0].datapath_type, 'system')
})

test('failMode is set on a new bridge and corrected on an adopted one; absent, it is left alone', async () => {
  const db = new FakeOvsdb()
  const c = db.client()
  await ensureDatapath(c, OPTS)
  assert.is((await datapathInfo(c, 'datapath'))?.failMode, '')
  const r = await ensureDatapath(c, { ...OPTS, failMode: 'secure' })
  assert.equal(r.changes, ['bridge datapath fail_mode (default) → secure'])
  assert.is((await datapathInfo(c, 'datapath'))?.failMode, 'secure')
  assert.equal(await ensureDatapath(c, OPTS), { created: false, changes: [] })
  await ensureDatapath(c, { bridge: 'b2', datapathType: 'netdev', failMode: 'secure', vxlanPort: 'vx2' })
  assert.is((await datapathInfo(c, 'b2'))?.failMode, 'secure')
})

test('an uninitialised database gets its Open_vSwitch row', async () => {
  const db = new FakeOvsdb(false)
  await ensureDatapath(db.client(), OPTS)
  assert.is(db.tables.Open_vSwitch.size, 1)
  assert.equal(db.bridgeNames(), ['datapath'], 'the bridge is referenced, so it survived garbage collection')
})

test('adopts an existing bridge: fixes datapath_type and vxlan options, adds the missing port, moves a port from another bridge', async () => {
  const db = new FakeOvsdb()
  const c = db.client()
  await ensureDatapath(c, { bridge: 'other', datapathType: 'netdev', ports: ['vethwe-datapath'], vxlanPort: 'vx-other', udpPort: 9999 })
  await ensureDatapath(c, { bridge: 'datapath', datapathType: 'system' })
  // someone edits the vxlan options
  const vx = db.iface('vxlan-6784')!
  vx.options = ['map', [['remote_ip', 'flow'], ['key', 'flow'], ['dst_port', '4789']]]
  const r = await ensureDatapath(c, OPTS)
  assert.is(r.created, false)
  assert.ok(r.changes.some((x) => x.includes('datapath_type system → netdev')), r.changes.join('; '))
  assert.ok(r.changes.some((x) => x.includes('vxlan-6784')), r.changes.join('; '))
  assert.ok(r.changes.some((x) => x.includes('moved from bridge other')), r.changes.join('; '))
  assert.is(mapObject(db.iface('vxlan-6784')?.options).dst_port, '6784')
  const info = await datapathInfo(c, 'datapath')
  assert.equal(info?.ports.map((p) => p.name).sort(), ['datapath', 'vethwe-datapath', 'vxlan-6784'])
  const other = await datapathInfo(c, 'other')
  assert.equal(other?.ports.map((p) => p.name).sort(), ['other', 'vx-other'])
  assert.equal(await ensureDatapath(c, OPTS), { created: false, changes: [] })
})

test('a concurrent change between read and write makes the guarded write fail; it re-reads and keeps the other change', async () => {
  const db = new FakeOvsdb()
  const c = db.client()
  await ensureDatapath(c, { bridge: 'datapath', datapathType: 'netdev' })
  let raced = false
  db.beforeNextWrite = () => {
    raced = true
    db.transact([
      { op: 'insert', table: 'Interface', row: { name: 'intruder' }, 'uuid-name': 'i' },
      { op: 'insert', table: 'Port', row: { name: 'intruder', interfaces: ['named-uuid', 'i'] }, 'uuid-name': 'p' },
      { op: 'mutate', table: 'Bridge', where: [['name', '==', 'datapath']], mutations: [['ports', 'insert', ['set', [['named-uuid', 'p']]]]] },
    ])
  }
  const before = db.writeAttempts
  const r = await ensureDatapath(c, OPTS)
  assert.ok(raced)
  assert.is(db.writeAttempts - before, 3, 'the intruder, our failed guarded write, our retry')
  assert.ok(r.changes.includes('port vethwe-datapath added'), r.changes.join('; '))
  assert.equal(db.portNames(), ['datapath', 'intruder', 'vethwe-datapath', 'vxlan-6784'], 'the other writer\'s port is still there')
})

test('a racing creator of the same bridge: the name index makes us re-read and adopt it', async () => {
  const db = new FakeOvsdb()
  // another client (say ovs-vsctl add-br) commits the same bridge just before our write
  db.beforeNextWrite = () => {
    db.transact([
      { op: 'insert', table: 'Interface', row: { name: 'datapath', type: 'internal' }, 'uuid-name': 'i' },
      { op: 'insert', table: 'Port', row: { name: 'datapath', interfaces: ['named-uuid', 'i'] }, 'uuid-name': 'p' },
      { op: 'insert', table: 'Bridge', row: { name: 'datapath', ports: ['named-uuid', 'p'] }, 'uuid-name': 'b' },
      { op: 'mutate', table: 'Open_vSwitch', where: [], mutations: [['bridges', 'insert', ['named-uuid', 'b']]] },
    ])
  }
  const r = await ensureDatapath(db.client(), OPTS)
  assert.is(r.created, false, 'adopted the bridge the other client made')
  assert.equal(db.bridgeNames(), ['datapath'])
  assert.equal(db.portNames(), ['datapath', 'vethwe-datapath', 'vxlan-6784'])
})

test('errors other than conflicts are not retried', async () => {
  const db = new FakeOvsdb()
  const c = db.client()
  const orig = c.transact
  let writes = 0
  c.transact = async (d, ops) => {
    if (ops.some((o) => o.op === 'insert')) { writes++; throw new OvsdbError('not allowed', 'read-only') }
    return orig(d, ops)
  }
  const err = await ensureDatapath(c, OPTS).then(() => undefined, (e) => e)
  assert.is(err?.code, 'not allowed')
  assert.is(writes, 1)
})

test('naming one port twice is API misuse', async () => {
  const db = new FakeOvsdb()
  const err = await ensureDatapath(db.client(), { ...OPTS, ports: ['vxlan-6784'] }).then(() => undefined, (e) => e)
  assert.instance(err, TypeError)
  assert.is(db.writes, 0)
})

test('datapathInfo lists ports with ofports in ofport order; undefined for a missing bridge', async () => {
  const db = new FakeOvsdb()
  const c = db.client()
  assert.is(await datapathInfo(c, 'datapath'), undefined)
  await ensureDatapath(c, OPTS)
  const info = await datapathInfo(c, 'datapath')
  assert.is(info?.datapathType, 'netdev')
  assert.equal(info?.ports.map((p) => [p.name, p.ofport]), [['vxlan-6784', 1], ['vethwe-datapath', 2], ['datapath', 65534]])
  assert.equal(info?.ports[0].options, { remote_ip: 'flow', key: 'flow', dst_port: '6784' })
})

test('datapathProblems: none when attached; all unattached means the datapath type is missing; per-port errors', async () => {
  const db = new FakeOvsdb()
  const c = db.client()
  await ensureDatapath(c, OPTS)
  assert.equal(datapathProblems((await datapathInfo(c, 'datapath'))!), [])
  const base = { bridge: 'datapath', uuid: 'u', datapathType: 'system', failMode: '' }
  const none = datapathProblems({ ...base, ports: [{ port: 'datapath', name: 'datapath', type: 'internal', options: {} }] })
  assert.is(none.length, 1)
  assert.match(none[0], /datapath type system unavailable/)
  const mixed = datapathProblems({ ...base, ports: [
    { port: 'datapath', name: 'datapath', type: 'internal', options: {}, ofport: 65534 },
    { port: 'vxlan-6784', name: 'vxlan-6784', type: 'vxlan', options: {}, ofport: -1, error: 'could not add network device vxlan-6784' },
    { port: 'v', name: 'v', type: '', options: {} },
  ] })
  assert.equal(mixed, ['vxlan-6784: could not add network device vxlan-6784', 'v: not attached'])
  assert.equal(datapathProblems({ ...base, ports: [] }), ['bridge datapath has no ports'])
})

test('removeDatapath removes the bridge and, through garbage collection, its ports; other bridges stay', async () => {
  const db = new FakeOvsdb()
  const c = db.client()
  await ensureDatapath(c, OPTS)
  await ensureDatapath(c, { bridge: 'keep', datapathType: 'netdev', vxlanPort: 'vx-keep' })
  assert.is(await removeDatapath(c, 'datapath'), true)
  assert.equal(db.bridgeNames(), ['keep'])
  assert.equal(db.portNames(), ['keep', 'vx-keep'])
  assert.is(db.iface('vethwe-datapath'), undefined)
  assert.is(await removeDatapath(c, 'datapath'), false)
})

test('waitApplied resolves once cur_cfg catches up, rejects with timeout when the switch never does', async () => {
  const db = new FakeOvsdb()
  const clock = new FakeClock()
  await waitApplied(db.client(), clock, 1000)
  assert.is([...db.tables.Open_vSwitch.values()][0].next_cfg, 1)
  db.vswitchd = false
  const p = waitApplied(db.client(), clock, 1000)
  await new Promise((r) => setImmediate(r))
  clock.advance(1000)
  const err = await p.then(() => undefined, (e) => e)
  assert.is(err?.code, 'timeout')
})

test.run()
