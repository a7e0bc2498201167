/**
 * The CNI plugin's pure parts: conf and environment parsing (each problem its spec error code),
 * result shapes per version, the command table with a recorded router (which requests go out,
 * how each router answer maps to a CNI error), HTTP response parsing, the installer's files.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {
  CniError, ERR, RouterUnreachable, defaultConflist, formatResult, installCni, parseEnv, parseNetConf, parseResponse,
  runPlugin, wrapperScript, type RouterAnswer,
} from '../../cni'

const SOCK = '/run/weave/api.sock'
const env = (cmd: string, extra: Record<string, string> = {}) => ({ CNI_COMMAND: cmd, CNI_CONTAINERID: 'abc123', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', ...extra })
const conf = (v = '1.0.0', extra: Record<string, unknown> = {}) => JSON.stringify({ cniVersion: v, name: 'weave', type: 'weave-net', ...extra })

function codeOf(fn: () => unknown): number | undefined {
  try { fn() } catch (err) { return err instanceof CniError ? err.code : -1 }
  return undefined
}

test('conf: versions, fields and their error codes', () => {
  const c = parseNetConf(conf('0.4.0', { hairpinMode: true, mtu: 1376, ipam: { subnet: '10.32.1.0/24', routes: [{ dst: '0.0.0.0/0', gw: '10.32.1.1' }] } }), SOCK)
  assert.equal(c, { cniVersion: '0.4.0', name: 'weave', socket: SOCK, hairpinMode: true, mtu: 1376, prevAddresses: [], subnet: '10.32.1.0/24', routes: [{ dst: '0.0.0.0/0', gw: '10.32.1.1' }] })
  assert.is(parseNetConf(conf('1.0.0', { socket: '/x/api.sock' }), SOCK).socket, '/x/api.sock')
  assert.is(codeOf(() => parseNetConf('{', SOCK)), ERR.DECODE)
  assert.is(codeOf(() => parseNetConf(conf('0.2.0'), SOCK)), ERR.INCOMPATIBLE_VERSION)
  assert.is(codeOf(() => parseNetConf(conf('1.0.0', { socket: 'relative' }), SOCK)), ERR.INVALID_CONFIG)
  assert.is(codeOf(() => parseNetConf(conf('1.0.0', { mtu: 10 }), SOCK)), ERR.INVALID_CONFIG)
  assert.is(codeOf(() => parseNetConf(conf('1.0.0', { ipam: { type: 'host-local' } }), SOCK)), ERR.UNSUPPORTED_FIELD)
  assert.is(codeOf(() => parseNetConf(conf('1.0.0', { ipam: { subnet: '10.32.0.0/40' } }), SOCK)), ERR.INVALID_CONFIG)
  assert.is(codeOf(() => parseNetConf(conf('1.0.0', { ipam: { routes: [{ dst: '0.0.0.0/0', gw: '300.1.1.1' }] } }), SOCK)), ERR.INVALID_CONFIG)
  assert.is(codeOf(() => parseNetConf(JSON.stringify({ cniVersion: '1.0.0' }), SOCK)), ERR.INVALID_CONFIG)
  const prev = parseNetConf(conf('1.0.0', { prevResult: { ips: [{ address: '10.32.0.5/12' }, { address: 'junk' }] } }), SOCK)
  assert.equal(prev.prevAddresses, ['10.32.0.5/12'])
})

test('environment: what each command needs', () => {
  assert.equal(parseEnv(env('ADD')), { command: 'ADD', containerId: 'abc123', ifname: 'eth0', netns: '/run/netns/x' })
  assert.is(parseEnv(env('DEL', { CNI_NETNS: '' })).netns, undefined, 'DEL without a namespace is fine')
  assert.is(codeOf(() => parseEnv(env('ADD', { CNI_NETNS: '' }))), ERR.INVALID_ENV)
  assert.is(codeOf(() => parseEnv(env('CHECK', { CNI_IFNAME: '' }))), ERR.INVALID_ENV)
  assert.is(codeOf(() => parseEnv(env('FROB'))), ERR.INVALID_ENV)
})

test('results: ips[].version before 1.0.0 only; gateway only where on-link', () => {
  const o = { hostVeth: 'vethweplabc123', ifname: 'eth0', mac: '02:00:00:00:00:01', netns: '/n', addresses: ['10.32.0.5/12'], gateway: '10.32.0.1', routes: [{ dst: '0.0.0.0/0', gw: '10.32.0.1' }] }
  const old = JSON.parse(formatResult('0.3.1', o))
  assert.equal(old.ips, [{ version: '4', address: '10.32.0.5/12', gateway: '10.32.0.1', interface: 1 }])
  assert.equal(old.interfaces, [{ name: 'vethweplabc123' }, { name: 'eth0', mac: '02:00:00:00:00:01', sandbox: '/n' }])
  const now = JSON.parse(formatResult('1.0.0', { ...o, gateway: '10.64.0.1' }))
  assert.equal(now.ips, [{ address: '10.32.0.5/12', interface: 1 }])
  assert.is(now.cniVersion, '1.0.0')
})

/** A router that records requests and answers from a table. */
function recorder(answers: Record<string, RouterAnswer | Error>) {
  const calls: Array<{ socket: string; path: string; body: any }> = []
  const call = async (socket: string, p: string, body: unknown) => {
    calls.push({ socket, path: p, body })
    const a = answers[p]
    if (a instanceof Error) throw a
    return a ?? { status: 404, body: `no such API path: ${p}` }
  }
  return { calls, call }
}

