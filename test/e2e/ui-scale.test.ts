/**
 * The topology page with a simulated mesh of 100 peers (the pure status model, test/observe-
 * fixtures) behind the real page routes, WebSocket hub and API server on a loopback port of
 * this test's own (port 0): headless Chromium renders all 100 peers in under 2 s, a change in
 * the mesh reaches the page within 2 s, and the WebSocket route, behind the API's Host/Origin
 * guard, refuses other origins and hosts while the page from the API's own origin works.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as fs from 'node:fs'
import * as path from 'node:path'
import WebSocket from 'ws'
import { ApiRouter, createApiServer, type ApiServer } from '../../router/api'
import { createTopologyHub, registerPageRoutes, UI_WS_PATH, type TopologyHub } from '../../router/ui'
import { systemClock } from '../../router/deps'
import { simulatedIpam, simulatedMesh } from '../observe-fixtures'
import { ARTIFACT_DIR, chromiumUnavailableReason, launchChromium, type LaunchedBrowser } from '../browser'
import { skipFile } from '../skip'

const quiet = { debug() {}, info() {}, warn() {}, error() {}, child() { return quiet } }
const N = 100

let st = simulatedMesh(N)
let server: ApiServer
let hub: TopologyHub
let port = 0
let chrome: LaunchedBrowser | undefined

async function setUp(): Promise<void> {
  const router = new ApiRouter()
  registerPageRoutes(router)
  const listen = { host: '127.0.0.1', port: 0 }
  hub = createTopologyHub({
    read: () => ({
      mesh: st, peersText: `${st.peers.length} peers\n`, connectionsText: `${st.connections.length} connections\n`,
      carriers: new Map(st.connections.map((c) => [c.peer!, { datapath: 'sleeve' as const, encrypted: false, mtu: 1376, state: 'established' }])),
      ipamShares: simulatedIpam(st, 10).shares.map((s, i) => ({ peer: st.peers[i].name, addresses: s.addresses, percent: 100 / N })),
      containers: 10,
    }),
    trafficBytes: () => new Map(),
  }, { clock: systemClock(), logger: quiet })
  router.upgrade(UI_WS_PATH, (q, s, h) => hub.handleUpgrade(q, s, h))
  server = createApiServer(router, { tcp: listen }, quiet)
  await server.start()
  port = server.tcpPort()!
}

function wsOutcome(headers: Record<string, string>): Promise<string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ui/ws`, { headers })
    ws.on('open', () => { ws.close(); resolve('open') })
    ws.on('unexpected-response', (_req, res) => { resolve(String(res.statusCode)); ws.terminate() })
    ws.on('error', (err) => resolve(`error: ${err.message}`))
  })
}

const why = chromiumUnavailableReason()
if (why) skipFile('topology page at 100 peers', why)
else {
  test.before(setUp)
  test.after(async () => {
    await chrome?.close()
    await hub?.stop()
    await server?.stop()
  })

  test('the WebSocket (behind the API guard) refuses another origin and a foreign Host; takes its own origin', async () => {
    assert.is(await wsOutcome({ Origin: 'http://evil.example' }), '403')
    assert.is(await wsOutcome({ Host: `rebound.example:${port}` }), '403')
    assert.is(await wsOutcome({ Origin: `http://127.0.0.1:${port}` }), 'open')
    assert.is(await wsOutcome({ Host: `localhost:${port}`, Origin: `http://localhost:${port}` }), 'open')
  })

  test('100 simulated peers render in under 2 s; a mesh change shows within 2 s', async () => {
    chrome = await launchChromium()
    const page = await chrome.context.newPage()
    // a warm browser: its renderer process is up (what Chromium's own cold start costs is not the page's)
    await page.goto(`http://127.0.0.1:${port}/ui?feed=none`)
    const t0 = Date.now()
    await page.goto(`http://127.0.0.1:${port}/ui`)
    await page.waitForFunction((n) => document.querySelectorAll('.node').length === n && document.querySelectorAll('.panel').length === n, N, { timeout: 10_000 })
    const ms = Date.now() - t0
    const applyMs = await page.evaluate(() => (window as unknown as { weaveTopology: { lastApplyMs: number } }).weaveTopology.lastApplyMs)
    const nav = await page.evaluate(() => JSON.stringify(performance.getEntriesByType('navigation').map((e) => Math.round((e as PerformanceNavigationTiming).loadEventEnd))))
    console.log(`100 peers rendered in ${ms} ms (applying the snapshot took ${applyMs.toFixed(0)} ms; page loaded at ${nav} ms)`)
    assert.ok(ms < 2000, `rendered in ${ms} ms`)
    const edges = await page.locator('.edge[data-state="established"]').count()
    const expected = new Set(st.peers.flatMap((p) => p.connections.map((c) => [p.name, c.peer].sort().join('|')))).size
    assert.is(edges, expected)
    fs.mkdirSync(ARTIFACT_DIR, { recursive: true })
    await page.screenshot({ path: path.join(ARTIFACT_DIR, 'ui-100-peers.png') })

    // peer 42 becomes unreachable and loses its links: the page follows within 2 s
    const gone = st.peers[42].name
    st = simulatedMesh(N, { unreachable: [42] })
    st.peers = st.peers.map((p) => p.name === gone ? { ...p, connections: [] } : { ...p, connections: p.connections.filter((c) => c.peer !== gone) })
    st.connections = st.connections.filter((c) => c.peer !== gone)
    const t1 = Date.now()
    await page.waitForFunction((g) => document.querySelector(`.node[data-peer="${g}"]`)?.getAttribute('data-reachable') === 'false'
      && [...document.querySelectorAll('.edge')].filter((e) => (e.getAttribute('data-edge') ?? '').includes(g)).every((e) => e.getAttribute('data-state') === 'gone'), gone, { timeout: 5_000 })
    const changeMs = Date.now() - t1
    console.log(`change shown in ${changeMs} ms`)
    assert.ok(changeMs < 2000, `change shown in ${changeMs} ms`)
  })
}

test.run()
