/**
 * An Open vSwitch per lab host: ovsdb-server + ovs-vswitchd in the host's namespace.
 *
 * The datapath follows the kernel (`ovsDatapathType`): with the openvswitch module loaded (the
 * stock-kernel VM, test/vm) OVS uses the kernel datapath and the underlay stays on eth0, as on a
 * real host. Without it (this machine's kernel) OVS runs the userspace datapath, and userspace
 * vxlan needs the local tunnel endpoint address on an OVS bridge ("native tunnel routing failed"
 * otherwise, LAB-NOTES), so eth0 becomes a port of the netdev bridge `br-phy` and the host's
 * underlay address moves from eth0 to br-phy.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { run, waitFor } from './exec'
import type { LabHost } from './host'

const SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema'

/** OVS_* directories of a host: OVS puts per-bridge management sockets in OVS_RUNDIR. */
export function ovsEnv(host: LabHost): Record<string, string> {
  const d = path.join(host.dir, 'ovs')
  return { OVS_RUNDIR: d, OVS_DBDIR: d, OVS_LOGDIR: d, OVS_SYSCONFDIR: d }
}

/**
 * The datapath OVS uses in this lab: `system` (kernel) when the openvswitch module is loaded, as
 * the daemon decides (router/overlay-wiring.ts), else `netdev` (userspace).
 */
export function ovsDatapathType(): 'system' | 'netdev' {
  return fs.existsSync('/sys/module/openvswitch') ? 'system' : 'netdev'
}

export async function startOvs(host: LabHost): Promise<void> {
  const d = path.join(host.dir, 'ovs')
  fs.mkdirSync(d, { recursive: true })
  const env = { ...process.env, ...ovsEnv(host) }
  const db = path.join(d, 'conf.db')
  const socket = path.join(d, 'db.sock')
  await run(['ovsdb-tool', 'create', db, SCHEMA])
  const log = (name: string) => fs.openSync(path.join(d, `${name}.out`), 'a')
  const dbOut = log('ovsdb-server')
  host.spawn(['ovsdb-server', db, `--remote=punix:${socket}`, `--pidfile=${path.join(d, 'ovsdb-server.pid')}`,
    `--unixctl=${path.join(d, 'ovsdb-server.ctl')}`, `--log-file=${path.join(d, 'ovsdb-server.log')}`, '--no-chdir'],
  { stdio: ['ignore', dbOut, dbOut], env, enter: 'nsenter' })
  fs.closeSync(dbOut)
  await waitFor(`ovsdb-server of ${host.name}`, () => fs.existsSync(socket), 20_000, 50)
  host.ovsSocket = socket
  await host.ovsVsctl(['--no-wait', 'init'])
  const ctl = path.join(d, 'ovs-vswitchd.ctl')
  const swOut = log('ovs-vswitchd')
  host.spawn(['ovs-vswitchd', `unix:${socket}`, `--pidfile=${path.join(d, 'ovs-vswitchd.pid')}`,
    `--unixctl=${ctl}`, `--log-file=${path.join(d, 'ovs-vswitchd.log')}`, '--no-chdir'],
  { stdio: ['ignore', swOut, swOut], env, enter: 'nsenter' })
  fs.closeSync(swOut)
  await waitFor(`ovs-vswitchd of ${host.name}`, () => fs.existsSync(ctl), 20_000, 50)
  host.ovsCtl = ctl
  if (ovsDatapathType() === 'system') return // the kernel routes tunnel packets out of eth0 itself
  // without --no-wait, ovs-vsctl returns once ovs-vswitchd has applied the change
  await host.ovsVsctl(['add-br', 'br-phy', '--', 'set', 'bridge', 'br-phy', 'datapath_type=netdev',
    '--', 'add-port', 'br-phy', 'eth0'])
  const cidr = `${host.underlayIp}/${host.prefixLen}`
  await host.exec(['ip', 'addr', 'del', cidr, 'dev', 'eth0'])
  await host.exec(['ip', 'addr', 'add', cidr, 'dev', 'br-phy'])
  await host.exec(['ip', 'link', 'set', 'dev', 'br-phy', 'up'])
  host.underlayDev = 'br-phy'
}