test('ADD asks the router once and prints the result in the conf version', async () => {
  const r = recorder({ '/cni/add': { status: 200, body: JSON.stringify({ mac: 'm', addresses: ['10.32.0.9/12'], gateway: '10.32.0.1', routes: [{ dst: '0.0.0.0/0', gw: '10.32.0.1' }], hostVeth: 'vethweplabc123' }) } })
  const out = await runPlugin({ env: env('ADD'), stdin: conf('0.4.0', { hairpinMode: true, ipam: { subnet: '10.32.0.0/12' } }), defaultSocket: SOCK }, r.call)
  assert.is(out.exitCode, 0, out.stdout)
  assert.equal(r.calls, [{ socket: SOCK, path: '/cni/add', body: { containerId: 'abc123', netns: '/run/netns/x', ifname: 'eth0', mtu: undefined, hairpin: true, subnet: '10.32.0.0/12', routes: undefined } }])
  const res = JSON.parse(out.stdout)
  assert.is(res.cniVersion, '0.4.0')
  assert.is(res.ips[0].address, '10.32.0.9/12')
})

test('router answers map to CNI error codes; the message names the cause', async () => {
  const cases: Array<[RouterAnswer | Error, number, RegExp]> = [
    [new RouterUnreachable('/run/weave/api.sock', 'ENOENT'), ERR.TRY_AGAIN_LATER, /\/run\/weave\/api\.sock.*ENOENT/],
    [{ status: 400, body: 'subnet: bad' }, ERR.INVALID_CONFIG, /subnet: bad/],
    [{ status: 503, body: 'IPAM awaiting consensus' }, ERR.TRY_AGAIN_LATER, /consensus/],
    [{ status: 500, body: 'cannot attach eth0: boom' }, ERR.ROUTER_FAILED, /boom/],
    [{ status: 404, body: 'no such API path: /cni/add' }, ERR.ROUTER_FAILED, /no CNI API/],
    [new Error('socket hang up'), ERR.IO_FAILURE, /hang up/],
  ]
  for (const [answer, code, msg] of cases) {
    const r = recorder({ '/cni/add': answer })
    const out = await runPlugin({ env: env('ADD'), stdin: conf(), defaultSocket: SOCK }, r.call)
    assert.is(out.exitCode, 1)
    const e = JSON.parse(out.stdout)
    assert.is(e.code, code, out.stdout)
    assert.match(e.msg, msg)
    assert.is(e.cniVersion, '1.0.0')
  }
})

