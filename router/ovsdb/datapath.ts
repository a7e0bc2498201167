/**
 * The fastdp bridge in Open vSwitch, set up through OVSDB transactions (no ovs-vsctl):
 * `datapath` (its own internal port), the flow-based vxlan port `vxlan-6784`, and the ports
 * the router adds (`vethwe-datapath`). Bridge, Port and Interface are not root tables in the
 * Open_vSwitch schema, so whatever is no longer referenced from Open_vSwitch.bridges is
 * garbage-collected by the server: removing the bridge from that set removes its ports too.
 */
import type { Clock } from '../deps'
import type { OvsdbClient } from './client'
import { OvsdbError } from './errors'
import { comment, eq, insert, mutate, select, update, wait, type Operation } from './ops'
import { map, mapObject, namedUuid, optional, set, uuid, uuidOf, uuidsOf, type Atom, type Row, type Value } from './values'

const DB = 'Open_vSwitch'
/** Conflicting writers (another ensureDatapath, ovs-vsctl) make a transaction fail; we re-read and retry. */
const MAX_ATTEMPTS = 4

export interface DatapathOptions {
  /** Bridge name; weave uses `datapath`. */
  bridge: string
  /** `system` (kernel openvswitch module) or `netdev` (userspace). */
  datapathType: 'system' | 'netdev'
  /** Default `vxlan-6784`. */
  vxlanPort?: string
  /** UDP port of the vxlan tunnel; default 6784. */
  udpPort?: number
  /** Existing network devices to attach (e.g. `vethwe-datapath`): Interface type "". */
  ports?: string[]
  /** Ports OVS itself creates as devices: Interface type `internal`. */
  internalPorts?: string[]
  /**
   * `secure`: with no controller the bridge forwards only by the flows we install (no NORMAL
   * learning-switch flow before ours are in). Left as it is when not given.
   */
  failMode?: 'secure' | 'standalone'
}

export interface DatapathPort {
  port: string
  /** Interface name (equals the port name for every port made here). */
  name: string
  type: string
  /** OpenFlow port number once ovs-vswitchd has attached it; -1 when it failed. */
  ofport?: number
  options: Record<string, string>
  /** ovs-vswitchd's complaint about the interface, if any. */
  error?: string
}

export interface DatapathInfo {
  bridge: string
  uuid: string
  datapathType: string
  /** `secure`, `standalone`, or '' when unset (OVS then behaves as standalone). */
  failMode: string
  ports: DatapathPort[]
}

export interface EnsureResult {
  /** The bridge did not exist before. */
  created: boolean
  /** What was changed, for the log; empty when everything was already in place. */
  changes: string[]
}

interface WantedPort { name: string; type: string; options?: Record<string, string> }

interface Snapshot {
  ovsRow?: string
  bridges: Map<string, { uuid: string; name: string; ports: string[]; datapathType: string; failMode: string }>
  ports: Map<string, { uuid: string; name: string; interfaces: string[] }>
  interfaces: Map<string, Row & { _uuid: Value }>
}

/** Create or adopt the bridge and bring it to the wanted shape; safe to call again at any time. */
export async function ensureDatapath(client: OvsdbClient, opts: DatapathOptions): Promise<EnsureResult> {
  const wanted = wantedPorts(opts)
  for (let attempt = 1; ; attempt++) {
    const snap = await readSnapshot(client)
    const plan = planEnsure(snap, opts, wanted)
    if (!plan.ops.length) return { created: false, changes: [] }
    try {
      await client.transact(DB, [...plan.ops, comment(`weave: ensure bridge ${opts.bridge}`)])
      return { created: plan.created, changes: plan.changes }
    } catch (err) {
      if (!(err instanceof OvsdbError) || !isConflict(err) || attempt >= MAX_ATTEMPTS) throw err
    }
  }
}

/** Remove the bridge (and so its ports and interfaces); resolves false when there was none. */
export async function removeDatapath(client: OvsdbClient, bridge: string): Promise<boolean> {
  const [res] = await client.transact(DB, [select('Bridge', [eq('name', bridge)], ['_uuid'])])
  const row = res.rows?.[0]
  if (!row) return false
  await client.transact(DB, [
    mutate('Open_vSwitch', [], [['bridges', 'delete', set([row._uuid as Atom])]]),
    comment(`weave: remove bridge ${bridge}`),
  ])
  return true
}

