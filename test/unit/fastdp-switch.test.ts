/**
 * The overlay switch's pure parts: the fastdp offer in the overlay hello (compatible both ways),
 * the per-peer choice with its reason, the routerLink decision, and the config rows.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { FakeClock, nullLogger } from '../../router/deps'
import { ApiRouter } from '../../router/api'
import { chooseOverlay, wireOverlay } from '../../router/overlay-wiring'
import { decodeOverlayControl, encodeOverlayControl, overlayConnectionLine } from '../../router/overlay'
import { parseDaemonArgs, type WeaverConfig } from '../../router/config'
import type { ContainerNet } from '../../router/container-net'
import type { NetHost } from '../../router/net'
import type { Allocator } from '../../ipam'

const enc = (o: unknown) => new TextEncoder().encode(JSON.stringify(o))

test('hello: the fastdp offer round-trips; an old hello has none; junk offers are tamed', () => {
  const ready = decodeOverlayControl(encodeOverlayControl({ t: 'hello', port: 6783, got: false, fastdp: true }))
  assert.equal(ready, { t: 'hello', port: 6783, pub: undefined, got: false, fastdp: true })
  const why = decodeOverlayControl(encodeOverlayControl({ t: 'hello', port: 6783, got: true, fastdp: 'no OVS datapath (x)' }))
  assert.equal(why && why.t === 'hello' && why.fastdp, 'no OVS datapath (x)')
  const old = decodeOverlayControl(enc({ t: 'hello', port: 6783, got: false }))
  assert.ok(old && old.t === 'hello' && !('fastdp' in old), 'a peer that predates fastdp offers nothing')
  const odd = decodeOverlayControl(enc({ t: 'hello', port: 6783, got: false, fastdp: { x: 1 } }))
  assert.equal(odd && odd.t === 'hello' && odd.fastdp, 'unreadable fastdp offer')
  const long = decodeOverlayControl(enc({ t: 'hello', port: 6783, got: false, fastdp: 'a\n'.repeat(500) }))
  const s = long && long.t === 'hello' ? long.fastdp as string : ''
  assert.ok(s.length <= 200 && !s.includes('\n'), 'peer text is cut and printable')
})

test('chooseOverlay: fastdp only when both ends are ready, else sleeve with the reason', () => {
  const ip = '192.168.250.2'
  assert.equal(chooseOverlay({ ready: true }, { ip, fastdp: true }), { via: 'fastdp' })
  assert.equal(chooseOverlay({ ready: false, why: 'no OVS datapath (x)' }, { ip, fastdp: true }), { via: 'sleeve', why: 'here: no OVS datapath (x)' })
  assert.equal(chooseOverlay({ ready: true }, { ip, fastdp: 'fastdp turned off (--no-fastdp)' }), { via: 'sleeve', why: 'on the peer: fastdp turned off (--no-fastdp)' })
  assert.equal(chooseOverlay({ ready: true }, { ip, fastdp: undefined }), { via: 'sleeve', why: 'peer without fastdp' })
  assert.is(chooseOverlay({ ready: true }, { ip: 'fd00::2', fastdp: true }).via, 'sleeve')
})

test('status line: fastdp has no sleeve MTU; sleeve says why not fastdp', () => {
  const base = { peer: 'aa:bb:cc:dd:ee:ff', nickname: 'h2', addr: '192.168.250.2:6783', outbound: true, state: 'established' as const, encrypted: false, mtu: 1448 }
  assert.is(overlayConnectionLine({ ...base, overlay: 'fastdp' }), '-> 192.168.250.2:6783 established fastdp aa:bb:cc:dd:ee:ff(h2)')
  assert.is(overlayConnectionLine({ ...base, overlay: 'sleeve', why: 'peer without fastdp' }),
    '-> 192.168.250.2:6783 established sleeve mtu=1448 (not fastdp: peer without fastdp) aa:bb:cc:dd:ee:ff(h2)')
})

test('config: WEAVE_OVSDB, --ovsdb, OVS_RUNDIR, --no-fastdp and WEAVE_NO_FASTDP', () => {
  const d = parseDaemonArgs([], {})
  assert.is(d.ovsdb, 'unix:/var/run/openvswitch/db.sock')
  assert.is(d.ovsRundir, undefined)
  assert.is(d.noFastdp, false)
  assert.is(parseDaemonArgs([], { WEAVE_OVSDB: 'unix:/x/db.sock', OVS_RUNDIR: '/x' }).ovsdb, 'unix:/x/db.sock')
  assert.is(parseDaemonArgs([], { OVS_RUNDIR: '/x' }).ovsRundir, '/x')
  assert.is(parseDaemonArgs(['--ovsdb', 'tcp:127.0.0.1:6640'], { WEAVE_OVSDB: 'unix:/x' }).ovsdb, 'tcp:127.0.0.1:6640')
  assert.is(parseDaemonArgs(['--no-fastdp'], {}).noFastdp, true)
  assert.is(parseDaemonArgs([], { WEAVE_NO_FASTDP: '1' }).noFastdp, true)
  assert.is(parseDaemonArgs([], { WEAVE_NO_FASTDP: '0' }).noFastdp, false)
  assert.is(parseDaemonArgs([], { WEAVE_NO_FASTDP: '' }).noFastdp, false)
  assert.is(d.fastdpUserspace, false)
  assert.is(parseDaemonArgs(['--fastdp-userspace'], {}).fastdpUserspace, true)
  assert.is(parseDaemonArgs([], { WEAVE_FASTDP_USERSPACE: '1' }).fastdpUserspace, true)
  assert.is(parseDaemonArgs([], { WEAVE_FASTDP_USERSPACE: '0' }).fastdpUserspace, false)
})

function wiring(cfg: Partial<WeaverConfig>, probe: (t: string) => Promise<void>, kernel = false) {
  const config = { meshHost: '0.0.0.0', meshPort: 6783, mtu: 1376, password: undefined, dockerApi: 'unix:///nonexistent/x.sock', ovsdb: 'unix:/nonexistent/db.sock', noFastdp: false, ...cfg } as unknown as WeaverConfig
  const probed: string[] = []
  const w = wireOverlay(config, {
    clock: new FakeClock(), logger: nullLogger, net: {} as NetHost, containerNet: {} as ContainerNet, allocator: { owned: () => [] } as unknown as Allocator,
    router: new ApiRouter(), kernelDatapath: () => kernel, probeOvsdb: async (t) => { probed.push(t); await probe(t) },
  })
  return { w, probed }
}

test('routerLink: OVS on the kernel datapath, userspace only when asked, else the kernel vxlan path (pcap); status says why', async () => {
  const kernel = wiring({}, async () => undefined, true)
  assert.is(await kernel.w.routerLink(), 'ovs')
  assert.equal(kernel.probed, ['unix:/nonexistent/db.sock'])

  const user = wiring({ fastdpUserspace: true }, async () => undefined)
  assert.is(await user.w.routerLink(), 'ovs', '--fastdp-userspace: the userspace datapath')

  const notAsked = wiring({}, async () => undefined)
  assert.is(await notAsked.w.routerLink(), 'pcap', 'no module, not asked for userspace: the kernel vxlan path on the bridge')
  assert.match(notAsked.w.statusLines().find(([k]) => k === 'Fastdp')?.[1] ?? '',
    /^off: not started \(kernel vxlan: no openvswitch kernel module \(the userspace OVS datapath only with --fastdp-userspace\)\)$/)

  const down = wiring({}, async () => { throw new Error('connect-failed: unix:/nonexistent/db.sock: connect ENOENT /nonexistent/db.sock') })
  assert.is(await down.w.routerLink(), 'pcap')
  const line = down.w.statusLines().find(([k]) => k === 'Fastdp')?.[1] ?? ''
  assert.match(line, /^off: not started \(kernel vxlan: no OVS datapath \(no openvswitch kernel module, and no OVSDB server at unix:\/nonexistent\/db.sock: connect ENOENT/)

  const off = wiring({ noFastdp: true }, async () => undefined)
  assert.is(await off.w.routerLink(), 'pcap')
  assert.equal(off.probed, [], '--no-fastdp asks no OVSDB server')
  assert.match(off.w.statusLines().find(([k]) => k === 'Fastdp')?.[1] ?? '', /--no-fastdp/)
})

test.run()
