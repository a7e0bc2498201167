/**
 * /metrics without a daemon: Weave's names and labels from the status model, every series at 0
 * when IPAM/DNS/fastdp are absent, per-peer traffic, fallbacks by reason, the latency hook, and
 * the --metrics-addr listener's refusals (real HTTP on a loopback port).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as http from 'node:http'
import { createMetricsServer, createWeaveRegistry, fallbackReason, requestLatency, CONNECTION_STATES } from '../../router/metrics'
import type { MeshStatus } from '../../router/mesh'
import { simulatedMesh, simulatedSources } from '../observe-fixtures'

const quiet = { debug() {}, info() {}, warn() {}, error() {}, child() { return quiet } }

/** `name{labels} value` lines → value by `name{labels}` exactly as written. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue
    const i = line.lastIndexOf(' ')
    out.set(line.slice(0, i), Number(line.slice(i + 1)))
  }
  return out
}

const WEAVE_NAMES = [
  'weave_connections', 'weave_connection_terminations_total', 'weave_ips', 'weave_max_ips', 'weave_dns_entries', 'weave_flows',
  'weave_ipam_unreachable_count', 'weave_ipam_unreachable_percentage', 'weave_ipam_pending_allocates', 'weave_ipam_pending_claims',
]

test('a mesh alone (no IPAM, DNS, fastdp, traffic): every Weave series is there, at 0', async () => {
  const st: MeshStatus = { ...simulatedMesh(1), connections: [], stats: { gossipMessagesSent: 0, gossipBytesSent: 0, connectionsAdded: 0, connectionsClosed: 0 } }
  const text = await createWeaveRegistry({ mesh: () => st }).scrape()
  const s = samples(text)
  for (const n of WEAVE_NAMES) assert.ok(text.includes(`\n${n}`) || text.startsWith(n) || text.includes(`# TYPE ${n} `), `${n} present`)
  assert.is(s.get('weave_ips{state="local-used"}'), 0)
  assert.is(s.get('weave_max_ips'), 0)
  assert.is(s.get('weave_dns_entries'), 0)
  assert.is(s.get('weave_flows'), 0)
  assert.is(s.get('weave_ipam_unreachable_percentage'), 0)
  assert.is(s.get('weave_connection_terminations_total'), 0)
  // the whole state × type × encryption grid, so no series appears or vanishes later
  for (const state of CONNECTION_STATES) for (const type of ['fastdp', 'sleeve', 'none']) for (const enc of ['true', 'false']) {
    assert.is(s.get(`weave_connections{state="${state}",type="${type}",encryption="${enc}"}`), 0, `${state}/${type}/${enc}`)
  }
  for (const reason of ['heartbeats-lost', 'path-mtu', 'no-heartbeats', 'peer', 'encryption', 'other']) {
    assert.is(s.get(`weave_fastdp_fallbacks_total{reason="${reason}"}`), 0)
  }
})

test('connections by state, data path and encryption; pending until a data path carries it', async () => {
  const st = simulatedMesh(4, { encrypted: true })
  st.connections.push({ direction: 'outbound', addr: '192.168.0.9:6783', state: 'retrying', error: 'connect: ECONNREFUSED' })
  const peers = st.connections.filter((c) => c.peer).map((c) => c.peer!)
  const text = await createWeaveRegistry({
    mesh: () => st,
    // first peer by fastdp, second by sleeve, third: TCP up but no data path yet (Weave's pending)
    carrier: (p) => p === peers[0] ? { datapath: 'fastdp', encrypted: true } : p === peers[1] ? { datapath: 'sleeve', encrypted: true } : undefined,
  }).scrape()
  const s = samples(text)
  assert.is(s.get('weave_connections{state="established",type="fastdp",encryption="true"}'), 1)
  assert.is(s.get('weave_connections{state="established",type="sleeve",encryption="true"}'), 1)
  assert.is(s.get('weave_connections{state="pending",type="none",encryption="true"}'), 1)
  assert.is(s.get('weave_connections{state="retrying",type="none",encryption="false"}'), 1)
  assert.is(s.get('weave_connection_terminations_total'), 2)
  assert.is(s.get('weave_gossip_bytes_total'), 1234)
})

test('IPAM, traffic per peer and data path, fallbacks by reason', async () => {
  const src = simulatedSources(5, 7)
  const st = src.mesh()
  const down = { ...src.ipam!()!, shares: [{ addresses: 100, reachable: true }, { addresses: 300, reachable: false }], rangeSize: 1000 }
  const s = samples(await createWeaveRegistry({ ...src, ipam: () => down, dnsEntries: () => 4, flows: () => 12 }).scrape())
  assert.is(s.get('weave_ips{state="local-used"}'), 7)
  assert.is(s.get('weave_max_ips'), 1000)
  assert.is(s.get('weave_ipam_unreachable_count'), 1)
  assert.is(s.get('weave_ipam_unreachable_percentage'), 30)
  assert.is(s.get('weave_dns_entries'), 4)
  assert.is(s.get('weave_flows'), 12)
  const t = src.traffic!()
  for (const x of t) {
    const l = `{peer="${x.peer}",datapath="${x.datapath}",encryption="false"}`
    assert.is(s.get(`weave_peer_tx_bytes_total${l}`), x.txBytes)
    assert.is(s.get(`weave_peer_rx_bytes_total${l}`), x.rxBytes)
    assert.is(s.get(`weave_peer_tx_packets_total${l}`), x.txPackets)
    assert.is(s.get(`weave_peer_rx_packets_total${l}`), x.rxPackets)
  }
  assert.is(t.length, st.connections.length)
  assert.is(s.get('weave_fastdp_fallbacks_total{reason="heartbeats-lost"}'), 2)
})

test('a neighbour without traffic yet has its series at 0', async () => {
  const st = simulatedMesh(3)
  const s = samples(await createWeaveRegistry({ mesh: () => st, traffic: () => [] }).scrape())
  for (const c of st.connections) assert.is(s.get(`weave_peer_tx_bytes_total{peer="${c.peer}",datapath="sleeve",encryption="false"}`), 0)
})

test('each scrape refreshes the fast path\'s counters first, and a failed refresh does not break it', async () => {
  const st = simulatedMesh(3)
  const peer = st.connections[0].peer!
  let reads = 0
  let fast = { peer, datapath: 'fastdp' as const, encrypted: false, txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0 }
  const reg = createWeaveRegistry({
    mesh: () => st,
    traffic: () => [fast],
    async refresh() { reads++; fast = { ...fast, txBytes: 1000 * reads, txPackets: reads } },
  })
  const s1 = samples(await reg.scrape())
  assert.is(s1.get(`weave_peer_tx_bytes_total{peer="${peer}",datapath="fastdp",encryption="false"}`), 1000)
  const s2 = samples(await reg.scrape())
  assert.is(s2.get(`weave_peer_tx_bytes_total{peer="${peer}",datapath="fastdp",encryption="false"}`), 2000)
  assert.is(s2.get(`weave_peer_tx_packets_total{peer="${peer}",datapath="fastdp",encryption="false"}`), 2)
  const broken = createWeaveRegistry({ mesh: () => st, traffic: () => [fast], refresh: () => Promise.reject(new Error('nft: not found')) })
  assert.is(samples(await broken.scrape()).get(`weave_peer_tx_bytes_total{peer="${peer}",datapath="fastdp",encryption="false"}`), 2000)
})

test('fallback reasons: the overlay switch\'s texts map to a few label values', () => {
  assert.is(fallbackReason('full-size fastdp heartbeats do not get through both ways, small ones do (the path MTU is too small ...)'), 'path-mtu')
  assert.is(fallbackReason('fastdp heartbeats do not get through to the peer (UDP vxlan port blocked, or the path MTU too small for full-size frames)'), 'heartbeats-lost')
  assert.is(fallbackReason('no fastdp heartbeats'), 'no-heartbeats')
  assert.is(fallbackReason('the peer offers fastdp without ESP encryption'), 'encryption')
  assert.is(fallbackReason('on the peer: no OVS'), 'peer')
  assert.is(fallbackReason(undefined), 'other')
})

test('the latency hook records into weave_request_duration_seconds of every registry', async () => {
  const lat = requestLatency('plugin')
  const done = lat.start('NetworkDriver.CreateEndpoint')
  done(200)
  done(500) // a second call is ignored
  lat.observe('IpamDriver.RequestAddress', 200, 0.003)
  const text = await createWeaveRegistry({ mesh: () => simulatedMesh(1) }).scrape()
  const s = samples(text)
  assert.is(s.get('weave_request_duration_seconds_count{component="plugin",route="NetworkDriver.CreateEndpoint",code="200"}'), 1)
  assert.not.ok([...s.keys()].some((k) => k.includes('code="500"')))
  assert.is(s.get('weave_request_duration_seconds_bucket{le="0.005",component="plugin",route="IpamDriver.RequestAddress",code="200"}'), 1)
})

function get(port: number, path: string, opts: { host?: string; method?: string } = {}): Promise<{ status: number; text: string; type?: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: opts.host ? { host: opts.host } : {} }, (res) => {
      let text = ''
      res.on('data', (d) => { text += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text, type: res.headers['content-type'] }))
    })
    req.on('error', reject)
    req.end()
  })
}

test('--metrics-addr: only GET /metrics, and on loopback only for loopback Host names', async () => {
  const reg = createWeaveRegistry(simulatedSources(3, 1))
  const srv = createMetricsServer(reg, { host: '127.0.0.1', port: 0 }, quiet)
  await srv.start()
  try {
    const port = srv.port()!
    const ok = await get(port, '/metrics')
    assert.is(ok.status, 200)
    assert.match(ok.type ?? '', /^text\/plain; version=0\.0\.4/)
    assert.match(ok.text, /^weave_connections\{/m)
    assert.is((await get(port, '/metrics', { host: 'evil.example:80' })).status, 421)
    assert.is((await get(port, '/metrics', { host: `localhost:${port}` })).status, 200)
    assert.is((await get(port, '/status')).status, 404)
    assert.is((await get(port, '/metrics', { method: 'POST' })).status, 405)
  } finally {
    await srv.stop()
  }
})

test.run()
