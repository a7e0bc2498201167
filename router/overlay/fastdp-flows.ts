/**
 * fastdp's OpenFlow table, computed from the wanted state (pure: no I/O, no clock).
 *
 * The OVS bridge `datapath` has three kinds of ports: `vethwe-datapath` (the weave bridge's end),
 * the flow-based vxlan port `vxlan-6784`, and optionally a "router port" through which frames for
 * peers reachable only by sleeve (and flooded copies for them) reach the router.
 *
 * The vxlan key (24 bits) carries both peers' short IDs: `src << 12 | dst` (see `tunnelKey`), so a
 * receiver knows who a frame is from and whether it is the final destination or only a relay.
 *
 * Flows (all with cookie FLOW_COOKIE; priorities below):
 * - from the bridge, dl_dst = a local MAC → drop (the Linux bridge delivers it itself; frames it
 *   floods before it has learnt the MAC must not go out)                                    [200]
 * - from the bridge, dl_dst = a MAC behind peer P → tunnel to P's next hop with key self→P, or
 *   to the router port when that hop is a sleeve peer; dropped when P is unreachable         [200]
 * - (optional MAC learning: flows learnt from tunnel frames, see `learn`)                    [150]
 * - from the bridge, anything else (broadcast, multicast, unknown unicast) → one copy per
 *   reachable fastdp peer with its own key, plus one copy to the router port when any peer is
 *   reached by sleeve                                                                         [10]
 * - from the tunnel, key = P→self and ethertype HEARTBEAT_ETHERTYPE → to the router as an
 *   OpenFlow packet-in (its first bytes), never to the bridge; counted too: fastdp's health
 *   check, one flow per peer with `heartbeat` set                                          [120]
 * - from the tunnel, key = P→self where P is reached by sleeve → the bridge, learning nothing
 *   (with `learn`: a late tunnel frame must not point a MAC back into a tunnel P left)     [110]
 * - from the tunnel, key's dst = self and tun_src = a fastdp neighbour's address → the bridge,
 *   as below: one flow per neighbour, whose counters are what we received from it             [105]
 * - from the tunnel, key's dst = self → the bridge                                          [100]
 * - from the tunnel, key's dst = another peer P → re-tunnel (same key) to P's next hop       [90]
 *   unless it came from that next hop (a loop while routes converge) → drop                 [95];
 *   when that hop is reached by sleeve → the router port with a relay tag: an 802.1ad tag
 *   (RELAY_TAG_TPID) whose VLAN ID is the key's source, so the router knows the frame is not
 *   one of ours and whom it is from
 * - from the router port → the bridge                                                       [100]
 * - everything else → drop                                                                    [0]
 */

/** Cookie on every flow we install, so we can tell ours from anyone else's. */
export const FLOW_COOKIE = 0x77656176 // 'weav'
/** Cookie of the flows the datapath learns by itself (the `learn` action). */
export const LEARNT_COOKIE = 0x7765616c // 'weal'
export const MAX_FASTDP_SHORT_ID = 0xfff
/** Bytes the vxlan encapsulation adds on an IPv4 underlay: outer IP 20 + UDP 8 + vxlan 8 + inner Ethernet 14. */
export const VXLAN_OVERHEAD_BYTES = 50

/** TPID of the tag on frames relayed to the router port (802.1ad; its VLAN ID: the sender's short ID). */
export const RELAY_TAG_TPID = 0x88a8

export const PRIORITY = { mac: 200, learnt: 150, heartbeat: 120, noLearn: 110, peerRx: 105, toBridge: 100, relayBack: 95, relay: 90, flood: 10, drop: 0 } as const
/** Ethertype of fastdp heartbeat frames (IEEE 802 local experimental 1). */
export const HEARTBEAT_ETHERTYPE = 0x88b5
/** How much of a heartbeat its packet-in carries: the Ethernet header is all the router reads. */
export const HEARTBEAT_PACKET_IN_BYTES = 64

/** One flow; `match` and `actions` in ovs-ofctl syntax. Its identity is (priority, match). */
export interface Flow {
  priority: number
  match: string
  actions: string
}

export interface FlowPorts {
  /** OpenFlow port number of vethwe-datapath. */
  bridge: number
  /** OpenFlow port number of the vxlan port. */
  vxlan: number
  /** Where frames for sleeve-only peers go; none = such frames are dropped. */
  router?: number
}

