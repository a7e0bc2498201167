/**
 * The OVSDB client against a real ovsdb-server + ovs-vswitchd (userspace datapath) running in
 * one lab host's namespace: transactions, server errors, monitors seeing ovs-vsctl's changes,
 * and the fastdp `datapath` bridge made, adopted, described and removed through OVSDB.
 * The client itself runs in this process; it reaches the server over its unix socket.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { createLab, labUnavailableReason, waitFor, type Lab, type LabHost } from './index'
import { systemClock } from '../../router/deps'
import {
  connectOvsdb, datapathInfo, datapathProblems, del, ensureDatapath, eq, insert, map, mapObject, OvsdbError,
  removeDatapath, select, update, uuidOf, wait, waitApplied, type OvsdbClient, type TableUpdates,
} from '../../router/ovsdb'
import { skipFile, skipTest } from '../skip'

const why = labUnavailableReason({ ovs: true })
const test = suite<{ lab?: Lab; host?: LabHost }>('ovsdb lab')
const DB = 'Open_vSwitch'

async function withClient<T>(h: LabHost, fn: (c: OvsdbClient) => Promise<T>): Promise<T> {
  const c = await connectOvsdb(`unix:${h.ovsSocket}`)
  try { return await fn(c) } finally { c.close() }
}

if (why) {
  skipFile('ovsdb against a real ovsdb-server', why, test)
} else {
  test.before(async (ctx) => {
    ctx.lab = await createLab({ hosts: 1, ovs: true })
    ctx.host = ctx.lab.hosts[0]
  })
  test.after(async (ctx) => { await ctx.lab?.teardown() })

  test('list_dbs and echo', async ({ host }) => {
    await withClient(host!, async (c) => {
      assert.ok((await c.listDbs()).includes(DB))
      assert.equal(await c.echo('ping', 1), ['ping', 1])
    })
  })

  test('insert, select, update round trips; a bad op is an OvsdbError with the server error', async ({ host }) => {
    await withClient(host!, async (c) => {
      try {
        // QoS is a root table: a row stays without any reference (the test deletes it); it does nothing by itself
        const [ins] = await c.transact(DB, [insert('QoS', { type: 'linux-htb', external_ids: map({ weave: 'test' }) }, 'qos1')])
        const id = uuidOf(ins.uuid)
        const [sel] = await c.transact(DB, [select('QoS', [eq('_uuid', ['uuid', id])], ['type', 'external_ids'])])
        assert.equal(sel.rows?.[0]?.type, 'linux-htb')
        assert.equal(mapObject(sel.rows?.[0]?.external_ids), { weave: 'test' })
        const [upd] = await c.transact(DB, [update('QoS', [eq('_uuid', ['uuid', id])], { type: 'linux-hfsc' })])
        assert.is(upd.count, 1)
        const [again] = await c.transact(DB, [select('QoS', [eq('_uuid', ['uuid', id])], ['type'])])
        assert.equal(again.rows?.[0]?.type, 'linux-hfsc')
        const err = await c.transact(DB, [
          select('QoS', [], ['_uuid']),
          insert('Bridge', { name: 'x', no_such_column: 1 }),
        ]).then(() => undefined, (e) => e)
        assert.instance(err, OvsdbError)
        assert.is(err.code, 'unknown column')
        assert.is(err.opIndex, 1)
        assert.ok(err.details && err.details.includes('no_such_column'), String(err.details))
      } finally {
        await c.transact(DB, [del('QoS', [eq('external_ids', map({ weave: 'test' }))])])
      }
      assert.is(c.isOpen, true, 'an op error does not end the connection')
    })
  })

  test('monitor sees a change made by ovs-vsctl', async ({ host }) => {
    const h = host!
    await withClient(h, async (c) => {
      const seen: TableUpdates[] = []
      const mon = await c.monitor(DB, { Bridge: { columns: ['name', 'datapath_type'] } }, (u) => seen.push(u))
      try {
        const names = () => seen.flatMap((u) => Object.values(u.Bridge ?? {})).map((r) => r.new?.name)
        await h.ovsVsctl(['--no-wait', 'add-br', 'wmon0', '--', 'set', 'bridge', 'wmon0', 'datapath_type=netdev'])
        await waitFor('monitor update for wmon0', () => names().includes('wmon0'), 5000, 20)
        const row = seen.flatMap((u) => Object.values(u.Bridge ?? {})).find((r) => r.new?.name === 'wmon0')
        assert.is(row?.new?.datapath_type, 'netdev')
        assert.is(row?.old, undefined, 'an insert has no old row')
        await mon.cancel()
        const before = seen.length
        await h.ovsVsctl(['--no-wait', 'del-br', 'wmon0'])
        await c.echo() // the server answers in order: an update would have come before this reply
        assert.is(seen.length, before, 'no updates after cancel')
      } finally {
        await h.ovsVsctl(['--no-wait', '--if-exists', 'del-br', 'wmon0'])
      }
    })
  })

  test('ensureDatapath is idempotent, ovs-vsctl shows it, removeDatapath leaves no bridge', async ({ host }) => {
    const h = host!
    await withClient(h, async (c) => {
      try {
        await h.exec(['ip', 'link', 'add', 'vethwe-bridge', 'type', 'veth', 'peer', 'name', 'vethwe-datapath'])
        await h.exec(['ip', 'link', 'set', 'vethwe-datapath', 'up'])
        const opts = { bridge: 'datapath', datapathType: 'netdev' as const, ports: ['vethwe-datapath'], failMode: 'secure' as const }
        const first = await ensureDatapath(c, opts)
        assert.is(first.created, true)
        assert.ok(first.changes.length >= 3, first.changes.join('; '))
        const second = await ensureDatapath(c, opts)
        assert.equal(second, { created: false, changes: [] }, 'the second call changes nothing')
        await waitApplied(c, systemClock(), 15_000)

        const show = (await h.ovsVsctl(['show'])).stdout
        assert.match(show, /Bridge datapath/)
        assert.match(show, /Port vxlan-6784/)
        assert.match(show, /type: vxlan/)
        assert.match(show, /options: \{dst_port="6784", key=flow, remote_ip=flow\}/)
        assert.match(show, /Port vethwe-datapath/)
        assert.match(show, /datapath_type: netdev/)
        assert.match(show, /fail_mode: secure/)

        const info = await datapathInfo(c, 'datapath')
        assert.ok(info)
        assert.is(info.datapathType, 'netdev')
        assert.is(info.failMode, 'secure')
        const byName = Object.fromEntries(info.ports.map((p) => [p.name, p]))
        assert.equal(Object.keys(byName).sort(), ['datapath', 'vethwe-datapath', 'vxlan-6784'])
        assert.is(byName['vxlan-6784'].type, 'vxlan')
        assert.equal(byName['vxlan-6784'].options, { remote_ip: 'flow', key: 'flow', dst_port: '6784' })
        for (const p of info.ports) assert.ok((p.ofport ?? -1) >= 0, `${p.name} has an ofport: ${p.ofport} ${p.error ?? ''}`)
        assert.equal(datapathProblems(info), [])

        // adoption: someone changed the vxlan options and the type; ensure puts them back
        await h.ovsVsctl(['set', 'interface', 'vxlan-6784', 'options:dst_port=4789'])
        const fixed = await ensureDatapath(c, opts)
        assert.is(fixed.created, false)
        assert.ok(fixed.changes.some((x) => x.includes('vxlan-6784')), fixed.changes.join('; '))
        assert.match((await h.ovsVsctl(['get', 'interface', 'vxlan-6784', 'options:dst_port'])).stdout, /6784/)

        assert.is(await removeDatapath(c, 'datapath'), true)
        assert.is(await removeDatapath(c, 'datapath'), false, 'removing again is a no-op')
        assert.is(await datapathInfo(c, 'datapath'), undefined)
        const left = (await h.ovsVsctl(['list-br'])).stdout.split('\n').filter(Boolean)
        assert.not.ok(left.includes('datapath'), `bridges left: ${left}`)
        const ports = await c.transact(DB, [select('Port', [eq('name', 'vxlan-6784')], ['_uuid'])])
        assert.is(ports[0].rows?.length, 0, 'the ports went with the bridge')
      } finally {
        await removeDatapath(c, 'datapath').catch(() => false)
        await h.exec(['ip', 'link', 'del', 'vethwe-bridge'], { allowFail: true })
      }
    })
  })

  const lacks = 'a datapath type the host lacks is reported by datapathProblems'
  if (fs.existsSync('/sys/module/openvswitch')) skipTest(lacks, 'the kernel openvswitch module is loaded: the system datapath works here', test)
  else test(lacks, async ({ host }) => {
    await withClient(host!, async (c) => {
      try {
        await ensureDatapath(c, { bridge: 'datapath', datapathType: 'system' })
        await waitApplied(c, systemClock(), 15_000)
        const problems = datapathProblems((await datapathInfo(c, 'datapath'))!)
        assert.is(problems.length, 1, problems.join('; '))
        assert.match(problems[0], /datapath type system unavailable/)
      } finally {
        await removeDatapath(c, 'datapath')
      }
    })
  })

  test('a bridge made by ovs-vsctl is adopted, its port moved from another bridge', async ({ host }) => {
    const h = host!
    await withClient(h, async (c) => {
      try {
        await h.ovsVsctl(['--no-wait', 'add-br', 'datapath', '--', 'set', 'bridge', 'datapath', 'datapath_type=system',
          '--', 'add-br', 'wother', '--', 'set', 'bridge', 'wother', 'datapath_type=netdev',
          '--', 'add-port', 'wother', 'wint0', '--', 'set', 'interface', 'wint0', 'type=internal'])
        const r = await ensureDatapath(c, { bridge: 'datapath', datapathType: 'netdev', internalPorts: ['wint0'] })
        assert.is(r.created, false)
        assert.ok(r.changes.some((x) => x.includes('datapath_type')), r.changes.join('; '))
        assert.ok(r.changes.some((x) => x.includes('moved from bridge wother')), r.changes.join('; '))
        assert.is((await h.ovsVsctl(['port-to-br', 'wint0'])).stdout.trim(), 'datapath')
        assert.is((await h.ovsVsctl(['get', 'bridge', 'datapath', 'datapath_type'])).stdout.trim(), 'netdev')
        assert.equal(await ensureDatapath(c, { bridge: 'datapath', datapathType: 'netdev', internalPorts: ['wint0'] }), { created: false, changes: [] })
      } finally {
        await h.ovsVsctl(['--no-wait', '--if-exists', 'del-br', 'datapath', '--', '--if-exists', 'del-br', 'wother'], { allowFail: true })
      }
    })
  })

  test('closing with a call in flight rejects it with closed', async ({ host }) => {
    await withClient(host!, async (c) => {
      const p = c.transact(DB, [wait('Bridge', [eq('name', 'never-there')], ['name'], '!=', [], 60_000)])
      c.close()
      const err = await p.then(() => undefined, (e) => e)
      assert.instance(err, OvsdbError)
      assert.is(err.code, 'closed')
    })
  })

  // last: it kills the lab's ovsdb-server
  test('a killed server rejects a pending call with connection-lost', async ({ host }) => {
    const h = host!
    const c = await connectOvsdb(`unix:${h.ovsSocket}`)
    try {
      // the server holds its answer to a wait that cannot be met (RFC 7047 §5.2.6) until it times out
      const p = c.transact(DB, [wait('Bridge', [eq('name', 'never-there')], ['name'], '!=', [], 60_000)])
      await c.echo()
      const pid = Number(fs.readFileSync(path.join(path.dirname(h.ovsSocket!), 'ovsdb-server.pid'), 'utf8'))
      process.kill(pid, 'SIGKILL')
      const err = await p.then(() => undefined, (e) => e)
      assert.instance(err, OvsdbError)
      assert.is(err.code, 'connection-lost')
      assert.is((await c.closed).code, 'connection-lost')
      const after = await c.listDbs().then(() => undefined, (e) => e)
      assert.is(after?.code, 'connection-lost', 'calls after the loss fail at once')
    } finally {
      c.close()
    }
  })
}

test.run()
