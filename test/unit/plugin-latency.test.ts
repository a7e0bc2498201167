/** The Docker plugin's socket times every call into weave_request_duration_seconds{component="plugin"}. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as os from 'node:os'
import * as path from 'node:path'
import { createPluginServer } from '../../plugin/server'
import { latencyMetrics } from '../../router/metrics'

const quiet = { debug() {}, info() {}, warn() {}, error() {}, child() { return quiet } }

function post(socketPath: string, p: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: p, method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end('{}')
  })
}

async function count(route: string, code: string): Promise<number> {
  const m = new RegExp(`^weave_request_duration_seconds_count\\{component="plugin",route="${route}",code="${code}"\\} (\\d+)$`, 'm').exec(await latencyMetrics())
  return m ? Number(m[1]) : 0
}

test('each call is counted under its own route; unknown paths under "other"', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-plugin-latency-'))
  const sock = path.join(dir, 'weave.sock')
  const server = createPluginServer(sock, new Map([['Plugin.Activate', () => ({ Implements: ['NetworkDriver'] })]]), quiet)
  await server.start()
  try {
    assert.is(await post(sock, '/Plugin.Activate'), 200)
    assert.is(await post(sock, '/Plugin.Activate'), 200)
    assert.is(await post(sock, '/NetworkDriver.Bogus-123'), 404)
    assert.is(await count('Plugin.Activate', '200'), 2)
    assert.is(await count('other', '404'), 1)
    assert.not.match(await latencyMetrics(), /Bogus-123/)
  } finally {
    await server.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test.run()