test('CHECK: 409 is a check failure; 0.3.x refuses CHECK without asking the router', async () => {
  const r = recorder({ '/cni/check': { status: 409, body: 'no interface eth0 in /run/netns/x' } })
  const out = await runPlugin({ env: env('CHECK'), stdin: conf('0.4.0', { prevResult: { ips: [{ address: '10.32.0.9/12' }] } }), defaultSocket: SOCK }, r.call)
  assert.is(JSON.parse(out.stdout).code, ERR.CHECK_FAILED)
  assert.equal(r.calls[0].body.addresses, ['10.32.0.9/12'])
  const old = recorder({})
  const o2 = await runPlugin({ env: env('CHECK'), stdin: conf('0.3.1'), defaultSocket: SOCK }, old.call)
  assert.is(JSON.parse(o2.stdout).code, ERR.INCOMPATIBLE_VERSION)
  assert.is(old.calls.length, 0)
})

test('VERSION needs no router and echoes a supported conf version', async () => {
  const r = recorder({})
  const out = await runPlugin({ env: { CNI_COMMAND: 'VERSION' }, stdin: '{"cniVersion":"0.3.1"}', defaultSocket: SOCK }, r.call)
  assert.equal(JSON.parse(out.stdout), { cniVersion: '0.3.1', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] })
  assert.is(r.calls.length, 0)
})

test('HTTP answers: content-length and chunked bodies', () => {
  assert.equal(parseResponse(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')), { status: 200, body: 'ok' })
  assert.equal(parseResponse(Buffer.from('HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n')), { status: 409, body: 'abcde' })
  assert.throws(() => parseResponse(Buffer.from('garbage')))
})

test('installer: plugin files, wrapper, conflist only when absent', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cni-install-'))
  try {
    const noFront = path.join(dir, 'no-such-front')
    const opts = { binDir: path.join(dir, 'bin'), confDir: path.join(dir, 'net.d'), socket: '/r/api.sock', node: '/usr/bin/node', front: noFront }
    const a = installCni(opts)
    assert.ok(a.conflistWritten)
    assert.not.ok(a.front, 'no front built: the node wrapper is the plugin')
    assert.ok(fs.existsSync(path.join(dir, 'bin', 'weave-net.d', 'main.js')))
    assert.is(fs.readFileSync(a.plugin, 'utf8'), wrapperScript('/usr/bin/node', path.join(dir, 'bin', 'weave-net.d')))
    const inLib = fs.readFileSync(path.join(dir, 'bin', 'weave-net.d', 'node-plugin'), 'utf8')
    assert.match(inLib, /exec '\/usr\/bin\/node' "\$\{0%\/\*\}"\/main.js "\$@"/, 'the front\'s fallback finds main.js beside itself')
    const frontFile = path.join(dir, 'front')
    fs.writeFileSync(frontFile, '\x7fELF front')
    const b = installCni({ ...opts, front: frontFile })
    assert.ok(b.front)
    assert.is(fs.readFileSync(b.plugin, 'utf8'), '\x7fELF front', 'the built front is the plugin')
    assert.ok((fs.statSync(b.plugin).mode & 0o111) !== 0, 'executable')
    assert.match(wrapperScript('/usr/bin/node', path.join(dir, 'bin', 'weave-net.d')), /exec '\/usr\/bin\/node' "\$\{0%\/\*\}"\/'weave-net.d'\/main.js "\$@"/)
    const copied = wrapperScript(path.join(dir, 'bin', 'weave-net.d', 'node'), path.join(dir, 'bin', 'weave-net.d'))
    assert.match(copied, /exec "\$\{0%\/\*\}"\/'weave-net.d'\/'node' "\$\{0%\/\*\}"\/'weave-net.d'\/main.js/, 'a node copied beside the plugin is found from the wrapper too')
    assert.equal(JSON.parse(fs.readFileSync(a.conflist, 'utf8')), defaultConflist(opts))
    fs.writeFileSync(a.conflist, '{"mine":true}')
    assert.not.ok(installCni(opts).conflistWritten)
    assert.is(fs.readFileSync(a.conflist, 'utf8'), '{"mine":true}')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test.run()
