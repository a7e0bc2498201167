/**
 * The CNI plugin's C front (cni/shim/weave-net.c, as built by scripts/build-native.js) on its own:
 * VERSION answered by itself; ADD/DEL/CHECK forwarded to /cni/run on the conf's socket (a recorded
 * router on a unix socket here) with the plugin's stdout and exit code passed through; everything
 * unusual handed to `weave-net.d/node-plugin` (a recording script here) with the same stdin.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { cniFrontBuildPath } from '../../cni/install'
import { skipTest } from '../skip'

const front = cniFrontBuildPath()
let dir = ''
let plugin = ''

/** Run the front like a runtime does, asynchronously (the recorded router answers on this thread). */
function runFront(env: Record<string, string>, stdin: string): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(plugin, [], { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 20_000, maxBuffer: 64 << 20 }, (err, stdout) => {
      if (!err) return resolve({ code: 0, stdout })
      const code = (err as { code?: unknown }).code
      if (typeof code === 'number') resolve({ code, stdout })
      else reject(new Error(`weave-net: ${err.message}`)) // not started, or killed by the timeout
    })
    child.stdin?.end(stdin)
  })
}

/** A router that answers /cni/run as `answer` says and records the request. */
async function recordedRouter(sock: string, answer: (req: string) => string): Promise<{ requests: string[]; close(): Promise<void> }> {
  const requests: string[] = []
  const server = net.createServer((c) => {
    let buf = ''
    c.on('data', (d) => {
      buf += d.toString('utf8')
      const sep = buf.indexOf('\r\n\r\n')
      if (sep < 0) return
      const len = Number(/content-length: (\d+)/i.exec(buf.slice(0, sep))?.[1] ?? 0)
      if (buf.length < sep + 4 + len) return
      requests.push(buf)
      c.end(answer(buf))
    })
  })
  await new Promise<void>((res) => server.listen(sock, res))
  return { requests, close: () => new Promise((res) => server.close(() => res())) }
}

if (!fs.existsSync(front)) {
  skipTest('cni front', `not built (${front}): npm run build`)
} else {
  test.before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cni-front-'))
    plugin = path.join(dir, 'weave-net')
    fs.copyFileSync(front, plugin)
    fs.chmodSync(plugin, 0o755)
    fs.mkdirSync(path.join(dir, 'weave-net.d'))
    // The node plugin's stand-in: says it ran, with the command and the stdin it got.
    fs.writeFileSync(path.join(dir, 'weave-net.d', 'node-plugin'), '#!/bin/sh\nprintf "node-plugin %s " "$CNI_COMMAND"\ncat\nexit 7\n', { mode: 0o755 })
  })
  test.after(() => { fs.rmSync(dir, { recursive: true, force: true }) })

  test('VERSION is answered by the front, echoing a supported conf version', async () => {
    const a = await runFront({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"0.4.0","name":"x"}')
    assert.is(a.code, 0)
    assert.equal(JSON.parse(a.stdout), { cniVersion: '0.4.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] })
    const b = await runFront({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"0.2.0"}')
    assert.is(JSON.parse(b.stdout).cniVersion, '1.0.0')
  })

  test('ADD goes to /cni/run on the conf\'s socket; the answer\'s body and exit code come out', async () => {
    const sock = path.join(dir, 'api.sock')
    const body = '{"cniVersion":"1.0.0","code":4,"msg":"x"}\n'
    const r = await recordedRouter(sock, () => `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Cni-Exit-Code: 3\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`)
    try {
      const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'weave', type: 'weave-net', socket: sock, note: 'quote " and \\ and \n' })
      const a = await runFront({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/p', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin', OTHER: 'not sent' }, conf)
      assert.is(a.code, 3)
      assert.is(a.stdout, body)
      const req = r.requests[0]
      assert.match(req, /^POST \/cni\/run HTTP\/1\.1\r\n/)
      assert.match(req, /\r\nContent-Type: application\/json\r\n/i)
      const sent = JSON.parse(req.slice(req.indexOf('\r\n\r\n') + 4))
      assert.equal(sent, { env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/p', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' }, stdin: conf })
    } finally {
      await r.close()
    }
  })

  test('a router without /cni/run (404) hands the command to the node plugin', async () => {
    const sock = path.join(dir, 'old.sock')
    const r = await recordedRouter(sock, () => 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
    try {
      const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'weave', type: 'weave-net', socket: sock })
      const a = await runFront({ CNI_COMMAND: 'DEL' }, conf)
      assert.is(a.code, 7)
      assert.is(a.stdout, `node-plugin DEL ${conf}`)
    } finally {
      await r.close()
    }
  })

  test('unusual input goes to the node plugin with the same stdin', async () => {
    const cases: Array<[string, Record<string, string>, string]> = [
      ['no router at the socket', { CNI_COMMAND: 'ADD' }, JSON.stringify({ cniVersion: '1.0.0', socket: path.join(dir, 'none.sock') })],
      ['no socket named, none at the default', { CNI_COMMAND: 'ADD', WEAVE_RUN_DIR: path.join(dir, 'nowhere') }, '{"cniVersion":"1.0.0"}'],
      ['not JSON', { CNI_COMMAND: 'ADD' }, '{"cniVersion": "1.0.0",'],
      ['an unsupported version', { CNI_COMMAND: 'CHECK' }, '{"cniVersion":"0.2.0","socket":"/x.sock"}'],
      ['a relative socket', { CNI_COMMAND: 'ADD' }, '{"cniVersion":"1.0.0","socket":"api.sock"}'],
      ['an unknown command', { CNI_COMMAND: 'GC' }, '{"cniVersion":"1.0.0"}'],
      ['no command', {}, '{"cniVersion":"1.0.0"}'],
      // more than a pipe holds: written to the node plugin while it reads
      ['a large conf, no router', { CNI_COMMAND: 'ADD' }, JSON.stringify({ cniVersion: '1.0.0', socket: path.join(dir, 'none.sock'), pad: 'x'.repeat(3 << 20) })],
    ]
    for (const [what, env, stdin] of cases) {
      const a = await runFront(env, stdin)
      assert.is(a.code, 7, what)
      assert.is(a.stdout, `node-plugin ${env.CNI_COMMAND ?? ''} ${stdin}`, what)
    }
  })

  test('no node plugin beside the front: a CNI error naming the file', () => {
    const lone = path.join(dir, 'lone')
    fs.mkdirSync(lone)
    fs.copyFileSync(front, path.join(lone, 'weave-net'))
    fs.chmodSync(path.join(lone, 'weave-net'), 0o755)
    const r = spawnSync(path.join(lone, 'weave-net'), [], { env: { CNI_COMMAND: 'ADD' }, input: 'nope', encoding: 'utf8' })
    assert.is(r.status, 1)
    const e = JSON.parse(r.stdout)
    assert.is(e.code, 5)
    assert.match(e.msg, /weave-net\.d\/node-plugin/)
  })

  test.run()
}
