/**
 * A web page cannot drive the control API (issue 14). A real daemon (`weave launch`) runs in a lab
 * host; headless Chromium runs in the same network namespace and opens a page served from another
 * loopback port there (127.0.0.1:8000). The page tries what any site could: a `no-cors` fetch
 * POST /connect?peer=…, a plain form POST and a text/plain form POST, a JSON fetch (preflighted), a
 * WebSocket, and a DNS-rebinding-style visit (a name mapped to 127.0.0.1). Then:
 *  - the router logged a refusal for each of them (so they did reach it: the check was exercised);
 *  - none of those peers became a target (the router did not act);
 *  - the controls act: the CLI's `weave connect` and a JSON POST with curl on 127.0.0.1:6784.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { chromium, type Browser } from 'playwright-core'
import { labUnavailableReason, waitFor, withLab, type LabHost } from './index'
import { skipFile } from '../skip'

const CHROMIUM = '/usr/bin/chromium'
const API = 'http://127.0.0.1:6784'
const PAGE_PORT = 8000

/** The attacking site: one page, served by node inside the lab host. */
const PAGE_SERVER = `
const http = require('http')
const page = \`<!doctype html><html><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="plain" method="POST" action="${API}/connect?peer=192.0.2.11" target="sink1"><input name="x" value="1"></form>
<form id="text" method="POST" action="${API}/connect?peer=192.0.2.12" target="sink2" enctype="text/plain"><input name="x" value="1"></form>
</body></html>\`
http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/html' }); res.end(page) })
  .listen(${PAGE_PORT}, '127.0.0.1', () => console.log('listening'))
`

const attackPeers = ['192.0.2.10', '192.0.2.11', '192.0.2.12', '192.0.2.13']

function refusalLines(h: LabHost): string[] {
  return h.weaverLog(500).split('\n').filter((l) => / refused: /.test(l))
}

async function targets(h: LabHost): Promise<string> {
  return (await h.api('/status/targets')).text
}

const why = labUnavailableReason({}) ?? (fs.existsSync(CHROMIUM) ? undefined : `no ${CHROMIUM} (apt-get install chromium)`)
if (why) skipFile('control API against a real browser', why)
else {
  test('a page in headless Chromium cannot make the router connect anywhere; the CLI and a JSON client can', async () => {
    await withLab({ hosts: 1 }, async (lab) => {
      const [h1] = lab.hosts
      let browser: Browser | undefined
      try {
        const l = await h1.launchWeave(['--no-proxy'])
        if (l.code !== 0) throw new Error(`launch failed: ${l.stderr}\n${h1.weaverLog()}`)
        const server = h1.spawn([process.execPath, '-e', PAGE_SERVER], { stdio: ['ignore', 'pipe', 'inherit'] })
        await new Promise<void>((res, rej) => { server.stdout!.once('data', () => res()); server.once('exit', (c) => rej(new Error(`page server exited ${c}`))) })

        // Chromium inside h1's namespace: playwright talks to it over inherited pipes (fds 3, 4),
        // which `ip netns exec` passes through; playwright gives it a fresh temporary profile.
        const wrapper = path.join(h1.dir, 'chromium-in-ns.sh')
        fs.writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${h1.ns} ${CHROMIUM} "$@"\n`, { mode: 0o755 })
        browser = await chromium.launch({
          executablePath: wrapper,
          args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run',
            '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP rebind.test 127.0.0.1'],
          timeout: 120_000,
        })
        const page = await browser.newPage()
        await page.goto(`http://127.0.0.1:${PAGE_PORT}/`, { timeout: 60_000 })
        const results = await page.evaluate(async (api) => {
          const out: Record<string, string> = {}
          await fetch(`${api}/connect?peer=192.0.2.10`, { method: 'POST', mode: 'no-cors' })
            .then((r) => { out.noCors = `opaque ${r.type}` }, (e: Error) => { out.noCors = e.message })
          await fetch(`${api}/connect?peer=192.0.2.13`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
            .then((r) => { out.json = `status ${r.status}` }, (e: Error) => { out.json = `blocked: ${e.message}` })
          out.ws = await new Promise<string>((res) => {
            const ws = new WebSocket(api.replace('http', 'ws') + '/status')
            ws.onopen = () => res('open')
            ws.onerror = () => res('error')
          })
          ;(document.getElementById('plain') as HTMLFormElement).submit()
          ;(document.getElementById('text') as HTMLFormElement).submit()
          return out
        }, API)
        console.log(`  page saw: ${JSON.stringify(results)}`)
        assert.match(results.json ?? '', /^blocked/, 'the preflighted JSON fetch never got through')
        assert.is(results.ws, 'error', 'the WebSocket was refused')

        // a rebinding page: its name resolves to 127.0.0.1, so it is "same-origin" with the API
        const rebind = await browser.newPage()
        const resp = await rebind.goto('http://rebind.test:6784/status', { timeout: 60_000 })
        assert.is(resp?.status(), 403, 'a foreign Host is refused')

        // every attempt reached the router and was refused there
        const want = [
          /API POST \/connect\?peer=192\.0\.2\.10: refused: foreign Origin "http:\/\/127\.0\.0\.1:8000"/,
          /API POST \/connect\?peer=192\.0\.2\.11: refused: foreign Origin/,
          /API POST \/connect\?peer=192\.0\.2\.12: refused: foreign Origin/,
          /API OPTIONS \/connect\?peer=192\.0\.2\.13: refused: foreign Origin/, // the preflight; the POST never came
          /API GET \/status: refused: foreign Origin/, // the WebSocket handshake
          /API GET \/status: refused: Host "rebind\.test:6784"/,
        ]
        await waitFor('a refusal logged for each attempt', () => want.every((re) => refusalLines(h1).some((l) => re.test(l))), 20_000, 200)
          .catch((err) => { throw new Error(`${(err as Error).message}\n${refusalLines(h1).join('\n')}\n${h1.weaverLog(20)}`) })
        const t = await targets(h1)
        for (const p of attackPeers) assert.not.ok(t.includes(p), `the page made the router target ${p}:\n${t}`)
        const report = (await h1.api('/report')).text
        for (const p of attackPeers) assert.not.ok(report.includes(p), `${p} in the report`)

        // controls: the same check lets the real clients through, and the targets list shows it
        await h1.weave(['connect', '192.0.2.20'])
        const c = await h1.exec(['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST', '-H', 'content-type: application/json',
          `${API}/connect?peer=192.0.2.21`])
        assert.is(c.stdout, '200', `curl with application/json on TCP: ${c.stdout} ${c.stderr}`)
        const after = await targets(h1)
        assert.ok(after.includes('192.0.2.20') && after.includes('192.0.2.21'), `the controls acted:\n${after}`)
      } finally {
        await browser?.close().catch(() => {})
        await h1.weave(['stop'], { allowFail: true })
      }
    })
  })
}

test.run()