/** The bridge's datapath type and its ports with their OpenFlow numbers, or undefined. */
export async function datapathInfo(client: OvsdbClient, bridge: string): Promise<DatapathInfo | undefined> {
  const snap = await readSnapshot(client)
  const br = [...snap.bridges.values()].find((b) => b.name === bridge)
  if (!br) return undefined
  const ports: DatapathPort[] = []
  for (const pu of br.ports) {
    const p = snap.ports.get(pu)
    if (!p) continue
    for (const iu of p.interfaces) {
      const i = snap.interfaces.get(iu)
      if (i) ports.push(describeInterface(p.name, i))
    }
  }
  ports.sort((a, b) => (a.ofport ?? 1e9) - (b.ofport ?? 1e9) || a.name.localeCompare(b.name))
  return { bridge, uuid: br.uuid, datapathType: br.datapathType, failMode: br.failMode, ports }
}

/**
 * Why the bridge cannot carry traffic, from its ports' state; empty when every port is attached.
 * Meaningful only after `waitApplied`: before that ovs-vswitchd may simply not have got to it.
 * A datapath type the host lacks (`system` without the openvswitch kernel module) shows up as no
 * port being attached at all, with no per-port error.
 */
export function datapathProblems(info: DatapathInfo): string[] {
  if (!info.ports.length) return [`bridge ${info.bridge} has no ports`]
  if (info.ports.every((p) => p.ofport === undefined && !p.error)) {
    return [`ovs-vswitchd attached no port of bridge ${info.bridge}: datapath type ${info.datapathType || 'system'} unavailable here?`]
  }
  const out: string[] = []
  for (const p of info.ports) {
    if (p.error) out.push(`${p.name}: ${p.error}`)
    else if (p.ofport === undefined) out.push(`${p.name}: not attached`)
    else if (p.ofport < 0) out.push(`${p.name}: failed to attach`)
  }
  return out
}

/**
 * Wait until ovs-vswitchd has applied everything committed so far: bump `next_cfg` and watch
 * `cur_cfg` catch up (what `ovs-vsctl` does without --no-wait). Rejects with `timeout`.
 */
export async function waitApplied(client: OvsdbClient, clock: Clock, timeoutMs = 10_000): Promise<void> {
  const [, sel] = await client.transact(DB, [
    mutate('Open_vSwitch', [], [['next_cfg', '+=', 1]]),
    select('Open_vSwitch', [], ['next_cfg']),
  ])
  const target = Number(sel.rows?.[0]?.next_cfg)
  if (!Number.isFinite(target)) throw new OvsdbError('protocol', 'no Open_vSwitch row to wait on')
  let done!: () => void
  let fail!: (e: Error) => void
  const reached = new Promise<void>((res, rej) => { done = res; fail = rej })
  const check = (rows: Record<string, { new?: Row }> | undefined) => {
    for (const r of Object.values(rows ?? {})) if (r.new && Number(r.new.cur_cfg) >= target) done()
  }
  const mon = await client.monitor(DB, { Open_vSwitch: { columns: ['cur_cfg'] } }, (u) => check(u.Open_vSwitch))
  check(mon.initial.Open_vSwitch)
  const cancelTimer = clock.setTimer(timeoutMs, () => fail(new OvsdbError('timeout', `ovs-vswitchd did not apply cfg ${target} within ${timeoutMs} ms`)))
  try {
    await Promise.race([reached, client.closed.then((e) => { throw e })])
  } finally {
    cancelTimer()
    await mon.cancel().catch(() => {})
  }
}