export interface FlowPeer {
  shortId: number
  /** Underlay IPv4 address; a fastdp peer without one cannot be tunnelled to. */
  ip?: string
  /** MACs known to be behind this peer. */
  macs: readonly string[]
  /** How we reach this peer when it is a next hop; default `fastdp`. */
  via?: 'fastdp' | 'sleeve'
  /** Count this peer's heartbeats through the tunnel (a flow of their own). */
  heartbeat?: boolean
  /**
   * Our underlay address as this peer sees us (the local end of our mesh connection to it): the
   * outer source of frames we relay to it. Default: FlowState.selfIp.
   */
  localIp?: string
}

export interface FlowState {
  /** Our short ID (12 bits). */
  self: number
  /** Our underlay address: the outer source of relayed frames (else OVS picks by route). */
  selfIp?: string
  ports: FlowPorts
  peers: readonly FlowPeer[]
  /** MACs behind vethwe-datapath (containers on this host, the bridge itself). */
  localMacs: readonly string[]
  /**
   * Next hop toward a peer (a short ID), undefined when unreachable. Default: every known peer is
   * its own next hop.
   */
  nextHop?: (dst: number) => number | undefined
  /**
   * Learn MACs from tunnel frames in the datapath (OVS `learn` action): a frame from peer P with
   * source MAC M installs "to M → tunnel to P" (idle timeout `learnIdleSeconds`, default 300).
   * Explicit MAC lists take precedence. Default off.
   */
  learn?: boolean
  learnIdleSeconds?: number
  /**
   * The router port gets a flood copy even while no peer is reached by sleeve. Then a peer that
   * falls back is served the moment its learnt flows go (its frames flood, the router's copy goes
   * out by sleeve), before the rest of the table catches up. The router drops copies it has no
   * sleeve peer for. Default off.
   */
  floodToRouter?: boolean
}

/** The vxlan key for a frame from `src` to `dst`. */
export function tunnelKey(src: number, dst: number): number {
  checkShortId(src)
  checkShortId(dst)
  return (src << 12) | dst
}

/** Inverse of `tunnelKey`. */
export function parseTunnelKey(key: number): { src: number; dst: number } {
  return { src: (key >>> 12) & 0xfff, dst: key & 0xfff }
}

export function checkShortId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > MAX_FASTDP_SHORT_ID) throw new RangeError(`short ID ${id} does not fit 12 bits`)
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/

/** Lower-case colon form; throws on anything else. */
export function normalizeMac(mac: string): string {
  const m = mac.trim().toLowerCase().replace(/-/g, ':')
  if (!MAC_RE.test(m)) throw new TypeError(`bad MAC ${JSON.stringify(mac)}`)
  return m
}

const isGroup = (mac: string) => (parseInt(mac.slice(0, 2), 16) & 1) === 1
const hex = (n: number) => `0x${n.toString(16)}`
const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/
function checkIp(ip: string): string {
  const m = IPV4_RE.exec(ip)
  if (!m || m.slice(1).some((o) => Number(o) > 255)) throw new TypeError(`bad IPv4 address ${JSON.stringify(ip)}`)
  return ip
}

/** The identity of a flow in the table (what `del-flows --strict` names). */
export function flowKey(f: Flow): string {
  return f.match ? `priority=${f.priority},${f.match}` : `priority=${f.priority}`
}

/** One line for ovs-ofctl (`add-flows` file syntax, without a command keyword). */
export function formatFlow(f: Flow, cookie = FLOW_COOKIE): string {
  return `cookie=${hex(cookie)},${flowKey(f)},actions=${f.actions}`
}

