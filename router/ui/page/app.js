// The topology page: applies the daemon's snapshot and deltas (router/ui/topology-model.ts) to
// an SVG graph (peers on a circle, connections as lines) and a panel per peer. Plain browser
// JavaScript, served as is: no build step.
'use strict'
;(function () {
  const SVG = 'http://www.w3.org/2000/svg'
  /** Removed peers and connections stay on the page, marked gone, this long. */
  const GONE_MS = 30000
  const nodes = new Map() // id → { data, el, panel, gone }
  const edges = new Map() // id → { data, el, label, gone }
  let self = ''
  const $ = (id) => document.getElementById(id)

  function svg(tag, attrs) {
    const el = document.createElementNS(SVG, tag)
    for (const k in attrs) el.setAttribute(k, attrs[k])
    return el
  }

  function fmtRate(bps) {
    if (!bps) return '0 B/s'
    const u = ['B/s', 'kB/s', 'MB/s', 'GB/s']
    let i = 0
    while (bps >= 1000 && i < u.length - 1) { bps /= 1000; i++ }
    return `${bps.toFixed(bps < 10 ? 1 : 0)} ${u[i]}`
  }

  function edgeText(e) {
    const parts = [e.state]
    if (e.datapath) parts.push(e.datapath)
    if (e.encrypted !== undefined) parts.push(e.encrypted ? 'encrypted' : 'unencrypted')
    if (e.mtu) parts.push(`mtu=${e.mtu}`)
    if (e.rateBps !== undefined) parts.push(fmtRate(e.rateBps))
    return parts.join(' ')
  }

  function upsertNode(n) {
    let v = nodes.get(n.id)
    if (!v) {
      const el = svg('g', { class: 'node', 'data-peer': n.id })
      el.appendChild(svg('circle', { r: 14 }))
      el.appendChild(svg('text', { dy: 30 }))
      el.appendChild(svg('title', {}))
      $('nodes').appendChild(el)
      const panel = document.createElement('div')
      panel.className = 'panel'
      panel.dataset.peer = n.id
      $('panels').appendChild(panel)
      v = { el, panel }
      nodes.set(n.id, v)
    }
    v.data = n
    v.gone = undefined
    v.el.classList.remove('gone')
    v.panel.classList.remove('gone')
    v.el.setAttribute('data-self', String(n.self))
    v.el.setAttribute('data-reachable', String(n.reachable))
    // nicknames repeat (hostnames): the name's last two bytes tell peers apart
    v.el.querySelector('text').textContent = `${n.nickname} ${n.id.slice(-5)}`
    v.el.querySelector('title').textContent = `${n.id}(${n.nickname})`
    const lines = [`<h3>${esc(n.id)}(${esc(n.nickname)})${n.self ? ' — this peer' : ''}${n.reachable ? '' : ' [unreachable]'}</h3>`]
    if (n.ipam) lines.push(`IPAM: ${n.ipam.addresses} IPs (${n.ipam.percent}% of total)`)
    if (n.containers !== undefined) lines.push(`containers: ${n.containers}`)
    lines.push(`DNS entries: ${n.dns === undefined ? 'DNS off' : n.dns}`)
    v.panel.innerHTML = lines[0] + lines.slice(1).join('<br>')
  }

  function upsertEdge(e) {
    let v = edges.get(e.id)
    if (!v) {
      const el = svg('line', { class: 'edge', 'data-edge': e.id })
      el.appendChild(svg('title', {}))
      $('edges').appendChild(el)
      v = { el }
      edges.set(e.id, v)
    }
    v.data = e
    v.gone = undefined
    v.el.setAttribute('data-state', e.state)
    v.el.setAttribute('data-a', e.a)
    v.el.setAttribute('data-b', e.b)
    if (e.datapath) v.el.setAttribute('data-datapath', e.datapath)
    else v.el.removeAttribute('data-datapath')
    v.el.querySelector('title').textContent = edgeText(e)
    if (e.datapath || e.rateBps !== undefined) {
      if (!v.label) { v.label = svg('text', { class: 'elabel' }); $('edges').appendChild(v.label) }
      v.label.textContent = edgeText(e)
    } else if (v.label) { v.label.remove(); v.label = undefined }
  }

  function markGone(map, id, isNode) {
    const v = map.get(id)
    if (!v) return
    v.gone = Date.now()
    if (isNode) { v.el.classList.add('gone'); v.panel.classList.add('gone') } else v.el.setAttribute('data-state', 'gone')
  }

  function sweep() {
    const now = Date.now()
    let changed = false
    for (const [id, v] of edges) if (v.gone && now - v.gone > GONE_MS) { v.el.remove(); v.label && v.label.remove(); edges.delete(id) }
    for (const [id, v] of nodes) if (v.gone && now - v.gone > GONE_MS) { v.el.remove(); v.panel.remove(); nodes.delete(id); changed = true }
    if (changed) layout()
  }

  /** Peers on a circle in name order, ours first: the same peer stays in the same place. */
  function layout() {
    const ids = [...nodes.keys()].sort((a, b) => (a === self ? -1 : b === self ? 1 : a < b ? -1 : 1))
    const pos = new Map()
    const r = ids.length > 1 ? 400 : 0
    ids.forEach((id, i) => {
      const a = -Math.PI / 2 + (2 * Math.PI * i) / ids.length
      const p = { x: 500 + r * Math.cos(a), y: 500 + r * Math.sin(a) }
      pos.set(id, p)
      nodes.get(id).el.setAttribute('transform', `translate(${p.x.toFixed(1)},${p.y.toFixed(1)})`)
    })
    for (const v of edges.values()) {
      const a = pos.get(v.data.a), b = pos.get(v.data.b)
      if (!a || !b) continue
      v.el.setAttribute('x1', a.x); v.el.setAttribute('y1', a.y); v.el.setAttribute('x2', b.x); v.el.setAttribute('y2', b.y)
      if (v.label) { v.label.setAttribute('x', ((a.x + b.x) / 2).toFixed(1)); v.label.setAttribute('y', ((a.y + b.y) / 2 - 4).toFixed(1)) }
    }
    // Labels on our own connections while they stay readable; with many peers the tooltip tells.
    const labels = ids.length <= 12
    for (const v of edges.values()) if (v.label) v.label.style.display = labels ? '' : 'none'
    $('counts').textContent = `${[...nodes.values()].filter((v) => !v.gone).length} peers, ${[...edges.values()].filter((v) => !v.gone).length} connections`
  }

  function esc(s) {
    return String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c])
  }

  /** Apply one message of the feed (also what a test feeds a simulated mesh through). */
  function apply(m) {
    const t0 = performance.now()
    self = m.self
    $('self').textContent = m.self
    if (m.type === 'snapshot') {
      for (const id of nodes.keys()) if (!m.nodes.some((n) => n.id === id)) markGone(nodes, id, true)
      for (const id of edges.keys()) if (!m.edges.some((e) => e.id === id)) markGone(edges, id, false)
    }
    for (const n of m.nodes || []) upsertNode(n)
    for (const e of m.edges || []) upsertEdge(e)
    for (const id of m.removedNodes || []) markGone(nodes, id, true)
    for (const id of m.removedEdges || []) markGone(edges, id, false)
    if (m.peersText !== undefined) $('peers-text').textContent = m.peersText
    if (m.connectionsText !== undefined) $('connections-text').textContent = m.connectionsText
    layout()
    window.weaveTopology.applied++
    window.weaveTopology.lastApplyMs = performance.now() - t0
  }

  let backoff = 500
  function connect() {
    const ws = new WebSocket(`ws://${location.host}/ui/ws`)
    ws.onopen = () => { backoff = 500; $('live').textContent = 'live'; $('live').className = '' }
    ws.onmessage = (ev) => apply(JSON.parse(ev.data))
    ws.onclose = () => {
      $('live').textContent = 'disconnected: retrying'
      $('live').className = 'down'
      // The daemon is gone (or restarting): everything it told us is stale until it answers.
      for (const id of edges.keys()) markGone(edges, id, false)
      setTimeout(connect, backoff)
      backoff = Math.min(backoff * 2, 10000)
    }
  }

  window.weaveTopology = { apply, applied: 0, nodes, edges }
  setInterval(sweep, 5000)
  if (!/[?&]feed=none\b/.test(location.search)) connect()
})()