function wantedPorts(opts: DatapathOptions): WantedPort[] {
  const udp = opts.udpPort ?? 6784
  const out: WantedPort[] = [
    { name: opts.bridge, type: 'internal' },
    { name: opts.vxlanPort ?? `vxlan-${udp}`, type: 'vxlan', options: { remote_ip: 'flow', key: 'flow', dst_port: String(udp) } },
    ...(opts.ports ?? []).map((name) => ({ name, type: '' })),
    ...(opts.internalPorts ?? []).map((name) => ({ name, type: 'internal' })),
  ]
  const names = new Set<string>()
  for (const p of out) {
    if (names.has(p.name)) throw new TypeError(`port ${p.name} named twice for bridge ${opts.bridge}`)
    names.add(p.name)
  }
  return out
}

async function readSnapshot(client: OvsdbClient): Promise<Snapshot> {
  const [ovs, br, po, ifc] = await client.transact(DB, [
    select('Open_vSwitch', [], ['_uuid']),
    select('Bridge', [], ['_uuid', 'name', 'ports', 'datapath_type', 'fail_mode']),
    select('Port', [], ['_uuid', 'name', 'interfaces']),
    select('Interface', [], ['_uuid', 'name', 'type', 'options', 'ofport', 'error']),
  ])
  const snap: Snapshot = { bridges: new Map(), ports: new Map(), interfaces: new Map() }
  const first = ovs.rows?.[0]
  if (first) snap.ovsRow = uuidOf(first._uuid)
  for (const r of br.rows ?? []) {
    const u = uuidOf(r._uuid)
    const failMode = optional(r.fail_mode)
    snap.bridges.set(u, { uuid: u, name: String(r.name), ports: uuidsOf(r.ports), datapathType: String(r.datapath_type ?? ''), failMode: typeof failMode === 'string' ? failMode : '' })
  }
  for (const r of po.rows ?? []) {
    const u = uuidOf(r._uuid)
    snap.ports.set(u, { uuid: u, name: String(r.name), interfaces: uuidsOf(r.interfaces) })
  }
  for (const r of ifc.rows ?? []) snap.interfaces.set(uuidOf(r._uuid), r as Row & { _uuid: Value })
  return snap
}

interface Plan { ops: Operation[]; changes: string[]; created: boolean }
type BridgeState = Snapshot['bridges'] extends Map<string, infer B> ? B : never

/** The transaction that turns `snap` into the wanted bridge; no ops when nothing is missing. */
function planEnsure(snap: Snapshot, opts: DatapathOptions, wanted: WantedPort[]): Plan {
  const plan: Plan = { ops: [], changes: [], created: false }
  const br = [...snap.bridges.values()].find((b) => b.name === opts.bridge)
  const guard = guardOnce(plan)
  const portsToAdd = planPorts(snap, br, wanted, plan, guard)
  if (!br) planNewBridge(snap, opts, portsToAdd, plan)
  else planAdoptedBridge(br, opts, portsToAdd, plan, guard)
  return plan
}

/**
 * A `wait` (timeout 0) that the bridge still holds exactly the ports we read: if another client
 * changed them meanwhile, the commit fails with "timed out" and we re-read (RFC 7047 §5.2.6).
 */
function guardOnce(plan: Plan): (b: BridgeState) => void {
  const guarded = new Set<string>()
  return (b) => {
    if (guarded.has(b.uuid)) return
    guarded.add(b.uuid)
    plan.ops.push(wait('Bridge', [eq('_uuid', uuid(b.uuid))], ['ports'], '==', [{ ports: set(b.ports.map((p) => uuid(p))) }], 0))
  }
}

/** Insert missing ports, take ports away from other bridges, fix interfaces; returns refs to add. */
function planPorts(snap: Snapshot, br: BridgeState | undefined, wanted: WantedPort[], plan: Plan, guard: (b: BridgeState) => void): Atom[] {
  const bridges = [...snap.bridges.values()]
  const portsToAdd: Atom[] = []
  wanted.forEach((w, i) => {
    const existing = [...snap.ports.values()].find((p) => p.name === w.name)
    if (!existing) {
      plan.ops.push(
        insert('Interface', interfaceRow(w), `iface${i}`),
        insert('Port', { name: w.name, interfaces: set([namedUuid(`iface${i}`)]) }, `port${i}`),
      )
      portsToAdd.push(namedUuid(`port${i}`))
      plan.changes.push(`port ${w.name} added`)
      return
    }
    const owner = bridges.find((b) => b.ports.includes(existing.uuid))
    if (owner !== br) {
      if (owner) {
        guard(owner)
        plan.ops.push(mutate('Bridge', [eq('_uuid', uuid(owner.uuid))], [['ports', 'delete', set([uuid(existing.uuid)])]]))
        plan.changes.push(`port ${w.name} moved from bridge ${owner.name}`)
      }
      portsToAdd.push(uuid(existing.uuid))
    }
    fixInterface(snap, existing, w, plan)
  })
  return portsToAdd
}