/** The whole table for `state`, sorted by key. */
export function computeFlows(state: FlowState): Flow[] {
  checkShortId(state.self)
  const { ports } = state
  for (const [name, n] of Object.entries(ports)) {
    if (n !== undefined && (!Number.isInteger(n) || n <= 0)) throw new RangeError(`bad ofport ${name}=${n}`)
  }
  const peers = new Map<number, FlowPeer>()
  for (const p of state.peers) {
    checkShortId(p.shortId)
    if (p.shortId === state.self) continue
    if (p.ip !== undefined) checkIp(p.ip)
    if (p.localIp !== undefined) checkIp(p.localIp)
    peers.set(p.shortId, p)
  }
  const nextHop = state.nextHop ?? ((dst: number) => (peers.has(dst) ? dst : undefined))
  const selfIp = state.selfIp === undefined ? undefined : checkIp(state.selfIp)
  const flows: Flow[] = []
  const inBridge = `in_port=${ports.bridge}`
  const inVxlan = `in_port=${ports.vxlan}`

  /** How to send a frame whose final destination is `dst`: actions, or undefined (unreachable). */
  const route = (dst: number): { kind: 'tunnel' | 'router'; actions: string } | undefined => {
    const hop = nextHop(dst)
    if (hop === undefined || hop === state.self) return undefined
    const hopPeer = peers.get(hop)
    if (!hopPeer) return undefined
    if ((hopPeer.via ?? 'fastdp') === 'sleeve' || hopPeer.ip === undefined) {
      return ports.router === undefined ? undefined : { kind: 'router', actions: `output:${ports.router}` }
    }
    return { kind: 'tunnel', actions: `set_field:${hopPeer.ip}->tun_dst,set_field:${hex(tunnelKey(state.self, dst))}->tun_id,output:${ports.vxlan}` }
  }

  // unicast from the bridge: local MACs win over peers' claims; among peers the lowest ID wins
  const claimed = new Set<string>()
  for (const mac of state.localMacs.map(normalizeMac)) {
    if (isGroup(mac) || claimed.has(mac)) continue
    claimed.add(mac)
    flows.push({ priority: PRIORITY.mac, match: `${inBridge},dl_dst=${mac}`, actions: 'drop' })
  }
  const sorted = [...peers.values()].sort((a, b) => a.shortId - b.shortId)
  for (const p of sorted) {
    const r = route(p.shortId)
    for (const mac of p.macs.map(normalizeMac)) {
      if (isGroup(mac) || claimed.has(mac)) continue
      claimed.add(mac)
      flows.push({ priority: PRIORITY.mac, match: `${inBridge},dl_dst=${mac}`, actions: r ? r.actions : 'drop' })
    }
  }

  // flood: one copy per reachable peer, the router once for all sleeve-reached ones
  const copies: string[] = []
  let toRouter = false
  for (const p of sorted) {
    const r = route(p.shortId)
    if (!r) continue
    if (r.kind === 'router') toRouter = true
    else copies.push(r.actions)
  }
  if (ports.router !== undefined && (toRouter || state.floodToRouter)) copies.push(`output:${ports.router}`)
  flows.push({ priority: PRIORITY.flood, match: inBridge, actions: copies.length ? copies.join(',') : 'drop' })

  // heartbeats from the tunnel: counted per sender, never delivered
  for (const p of sorted) {
    if (!p.heartbeat) continue
    flows.push({ priority: PRIORITY.heartbeat, match: `${inVxlan},tun_id=${hex(tunnelKey(p.shortId, state.self))},dl_type=${hex(HEARTBEAT_ETHERTYPE)}`, actions: `controller(max_len=${HEARTBEAT_PACKET_IN_BYTES})` })
  }

  // from a peer reached by sleeve: delivered, not learnt
  if (state.learn) {
    for (const p of sorted) {
      if ((p.via ?? 'fastdp') !== 'sleeve') continue
      flows.push({ priority: PRIORITY.noLearn, match: `${inVxlan},tun_id=${hex(tunnelKey(p.shortId, state.self))}`, actions: `output:${ports.bridge}` })
    }
  }

  // from the tunnel: ours → the bridge (learning the sender's MACs if asked); others' → relay
  const toBridge = learnAction(state, ports) + `output:${ports.bridge}`
  flows.push({ priority: PRIORITY.toBridge, match: `${inVxlan},tun_id=${hex(state.self)}/0xfff`, actions: toBridge })
  // the same per fastdp neighbour: its counters tell who sent what (fastdp-traffic)
  for (const p of sorted) {
    if ((p.via ?? 'fastdp') !== 'fastdp' || p.ip === undefined) continue
    flows.push({ priority: PRIORITY.peerRx, match: `${inVxlan},tun_src=${p.ip},tun_id=${hex(state.self)}/0xfff`, actions: toBridge })
  }
  for (const p of sorted) {
    const hop = nextHop(p.shortId)
    const hopPeer = hop === undefined ? undefined : peers.get(hop)
    if (!hopPeer) continue
    let actions: string | undefined
    if ((hopPeer.via ?? 'fastdp') === 'fastdp' && hopPeer.ip !== undefined) {
      // out the port it came in on: OpenFlow needs the in_port action for that. The frame still
      // carries its sender's address as tun_src: replace it with ours, or the next hop would see
      // a packet from an address that is not ours.
      const src = hopPeer.localIp ?? selfIp
      actions = `${src ? `set_field:${src}->tun_src,` : ''}set_field:${hopPeer.ip}->tun_dst,in_port`
    } else if (ports.router !== undefined) {
      // the key's source (bits 12-23) as the tag's VLAN ID (TCI bits 0-11; bit 12: a VLAN is present)
      actions = `push_vlan:${hex(RELAY_TAG_TPID)},move:NXM_NX_TUN_ID[12..23]->NXM_OF_VLAN_TCI[0..11],load:1->NXM_OF_VLAN_TCI[12],output:${ports.router}`
    }
    if (actions) flows.push({ priority: PRIORITY.relay, match: `${inVxlan},tun_id=${hex(p.shortId)}/0xfff`, actions })
    // Never relay a frame back to the hop it came from: while routes converge two peers may each
    // name the other as the next hop, and vxlan has no TTL to end the ping-pong.
    if (actions && hopPeer.ip !== undefined && (hopPeer.via ?? 'fastdp') === 'fastdp') {
      flows.push({ priority: PRIORITY.relayBack, match: `${inVxlan},tun_id=${hex(p.shortId)}/0xfff,tun_src=${hopPeer.ip}`, actions: 'drop' })
    }
  }

  if (ports.router !== undefined) flows.push({ priority: PRIORITY.toBridge, match: `in_port=${ports.router}`, actions: `output:${ports.bridge}` })
  flows.push({ priority: PRIORITY.drop, match: '', actions: 'drop' })
  return sortFlows(dedupe(flows))
}

