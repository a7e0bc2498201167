/**
 * The weave-net CNI plugin driven directly, as a runtime does (CNI_* variables, conf on stdin),
 * against a real router in a lab host: `weave setup-cni` installs it (conflist only when absent);
 * VERSION; for each of 0.3.0, 0.3.1, 0.4.0 and 1.0.0 an ADD (address in the range, the version
 * echoed, default route via the bridge's weave:expose address, hairpin as asked), CHECK (from
 * 0.4.0), CHECK after the interface is deleted (a CNI error), DEL twice and DEL without a
 * namespace (exit 0, lease freed, no veth left); conf routes instead of the default; errors as CNI
 * error JSON (router not running within 5 s naming the socket, bad conf, missing variables); a
 * router restart keeps a pod's address; the installed plugin is the C front, which needs no node process.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {
  addressesIn, createLab, createPodNetns, labUnavailableReason, preparePodDir, removePodNetns, REPO_ROOT, runPlugin, setupCni, waitFor,
  type HostCni, type Lab, type LabHost,
} from '../lab'
import { run } from '../lab/exec'
import { skipFile } from '../skip'

const VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] as const
const RANGE = '10.32.0.0/12'

function reasonToSkip(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)'
  if (!fs.existsSync(path.join(REPO_ROOT, 'dist', 'cni', 'main.js'))) return 'weave is not built (dist/cni/main.js)'
  return labUnavailableReason({})
}

const why = reasonToSkip()
if (why) skipFile('cni plugin lab', why)
else {
  let lab: Lab
  let h: LabHost
  let cni: HostCni
  const conf = (v: string, extra: Record<string, unknown> = {}) => ({
    cniVersion: v, name: 'weave', type: 'weave-net', hairpinMode: true, socket: h.apiSocket, ...extra,
  })
  const id = (s: string) => (s + '0'.repeat(64)).slice(0, 64)
  const inRange = (cidr: string) => /^10\.(3[2-9]|4[0-7])\.\d+\.\d+\/12$/.test(cidr)
  const leases = async (cid: string) => (await h.api(`/ip/${cid}`)).text.trim()
  const vethGone = async (cid: string) => (await h.exec(['ip', 'link', 'show', `vethwepl${cid.slice(0, 7)}`], { allowFail: true })).code !== 0
  const parse = (s: string) => JSON.parse(s) as Record<string, any>

  test.before(async () => {
    lab = await createLab({ hosts: 1 })
    h = lab.hosts[0]
    await preparePodDir(h)
    const r = await h.launchWeave(['--ipalloc-init', 'consensus=1', '--ipalloc-range', RANGE])
    assert.is(r.code, 0, r.stderr)
    cni = await setupCni(h)
  })
  test.after(async () => { await lab?.teardown() })

  test('setup-cni installs the plugin and writes 10-weave.conflist only when absent', async () => {
    assert.ok(fs.statSync(cni.plugin).mode & 0o100, 'plugin is executable')
    const list = JSON.parse(fs.readFileSync(cni.conflist, 'utf8'))
    assert.is(list.name, 'weave')
    assert.equal(list.plugins.map((p: { type: string }) => p.type), ['weave-net', 'portmap'])
    assert.is(list.plugins[0].socket, h.apiSocket)
    fs.writeFileSync(cni.conflist, JSON.stringify({ ...list, edited: true }))
    const again = await h.weave(['setup-cni', '--bin-dir', cni.binDir, '--conf-dir', cni.confDir])
    assert.match(again.stdout, /kept/)
    assert.is(JSON.parse(fs.readFileSync(cni.conflist, 'utf8')).edited, true, 'an existing conflist is kept')
  })

  test('VERSION lists 0.3.0, 0.3.1, 0.4.0 and 1.0.0', async () => {
    const r = await runPlugin(h, cni.plugin, { command: 'VERSION', conf: { cniVersion: '0.4.0' } })
    assert.is(r.code, 0, r.stdout + r.stderr)
    const v = parse(r.stdout)
    assert.equal(v.supportedVersions, [...VERSIONS])
    assert.is(v.cniVersion, '0.4.0')
  })

  for (const v of VERSIONS) {
    test(`${v}: ADD, CHECK, CHECK after the interface is deleted, DEL twice`, async () => {
      const cid = id(`c${v.replace(/\./g, '')}`)
      const ns = await createPodNetns(h, `p${v.replace(/\./g, '')}`)
      try {
        const add = await runPlugin(h, cni.plugin, { command: 'ADD', containerId: cid, netns: ns, ifname: 'eth0', conf: conf(v) })
        assert.is(add.code, 0, add.stdout + add.stderr)
        const res = parse(add.stdout)
        assert.is(res.cniVersion, v, 'the conf\'s version is echoed')
        const ip = res.ips[0]
        assert.ok(inRange(ip.address), `address ${ip.address} in ${RANGE}`)
        assert.is(ip.version, v === '1.0.0' ? undefined : '4', 'ips[].version only before 1.0.0')
        assert.is(res.interfaces[ip.interface].name, 'eth0')
        assert.is(res.interfaces[ip.interface].sandbox, ns)
        assert.equal(await addressesIn(ns, 'eth0'), [ip.address])
        // default route via the bridge's address, which weave:expose holds
        assert.equal(res.routes, [{ dst: '0.0.0.0/0', gw: ip.gateway }])
        const expose = (await h.api('/ip/weave:expose')).text.trim()
        assert.is(expose.replace(/\/\d+$/, ''), ip.gateway)
        const route = await run(['nsenter', `--net=${ns}`, 'ip', 'route', 'show', 'default'])
        assert.match(route.stdout, new RegExp(`default via ${ip.gateway.replace(/\./g, '\\.')} dev eth0`))
        assert.ok((await h.ping(ip.address.split('/')[0])), 'the host reaches the pod over the bridge')
        const hairpin = await h.exec(['cat', `/sys/class/net/vethwepl${cid.slice(0, 7)}/brport/hairpin_mode`])
        assert.is(hairpin.stdout.trim(), '1', 'hairpinMode: true honoured')
        assert.is(await leases(cid), ip.address)

        const check = await runPlugin(h, cni.plugin, { command: 'CHECK', containerId: cid, netns: ns, ifname: 'eth0', conf: conf(v, { prevResult: res }) })
        if (v === '0.3.0' || v === '0.3.1') {
          assert.is(check.code, 1)
          assert.is(parse(check.stdout).code, 1, 'CHECK is not part of 0.3.x')
        } else {
          assert.is(check.code, 0, check.stdout)
          await run(['nsenter', `--net=${ns}`, 'ip', 'link', 'del', 'eth0'])
          const broken = await runPlugin(h, cni.plugin, { command: 'CHECK', containerId: cid, netns: ns, ifname: 'eth0', conf: conf(v, { prevResult: res }) })
          assert.is(broken.code, 1)
          const e = parse(broken.stdout)
          assert.is(e.code, 101)
          assert.match(e.msg, /no interface eth0/)
          assert.is(e.cniVersion, v)
        }

        for (const round of [1, 2]) {
          const del = await runPlugin(h, cni.plugin, { command: 'DEL', containerId: cid, netns: ns, ifname: 'eth0', conf: conf(v, { prevResult: res }) })
          assert.is(del.code, 0, `DEL #${round}: ${del.stdout}${del.stderr}`)
          assert.is(del.stdout.trim(), '')
        }
        assert.is(await leases(cid), '', 'the address is freed')
        assert.ok(await vethGone(cid), 'no veth left')
        assert.equal(await addressesIn(ns, 'eth0'), [])
      } finally {
        await removePodNetns(ns)
      }
    })
  }

  test('hairpinMode false, routes from the conf, DEL without a namespace', async () => {
    const cid = id('croutes')
    const ns = await createPodNetns(h, 'proutes')
    try {
      const c = conf('1.0.0', { hairpinMode: false, ipam: { routes: [{ dst: '10.32.0.0/12' }, { dst: '192.0.2.0/24', gw: '10.32.0.1' }] } })
      const add = await runPlugin(h, cni.plugin, { command: 'ADD', containerId: cid, netns: ns, conf: c })
      assert.is(add.code, 0, add.stdout + add.stderr)
      const res = parse(add.stdout)
      assert.equal(res.routes, [{ dst: '10.32.0.0/12' }, { dst: '192.0.2.0/24', gw: '10.32.0.1' }])
      const routes = (await run(['nsenter', `--net=${ns}`, 'ip', 'route'])).stdout
      assert.match(routes, /192\.0\.2\.0\/24 via 10\.32\.0\.1 dev eth0/)
      assert.not.match(routes, /default/, 'no default route when the conf gives routes')
      const hairpin = await h.exec(['cat', `/sys/class/net/vethwepl${cid.slice(0, 7)}/brport/hairpin_mode`])
      assert.is(hairpin.stdout.trim(), '0')
      await removePodNetns(ns) // the runtime lost the namespace: DEL still frees the address
      const del = await runPlugin(h, cni.plugin, { command: 'DEL', containerId: cid, netns: '', conf: c })
      assert.is(del.code, 0, del.stdout)
      assert.is(await leases(cid), '')
      // With no namespace DEL has no interface to delete: the pair goes when the kernel finishes
      // destroying the namespace, asynchronously (slower under load than DEL's few ms).
      await waitFor('the pod\'s veth gone with its namespace', () => vethGone(cid), 10_000, 100)
    } finally {
      await removePodNetns(ns)
    }
  })

  test('the installed plugin is the C front: VERSION, ADD, CHECK and DEL with no node process', async () => {
    assert.is(fs.readFileSync(cni.plugin).subarray(0, 4).toString('latin1'), '\x7fELF', 'weave-net is the built front, not the node wrapper')
    // With the node plugin out of reach, anything handed to it fails: these must not be.
    const nodePlugin = path.join(cni.binDir, 'weave-net.d', 'node-plugin')
    fs.renameSync(nodePlugin, `${nodePlugin}.away`)
    const ns = await createPodNetns(h, 'pfront')
    const cid = id('cfront')
    try {
      const v = await runPlugin(h, cni.plugin, { command: 'VERSION', conf: { cniVersion: '0.3.1' } })
      assert.equal(parse(v.stdout), { cniVersion: '0.3.1', supportedVersions: [...VERSIONS] })
      const add = await runPlugin(h, cni.plugin, { command: 'ADD', containerId: cid, netns: ns, conf: conf('0.4.0') })
      assert.is(add.code, 0, add.stdout + add.stderr)
      const res = parse(add.stdout)
      assert.is(res.cniVersion, '0.4.0')
      assert.ok(inRange(res.ips[0].address), res.ips[0].address)
      assert.equal(await addressesIn(ns, 'eth0'), [res.ips[0].address])
      const check = await runPlugin(h, cni.plugin, { command: 'CHECK', containerId: cid, netns: ns, conf: conf('0.4.0', { prevResult: res }) })
      assert.is(check.code, 0, check.stdout)
      const bad = await runPlugin(h, cni.plugin, { command: 'ADD', containerId: '', netns: ns, conf: conf('1.0.0') })
      assert.is(bad.code, 1)
      assert.is(parse(bad.stdout).code, 4, 'the plugin code\'s errors come back through the router')
      const del = await runPlugin(h, cni.plugin, { command: 'DEL', containerId: cid, netns: ns, conf: conf('0.4.0') })
      assert.is(del.code, 0, del.stdout)
      assert.is(del.stdout.trim(), '')
      assert.is(await leases(cid), '', 'DEL freed the address')
      assert.ok(await vethGone(cid))
    } finally {
      fs.renameSync(`${nodePlugin}.away`, nodePlugin)
      await removePodNetns(ns)
    }
  })

  test('errors are CNI error JSON naming the cause', async () => {
    const ns = await createPodNetns(h, 'perr')
    try {
      const badVersion = await runPlugin(h, cni.plugin, { command: 'ADD', containerId: id('e1'), netns: ns, conf: conf('0.2.0') })
      assert.is(badVersion.code, 1)
      assert.is(parse(badVersion.stdout).code, 1)
      const noEnv = await runPlugin(h, cni.plugin, { command: 'ADD', containerId: '', netns: ns, conf: conf('1.0.0') })
      assert.is(parse(noEnv.stdout).code, 4)
      assert.match(parse(noEnv.stdout).msg, /CNI_CONTAINERID/)
      const badConf = await runPlugin(h, cni.plugin, { command: 'ADD', containerId: id('e2'), netns: ns, conf: conf('1.0.0', { ipam: { subnet: '10.32.0.0/33' } }) })
      assert.is(parse(badConf.stdout).code, 7)
      assert.match(parse(badConf.stdout).msg, /ipam\.subnet/)
      const outside = await runPlugin(h, cni.plugin, { command: 'ADD', containerId: id('e3'), netns: ns, conf: conf('1.0.0', { ipam: { subnet: '192.168.7.0/24' } }) })
      assert.is(outside.code, 1)
      assert.match(parse(outside.stdout).msg, /out of bounds|192\.168\.7/)
      assert.is(parse(outside.stdout).code, 7, 'a subnet outside the range is a configuration error')
      const gone = path.join(h.dir, 'no-such-router', 'api.sock')
      const t0 = Date.now()
      const down = await runPlugin(h, cni.plugin, { command: 'ADD', containerId: id('e4'), netns: ns, conf: conf('1.0.0', { socket: gone }) })
      assert.ok(Date.now() - t0 < 5000, `answered in ${Date.now() - t0} ms`)
      const e = parse(down.stdout)
      assert.is(e.code, 11)
      assert.ok(e.msg.includes(gone), e.msg)
      assert.equal(await addressesIn(ns, 'eth0'), [], 'nothing attached by failed ADDs')
    } finally {
      await removePodNetns(ns)
    }
  })

  test('a router restart keeps the pod\'s address', async () => {
    const cid = id('crestart')
    const ns = await createPodNetns(h, 'prestart')
    try {
      const c = conf('1.0.0')
      const add = await runPlugin(h, cni.plugin, { command: 'ADD', containerId: cid, netns: ns, conf: c })
      assert.is(add.code, 0, add.stdout)
      const res = parse(add.stdout)
      const stop = await h.weave(['stop'])
      assert.is(stop.code, 0, stop.stderr)
      const relaunch = await h.launchWeave(['--ipalloc-init', 'consensus=1', '--ipalloc-range', RANGE])
      assert.is(relaunch.code, 0, relaunch.stderr)
      assert.is(await leases(cid), res.ips[0].address, 'IPAM still gives the address to the pod')
      const check = await runPlugin(h, cni.plugin, { command: 'CHECK', containerId: cid, netns: ns, conf: { ...c, prevResult: res } })
      assert.is(check.code, 0, check.stdout)
      const other = await runPlugin(h, cni.plugin, { command: 'ADD', containerId: id('cother'), netns: await createPodNetns(h, 'pother'), conf: c })
      assert.is(other.code, 0, other.stdout)
      assert.is.not(parse(other.stdout).ips[0].address, res.ips[0].address, 'a new pod gets another address')
      for (const [x, n] of [[cid, ns], [id('cother'), path.join(h.dir, 'pods', 'pother')]]) {
        const del = await runPlugin(h, cni.plugin, { command: 'DEL', containerId: x, netns: n, conf: c })
        assert.is(del.code, 0, del.stdout)
      }
    } finally {
      await removePodNetns(ns)
      await removePodNetns(path.join(h.dir, 'pods', 'pother'))
    }
  })
}

test.run()