function planNewBridge(snap: Snapshot, opts: DatapathOptions, portsToAdd: Atom[], plan: Plan): void {
  plan.created = true
  plan.changes.unshift(`bridge ${opts.bridge} created (${opts.datapathType})`)
  const row: Row = { name: opts.bridge, datapath_type: opts.datapathType, ports: set(portsToAdd) }
  if (opts.failMode) row.fail_mode = opts.failMode
  plan.ops.push(insert('Bridge', row, 'newbridge'))
  const ref = set([namedUuid('newbridge')])
  plan.ops.push(snap.ovsRow
    ? mutate('Open_vSwitch', [], [['bridges', 'insert', ref]])
    // a database nobody has initialised (`ovs-vsctl init`): the table's one row is ours to make
    : insert('Open_vSwitch', { bridges: ref }))
}

function planAdoptedBridge(br: BridgeState, opts: DatapathOptions, portsToAdd: Atom[], plan: Plan, guard: (b: BridgeState) => void): void {
  const where = [eq('_uuid', uuid(br.uuid))]
  const fix: Row = {}
  if (br.datapathType !== opts.datapathType) {
    fix.datapath_type = opts.datapathType
    plan.changes.push(`bridge ${opts.bridge} datapath_type ${br.datapathType || '(default)'} → ${opts.datapathType}`)
  }
  if (opts.failMode && br.failMode !== opts.failMode) {
    fix.fail_mode = opts.failMode
    plan.changes.push(`bridge ${opts.bridge} fail_mode ${br.failMode || '(default)'} → ${opts.failMode}`)
  }
  if (Object.keys(fix).length) plan.ops.push(update('Bridge', where, fix))
  if (portsToAdd.length) {
    guard(br)
    plan.ops.push(mutate('Bridge', where, [['ports', 'insert', set(portsToAdd)]]))
  }
}

/** Correct the type/options of an existing port's interface when they differ from what we want. */
function fixInterface(snap: Snapshot, port: { name: string; interfaces: string[] }, w: WantedPort, plan: Plan): void {
  const iu = port.interfaces.find((u) => snap.interfaces.get(u)?.name === w.name) ?? port.interfaces[0]
  const row = iu === undefined ? undefined : snap.interfaces.get(iu)
  if (!row || iu === undefined) return
  const fix: Row = {}
  if (String(row.type ?? '') !== w.type) fix.type = w.type
  if (w.options && !sameStrings(mapObject(row.options), w.options)) fix.options = map(w.options)
  if (!Object.keys(fix).length) return
  plan.ops.push(update('Interface', [eq('_uuid', uuid(iu))], fix))
  plan.changes.push(`interface ${w.name} ${Object.keys(fix).join('+')} corrected`)
}

function interfaceRow(w: WantedPort): Row {
  const row: Row = { name: w.name, type: w.type }
  if (w.options) row.options = map(w.options)
  return row
}

function describeInterface(port: string, r: Row): DatapathPort {
  const ofport = optional(r.ofport)
  const error = optional(r.error)
  const out: DatapathPort = { port, name: String(r.name), type: String(r.type ?? ''), options: mapObject(r.options) }
  if (typeof ofport === 'number') out.ofport = ofport
  if (typeof error === 'string') out.error = error
  return out
}

function sameStrings(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a), kb = Object.keys(b)
  return ka.length === kb.length && kb.every((k) => a[k] === b[k])
}

/** A failed guard (`wait` with timeout 0 → "timed out") or a lost index race → re-read and retry. */
function isConflict(err: OvsdbError): boolean {
  return err.code === 'timed out' || err.code === 'constraint violation'
}