function learnAction(state: FlowState, ports: FlowPorts): string {
  if (!state.learn) return ''
  const idle = state.learnIdleSeconds ?? 300
  if (!Number.isInteger(idle) || idle <= 0 || idle > 65535) throw new RangeError(`bad learn idle timeout ${idle}`)
  // the learnt flow: from the bridge to the frame's source MAC → back into the tunnel toward the
  // tunnel's source address, key = self << 12 | (the frame's src ID, bits 12..23 of its key)
  return `learn(table=0,priority=${PRIORITY.learnt},idle_timeout=${idle},cookie=${hex(LEARNT_COOKIE)},` +
    `in_port=${ports.bridge},NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],` +
    'load:NXM_NX_TUN_IPV4_SRC[]->NXM_NX_TUN_IPV4_DST[],' +
    'load:NXM_NX_TUN_ID[12..23]->NXM_NX_TUN_ID[0..11],' +
    `load:${hex(state.self)}->NXM_NX_TUN_ID[12..23],` +
    `output:NXM_OF_IN_PORT[]),`
}

function dedupe(flows: Flow[]): Flow[] {
  const seen = new Map<string, Flow>()
  for (const f of flows) if (!seen.has(flowKey(f))) seen.set(flowKey(f), f)
  return [...seen.values()]
}

function sortFlows(flows: Flow[]): Flow[] {
  return flows.sort((a, b) => b.priority - a.priority || (a.match < b.match ? -1 : a.match > b.match ? 1 : 0))
}

/** What turns one table into another: flows to add, flows whose actions change, flows to delete. */
export interface FlowChange {
  add: Flow[]
  /** Same (priority, match), new actions: a modify keeps the flow's packet counters. */
  modify: Flow[]
  delete: Flow[]
  /** Also delete every flow the datapath learnt (LEARNT_COOKIE), in the same bundle. */
  forgetLearnt?: boolean
}

export function diffFlows(oldFlows: readonly Flow[], newFlows: readonly Flow[]): FlowChange {
  const before = new Map(oldFlows.map((f) => [flowKey(f), f]))
  const after = new Map(newFlows.map((f) => [flowKey(f), f]))
  const change: FlowChange = { add: [], modify: [], delete: [] }
  for (const [k, f] of after) {
    const o = before.get(k)
    if (!o) change.add.push(f)
    else if (o.actions !== f.actions) change.modify.push(f)
  }
  for (const [k, f] of before) if (!after.has(k)) change.delete.push(f)
  return change
}

export function isEmptyChange(c: FlowChange): boolean {
  return !c.add.length && !c.modify.length && !c.delete.length && !c.forgetLearnt
}

/** Apply a change to a table (what the switch holds after `change`), sorted. */
export function applyChange(flows: readonly Flow[], change: FlowChange): Flow[] {
  const m = new Map(flows.map((f) => [flowKey(f), f]))
  for (const f of change.delete) m.delete(flowKey(f))
  for (const f of [...change.modify, ...change.add]) m.set(flowKey(f), f)
  return sortFlows([...m.values()])
}

/**
 * The change as an ovs-ofctl `add-flows` file: one flow-mod per line with its command keyword
 * (`delete_strict`, `modify_strict`, `add`), to be sent as one bundle (all or nothing).
 */
export function changeScript(change: FlowChange, cookie = FLOW_COOKIE): string {
  const lines = [
    ...(change.forgetLearnt ? [`delete cookie=${hex(LEARNT_COOKIE)}/-1`] : []),
    ...change.delete.map((f) => `delete_strict ${flowKey(f)}`),
    ...change.modify.map((f) => `modify_strict ${formatFlow(f, cookie)}`),
    ...change.add.map((f) => `add ${formatFlow(f, cookie)}`),
  ]
  return lines.map((l) => `${l}\n`).join('')
}
