/**
 * The per-connection layer between the mesh and the sleeve driver: for every established mesh
 * connection it tells the Sleeve where the peer's UDP socket is (and with which cipher), runs
 * UDP heartbeats that make the sleeve path `established`, and gives the forwarder its routes.
 *
 * Per connection, over the mesh connection itself (`{type:'overlay', payload}`, JSON):
 *   hello {t:'hello', port, pub?, got, fastdp?, ciphers?}  our sleeve UDP port and, with a password, an
 *                                       ephemeral X25519 public key; `got`: we already hold theirs;
 *                                       `ciphers`: the sleeve AEADs we can do (with a password; absent:
 *                                       a peer that predates the choice, ChaCha20-Poly1305 only);
 *                                       `fastdp`: true when our OVS datapath can take this peer,
 *                                       else why not (absent: a peer that predates fastdp)
 *   ack   {t:'ack', uid}                "your UDP heartbeat for connection uid reached me"
 *   fdp   {t:'fdp', ok}                 "your fastdp heartbeats reach me" (or not); see fastdp-health
 *   esp   {t:'esp', sending, accepting} encrypted fastdp's key epochs (see fastdp-ipsec)
 * A hello's `trusted: true` says the sender trusts our address (`--trusted-subnets`); when we
 * trust the sender's too, the connection's data goes in clear (Weave's mutual-trust rule).
 * With a password, a hello also carries `esp`: a fresh 32-byte nonce of this connection when we
 * can protect fastdp with kernel ESP; the keys come from it, the peer's and the shared secret.
 * Hello is repeated every heartbeat tick until the remote's arrives (messages that reach a
 * connection before anyone listens for overlay messages are lost, so one copy is not enough),
 * and answered at once when the remote says it lacks ours.
 *
 * Why keys travel over the mesh connection: it is already encrypted and authenticated with the
 * password, so an X25519 exchange over it is authenticated too, and the connection contract
 * stays unchanged. The shared secret is BLAKE2b-256(X25519(ours, theirs) ‖ dialer pub ‖
 * listener pub); createSleeveCipher derives the per-direction keys from it. Fresh keys per
 * connection: a reconnect never reuses a (key, nonce).
 *
 * Path state: `established` once a UDP heartbeat from the peer arrived (their → our path works)
 * and the peer acknowledged one of ours (our → their path works), both within the timeout.
 * Frames flow as soon as the peer's address is known; the state is what `weave status` shows.
 * The connection's data path works when its sleeve path is established or another data plane
 * (fastdp) carries the peer healthily; each change of that verdict goes to the mesh
 * (`setDataPath`), which marks the connection established or pending in the topology it gossips.
 * Data-plane routes use only links both ends call established, so when UDP between two hosts is
 * lost while their TCP connection lives, their frames go through a peer that reaches both.
 *
 * Path MTU: the sleeve's UDP socket sets DF (IP_PMTUDISC_DO) and asks the kernel (IP_MTU) for
 * each peer's path MTU, asking again when a send fails with EMSGSIZE (the kernel lowers it from
 * ICMP fragmentation-needed). A path that drops big datagrams silently teaches the kernel
 * nothing, so once a path is established we also probe it (sleeve-pmtu: DF probes, acked over
 * the mesh connection), and the sleeve uses the smaller figure; status shows the frame MTU.
 *   pmtu  {t:'pmtu', size}             "your probe of `size` bytes (plaintext datagram) reached me"
 */
import type { Clock, Logger } from '../deps'
import type { PeerConnection, PeerName } from '../mesh'
import type { Routes } from './forwarder'
import { HEADER_BYTES, UNDERLAY_HEADER_BYTES, encodeHeartbeat, encodeProbe, maxFrameBytes, type SleeveDatagram } from './sleeve-frame'
import { PmtuSearch, PMTU_PROBE_TIMEOUT_MS } from './sleeve-pmtu'
import {
  chooseSleeveCipher, createSleeveCipher, SEAL_OVERHEAD_BYTES, sleeveCiphers, sleeveCryptoReady, sleeveSodium, type SleeveCipher, type SleeveCipherName,
} from './sleeve-crypto'
import type { SleevePeer } from './sleeve-peers'
import { ESP_NONCE_BYTES, validateEspControl, type EspControl } from './fastdp-ipsec'

/** Weave sends sleeve heartbeats every second until the path is confirmed, then keeps them up. */
export const HEARTBEAT_INTERVAL_MS = 1_000
/** Without a heartbeat (or its ack) for this long the path is no longer established. */
export const HEARTBEAT_TIMEOUT_MS = 10_000
/** Path-MTU search steps: half a probe timeout, so a lost probe is retried about on time. */
const PROBE_STEP_MS = PMTU_PROBE_TIMEOUT_MS / 2
/** Ethernet header: the frame MTU status shows is the largest IP packet a frame carries. */
const ETHERNET_HEADER_BYTES = 14

// ---- the pure per-connection state ----

export type LinkState = 'pending' | 'established' | 'stale'

/** What one tick asks the driver to do for one link. */
export interface LinkTick {
  sendHello: boolean
  sendHeartbeat: boolean
}

/**
 * One mesh connection's sleeve path, as a state machine over an injected time (`now` in ms);
 * no I/O. The driver feeds it events and carries out what `tick` returns.
 */
export class SleeveLink {
  /** The remote's hello, once it arrived. */
  remote: { port: number; pub?: Uint8Array } | undefined
  private lastHeartbeatRx: number | undefined
  private lastAckRx: number | undefined
  private everEstablished = false

  constructor(
    readonly peer: PeerName,
    readonly connUid: bigint,
    private readonly timeoutMs = HEARTBEAT_TIMEOUT_MS,
  ) {}

  /** A hello arrived; returns whether it was the first (the peer's address/key are now known) and whether to answer. */
  onHello(h: { port: number; pub?: Uint8Array; got: boolean }): { first: boolean; reply: boolean } {
    const first = this.remote === undefined
    if (first) this.remote = { port: h.port, pub: h.pub }
    return { first, reply: !h.got }
  }

  /** A UDP heartbeat for this connection arrived: the peer → us path works. Answer with an ack. */
  onHeartbeat(now: number): void {
    this.lastHeartbeatRx = now
  }

  /** The peer acknowledged one of our heartbeats: the us → peer path works. */
  onAck(now: number): void {
    this.lastAckRx = now
  }

  /** Why the path is not established (undefined when it is), for status. */
  why(now: number): string | undefined {
    const fresh = (t: number | undefined) => t !== undefined && now - t <= this.timeoutMs
    const rx = fresh(this.lastHeartbeatRx), ack = fresh(this.lastAckRx)
    if (rx && ack) return undefined
    if (this.remote === undefined) return 'no overlay hello from the peer yet'
    if (!rx && !ack) return 'no UDP heartbeat gets through either way'
    if (!rx) return 'no UDP heartbeat arrives from the peer'
    return 'the peer gets no UDP heartbeat from us'
  }

  state(now: number): LinkState {
    const fresh = (t: number | undefined) => t !== undefined && now - t <= this.timeoutMs
    if (fresh(this.lastHeartbeatRx) && fresh(this.lastAckRx)) {
      this.everEstablished = true
      return 'established'
    }
    return this.everEstablished ? 'stale' : 'pending'
  }

  /** Once per heartbeat interval: hello until theirs arrived; heartbeats once we know where to send them. */
  tick(): LinkTick {
    return { sendHello: this.remote === undefined, sendHeartbeat: this.remote !== undefined }
  }
}

// ---- the overlay control messages (over the mesh connection) ----

/** In a hello: fastdp is ready here (true), or why not (shown in the peer's status). */
export type FastdpOffer = true | string

export type OverlayControl =
  | { t: 'hello'; port: number; pub?: Uint8Array; got: boolean; fastdp?: FastdpOffer; dp?: string; ciphers?: string[]; esp?: Uint8Array; trusted?: boolean }
  | { t: 'ack'; uid: bigint }
  | { t: 'fdp'; ok: boolean }
  | { t: 'pmtu'; size: number }
  | EspControl

export function encodeOverlayControl(m: OverlayControl): Uint8Array {
  const obj = m.t === 'hello'
    ? { t: 'hello', port: m.port, pub: m.pub ? Buffer.from(m.pub).toString('base64') : undefined, got: m.got, fastdp: m.fastdp, dp: m.dp, ciphers: m.ciphers, esp: m.esp ? Buffer.from(m.esp).toString('base64') : undefined, trusted: m.trusted || undefined }
    : m.t === 'ack' ? { t: 'ack', uid: m.uid.toString() } : m.t === 'esp' || m.t === 'pmtu' ? m : { t: 'fdp', ok: m.ok }
  return new TextEncoder().encode(JSON.stringify(obj))
}

/** Peer input: returns undefined for anything malformed (the caller counts and ignores it). */
const KNOWN_CIPHERS = new Set<string>(['aes-256-gcm', 'chacha20-poly1305'] satisfies SleeveCipherName[])

export function decodeOverlayControl(bytes: Uint8Array): OverlayControl | undefined {
  let o: unknown
  try {
    o = JSON.parse(new TextDecoder().decode(bytes))
  } catch {
    return undefined
  }
  if (typeof o !== 'object' || o === null) return undefined
  const r = o as Record<string, unknown>
  if (r.t === 'hello') {
    if (typeof r.port !== 'number' || !Number.isInteger(r.port) || r.port < 1 || r.port > 65535) return undefined
    let pub: Uint8Array | undefined
    if (r.pub !== undefined) {
      if (typeof r.pub !== 'string') return undefined
      pub = new Uint8Array(Buffer.from(r.pub, 'base64'))
      if (pub.length !== 32) return undefined
    }
    // fastdp: true, or a reason (cut short: it is peer input shown in our status)
    let fastdp: FastdpOffer | undefined
    if (r.fastdp === true) fastdp = true
    else if (typeof r.fastdp === 'string') fastdp = r.fastdp.slice(0, 200).replace(/[^\x20-\x7e]/g, '?')
    else if (r.fastdp !== undefined) fastdp = 'unreadable fastdp offer'
    // which fast path the offer is for (absent: OVS); an unknown one is kept, it never matches ours
    const dp = typeof r.dp === 'string' && /^[a-z0-9-]{1,16}$/.test(r.dp) ? r.dp : r.dp === undefined ? undefined : 'unknown'
    // ciphers: names we do not know are kept out (they can never be chosen); a few at most
    let ciphers: string[] | undefined
    if (Array.isArray(r.ciphers)) ciphers = r.ciphers.slice(0, 16).filter((c): c is string => typeof c === 'string' && KNOWN_CIPHERS.has(c))
    else if (r.ciphers !== undefined) return undefined
    let esp: Uint8Array | undefined
    if (r.esp !== undefined) {
      if (typeof r.esp !== 'string') return undefined
      esp = new Uint8Array(Buffer.from(r.esp, 'base64'))
      if (esp.length !== ESP_NONCE_BYTES) return undefined
    }
    return { t: 'hello', port: r.port, pub, got: r.got === true, ...(fastdp === undefined ? {} : { fastdp }), ...(dp === undefined ? {} : { dp }), ...(ciphers === undefined ? {} : { ciphers }), ...(esp === undefined ? {} : { esp }), ...(r.trusted === true ? { trusted: true } : {}) }
  }
  if (r.t === 'ack') {
    if (typeof r.uid !== 'string' || !/^\d{1,20}$/.test(r.uid)) return undefined
    return { t: 'ack', uid: BigInt(r.uid) }
  }
  if (r.t === 'fdp') {
    if (typeof r.ok !== 'boolean') return undefined
    return { t: 'fdp', ok: r.ok }
  }
  if (r.t === 'pmtu') {
    if (typeof r.size !== 'number' || !Number.isInteger(r.size) || r.size < HEADER_BYTES || r.size > 65_535) return undefined
    return { t: 'pmtu', size: r.size }
  }
  if (r.t === 'esp') return validateEspControl(r)
  return undefined
}

// ---- key agreement ----

export interface KxKeyPair {
  publicKey: Uint8Array
  privateKey: Uint8Array
}

/** An ephemeral X25519 key pair; call after sleeveCryptoReady(). */
export function kxKeyPair(): KxKeyPair {
  const k = sleeveSodium().crypto_kx_keypair()
  return { publicKey: k.publicKey, privateKey: k.privateKey }
}

/** The 32-byte secret both ends of one connection compute; `dialer` is whether we dialled. */
export function deriveSleeveSecret(ours: KxKeyPair, theirPub: Uint8Array, dialer: boolean): Uint8Array {
  const sodium = sleeveSodium()
  const q = sodium.crypto_scalarmult(ours.privateKey, theirPub)
  const [dialPub, listenPub] = dialer ? [ours.publicKey, theirPub] : [theirPub, ours.publicKey]
  const input = new Uint8Array(96)
  input.set(q, 0)
  input.set(dialPub, 32)
  input.set(listenPub, 64)
  return sodium.crypto_generichash(32, input, null)
}

// ---- routes adapter ----

/** The parts of the mesh's topology and route table the routes adapter reads. */
export interface MeshRouting {
  selfName(): PeerName
  /** Every known peer's short ID (undefined until it has one). */
  shortIds(): Iterable<[PeerName, number | undefined]>
  /** Data-plane unicast next hops (established symmetric links). */
  unicast(): Map<PeerName, PeerName>
  /** Children of `source`'s broadcast tree at us. */
  broadcast(source: PeerName): PeerName[]
}

/**
 * Forwarder routes over short IDs from the mesh's names. Cached per topology state: call
 * `invalidate()` when the topology changes (the mesh's onPeersChanged). `usable(hop)` says
 * whether the sleeve can reach a neighbour now (its address is known).
 */
export class SleeveRoutes implements Routes {
  private nameOf: Map<number, PeerName> | undefined
  private shortOf: Map<PeerName, number> | undefined
  private readonly bcast = new Map<number, number[]>()
  private uni = new Map<number, number | undefined>()

  /**
   * `usable(hop)`: the sleeve can reach that neighbour now; `viaDatapath(hop)`: the datapath
   * carries it instead (a middle host hands sleeve peers' frames for it to the datapath).
   */
  constructor(
    private readonly mesh: MeshRouting,
    private readonly usable: (hop: number) => boolean,
    private readonly viaDatapath: (hop: number) => boolean = () => false,
  ) {}

  invalidate(): void {
    this.nameOf = this.shortOf = undefined
    this.bcast.clear()
    this.uni.clear()
  }

  private maps(): { nameOf: Map<number, PeerName>; shortOf: Map<PeerName, number> } {
    if (!this.nameOf || !this.shortOf) {
      this.nameOf = new Map()
      this.shortOf = new Map()
      for (const [name, id] of this.mesh.shortIds()) {
        if (id === undefined) continue
        this.nameOf.set(id, name)
        this.shortOf.set(name, id)
      }
    }
    return { nameOf: this.nameOf, shortOf: this.shortOf }
  }

  unicastNextHop(dst: number): number | undefined {
    const hop = this.rawNextHop(dst)
    return hop !== undefined && this.usable(hop) ? hop : undefined
  }

  datapathNextHop(dst: number): number | undefined {
    const hop = this.rawNextHop(dst)
    return hop !== undefined && this.viaDatapath(hop) ? hop : undefined
  }

  private rawNextHop(dst: number): number | undefined {
    let hop = this.uni.get(dst)
    if (hop === undefined && !this.uni.has(dst)) {
      const { nameOf, shortOf } = this.maps()
      const name = nameOf.get(dst)
      const hopName = name === undefined ? undefined : this.mesh.unicast().get(name)
      hop = hopName === undefined || hopName === this.mesh.selfName() ? undefined : shortOf.get(hopName)
      this.uni.set(dst, hop)
    }
    return hop
  }

  broadcastNextHops(src: number): readonly number[] {
    return this.tree(src).filter(this.usable)
  }

  broadcastDatapathHops(src: number): readonly number[] {
    return this.tree(src).filter(this.viaDatapath)
  }

  private tree(src: number): number[] {
    let hops = this.bcast.get(src)
    if (!hops) {
      const { nameOf, shortOf } = this.maps()
      const name = nameOf.get(src)
      hops = []
      if (name !== undefined) {
        for (const n of this.mesh.broadcast(name)) {
          const id = shortOf.get(n)
          if (id !== undefined) hops.push(id)
        }
      }
      this.bcast.set(src, hops)
    }
    return hops
  }
}

// ---- the driver ----

/** What the overlay needs from the mesh (a subset of Mesh, so tests can fake it). */
export interface OverlayMeshHost {
  readonly identity: { readonly name: PeerName; shortId(): number }
  readonly topology: { records(): Iterable<{ name: PeerName; nickname: string; shortId: number | undefined }> }
  /** `broadcastData`: the data plane's broadcast tree (established links only); `broadcast` when absent. */
  readonly routes: { unicast(): Map<PeerName, PeerName>; broadcast(source: PeerName): PeerName[]; broadcastData?(source: PeerName): PeerName[] }
  readonly view: { onPeersChanged(fn: () => void): () => void }
  connections(): Map<PeerName, PeerConnection>
  /** Our verdict on a connection's data path (the mesh marks it established or pending). */
  setDataPath?(peer: PeerName, ok: boolean, why?: string): boolean
}

/** What the overlay needs from the Sleeve driver. */
export interface SleeveHandle {
  setPeer(id: number, peer: SleevePeer): void
  removePeer(id: number): void
  sendControl(id: number, plain: Uint8Array): boolean
  onControl: (from: number, datagram: SleeveDatagram) => void
  pathMtu(id: number): number | undefined
  /** The kernel's path MTU towards a neighbour (where probing starts); without it, no probing. */
  kernelPathMtu?(id: number): number | undefined
  /** A smaller path MTU found by probing (undefined: the kernel's figure holds). */
  setProbedMtu?(id: number, mtu: number | undefined): void
}

export interface SleeveOverlayConfig {
  /** Our sleeve UDP port, told to peers in the hello. */
  udpPort: number
  /** Encrypt sleeve traffic (the mesh has a password). */
  encrypt: boolean
  heartbeatIntervalMs?: number
  heartbeatTimeoutMs?: number
  /**
   * With `encrypt`: the sleeve ciphers we offer, preferred first; default sleeveCiphers() (what
   * this host runs natively). Tests narrow it to play a peer without AES.
   */
  ciphers?: readonly SleeveCipherName[]
  /** What our hellos say about fastdp (asked per hello); none: the hello says nothing (sleeve only). */
  fastdp?: () => FastdpOffer
  /** Which fast path the offer is for: `vxlan` (the kernel's), none = OVS (asked per hello). */
  fastdpKind?: () => string | undefined
  /** With `encrypt`: whether our hellos offer kernel ESP for fastdp (asked per hello). */
  esp?: () => boolean
  /** With `encrypt`: whether we trust a peer's underlay address (`--trusted-subnets`); none: nobody. */
  trusts?: (ip: string) => boolean
}

/** A peer's hello arrived for the first time on a connection: where it is and what it offers. */
export interface OverlayPeerHello {
  peer: PeerName
  shortId: number
  /** The peer's underlay address (as its mesh connection shows it). */
  ip: string
  /** The peer's fastdp offer; undefined: a peer without fastdp. */
  fastdp: FastdpOffer | undefined
  /** Which fast path the offer is for: `vxlan` (the kernel's); undefined = OVS. */
  dp?: string
  /**
   * When both hellos offered ESP (encrypted mesh): the connection's overlay secret, both nonces
   * and our address on the connection, for encrypted fastdp's keys (fastdp-ipsec).
   */
  esp?: { secret: Uint8Array; ours: Uint8Array; theirs: Uint8Array; localIp: string }
  /** Trust is mutual (`--trusted-subnets` at both ends): the data goes in clear, fastdp without ESP. */
  trusted?: boolean
}

export interface SleeveOverlayDeps {
  clock: Clock
  logger: Logger
  /** The overlay switch listens here; it answers with setVia(). */
  onPeerHello?: (h: OverlayPeerHello) => void
  /** The connection to this peer is gone. */
  onPeerGone?: (p: { peer: PeerName; shortId: number }) => void
  /** The peer says whether our fastdp heartbeats reach it. */
  onFastdpStatus?: (p: { peer: PeerName; shortId: number; ok: boolean }) => void
  /** The peer's encrypted-fastdp key epochs. */
  onEsp?: (p: { peer: PeerName; shortId: number; m: EspControl }) => void
}

/** One line of `weave status` for an overlay connection. */
export interface OverlayConnectionStatus {
  peer: string
  nickname: string
  /** The peer's sleeve UDP address "ip:port" (the mesh address until its hello arrived). */
  addr: string
  outbound: boolean
  /** Which data plane carries this peer's frames (`fastdp` only after setVia said so). */
  overlay: 'sleeve' | 'fastdp'
  /** Why not fastdp, when sleeve carries it and fastdp was considered. */
  why?: string
  state: LinkState
  encrypted: boolean
  /** The AEAD sealing this peer's sleeve traffic, when encrypted. */
  cipher?: SleeveCipherName
  /** With a password: trust is mutual, so this peer's data goes in clear (`--trusted-subnets`). */
  trusted?: boolean
  /** Largest IP packet a frame carries towards this peer (bytes), when known. */
  mtu: number | undefined
}

interface Live {
  conn: PeerConnection
  link: SleeveLink
  shortId: number
  keys: KxKeyPair | undefined
  /** Our ESP nonce on this connection (encrypted mesh only). */
  espNonce: Uint8Array | undefined
  cipherSet: boolean
  cipherName: SleeveCipherName | undefined
  /** Mutual trust was established by the first hello: no cipher for this connection. */
  trusted: boolean
  addr: string
  via: 'sleeve' | 'fastdp'
  why: string | undefined
  /** What we last told the mesh about this connection's data path (undefined: nothing yet). */
  toldOk: boolean | undefined
  toldWhy: string | undefined
  /** Path-MTU probing on this connection, and what of it the sleeve was last told. */
  pmtu: PmtuSearch
  pmtuTold: number | undefined
}

export interface SleeveOverlay {
  /** The forwarder's routes; pass to the Sleeve. */
  readonly routes: SleeveRoutes
  /** Hooks onto the mesh and the sleeve; starts the heartbeat timer. Call once. */
  attach(mesh: OverlayMeshHost, sleeve: SleeveHandle): Promise<void>
  /** Stops timers and forgets every peer (the sleeve is stopped by its owner). */
  detach(): void
  connections(): OverlayConnectionStatus[]
  /**
   * The overlay switch's decision for a peer: `fastdp` takes it out of the sleeve's routes (the
   * datapath tunnels its frames), `sleeve` puts it back; `why` is shown in status. False when no
   * connection has that short ID.
   */
  setVia(shortId: number, via: 'sleeve' | 'fastdp', why?: string): boolean
  /** Tell the peer whether its fastdp heartbeats reach us; false when no connection has that short ID. */
  sendFastdpStatus(shortId: number, ok: boolean): boolean
  /** Send our encrypted-fastdp key epochs; false when no connection has that short ID. */
  sendEsp(shortId: number, m: EspControl): boolean
  /** Counters: bad control messages, heartbeats in/out. */
  readonly stats: { badControl: number; heartbeatsSent: number; heartbeatsReceived: number; acksReceived: number }
}

export function createSleeveOverlay(config: SleeveOverlayConfig, deps: SleeveOverlayDeps): SleeveOverlay {
  const log = deps.logger.child('overlay')
  const intervalMs = config.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS
  const timeoutMs = config.heartbeatTimeoutMs ?? HEARTBEAT_TIMEOUT_MS
  const live = new Map<PeerName, Live>()
  const byShort = new Map<number, Live>()
  const stats = { badControl: 0, heartbeatsSent: 0, heartbeatsReceived: 0, acksReceived: 0 }
  let mesh: OverlayMeshHost | undefined
  let sleeve: SleeveHandle | undefined
  let cancelTimer: (() => void) | undefined
  let cancelProbeTimer: (() => void) | undefined
  let unsubscribe: (() => void) | undefined
  // fixed for our lifetime, so both ends of a connection choose from the same two offers
  const ourCiphers = config.encrypt ? (config.ciphers ?? sleeveCiphers()) : undefined

  const routes = new SleeveRoutes({
    selfName: () => mesh!.identity.name,
    shortIds: () => [...mesh!.topology.records()].map((r) => [r.name, r.shortId] as [PeerName, number | undefined]),
    unicast: () => mesh!.routes.unicast(),
    broadcast: (src) => (mesh!.routes.broadcastData ?? mesh!.routes.broadcast).call(mesh!.routes, src),
  }, (hop) => {
    const l = byShort.get(hop)
    return l !== undefined && l.link.remote !== undefined && l.via === 'sleeve'
  }, (hop) => byShort.get(hop)?.via === 'fastdp')

  function sendHello(l: Live): void {
    const got = l.link.remote !== undefined
    const ciphers = ourCiphers && [...ourCiphers]
    const esp = l.espNonce && config.esp?.() ? l.espNonce : undefined
    const trusted = weTrust(l)
    l.conn.send({ type: 'overlay', payload: encodeOverlayControl({ t: 'hello', port: config.udpPort, pub: l.keys?.publicKey, got, fastdp: config.fastdp?.(), dp: config.fastdpKind?.(), ciphers, esp, trusted }) })
  }

  function weTrust(l: Live): boolean {
    return config.encrypt && config.trusts?.(hostOf(l.conn.remoteAddr)) === true
  }

  function shortIdOf(conn: PeerConnection): number {
    for (const r of mesh!.topology.records()) if (r.name === conn.remote.name && r.shortId !== undefined) return r.shortId
    return conn.remote.shortId
  }

  /** Brings `live` in line with the mesh's connections. */
  function reconcile(): void {
    if (!mesh) return
    const conns = mesh.connections()
    for (const [name, l] of live) {
      if (conns.get(name) !== l.conn) drop(name, l)
    }
    for (const [name, conn] of conns) {
      if (!live.has(name)) add(name, conn)
    }
    routes.invalidate()
  }

  function add(name: PeerName, conn: PeerConnection): void {
    const l: Live = {
      conn,
      link: new SleeveLink(name, conn.connUid, timeoutMs),
      shortId: shortIdOf(conn),
      keys: config.encrypt ? kxKeyPair() : undefined,
      espNonce: config.encrypt ? sleeveSodium().randombytes_buf(ESP_NONCE_BYTES) : undefined,
      cipherSet: false,
      cipherName: undefined,
      trusted: false,
      addr: conn.remoteAddr,
      via: 'sleeve',
      why: undefined,
      toldOk: undefined,
      toldWhy: undefined,
      pmtu: new PmtuSearch(),
      pmtuTold: undefined,
    }
    const other = byShort.get(l.shortId)
    if (other) {
      log.warn(`peers ${other.link.peer} and ${name} share short ID ${l.shortId}; ignoring ${name} until that resolves`)
      return
    }
    live.set(name, l)
    byShort.set(l.shortId, l)
    conn.onMessage((msg) => {
      if (msg.type === 'overlay' && live.get(name) === l) handleControl(l, msg.payload)
    })
    conn.onClose(() => {
      if (live.get(name) === l) { drop(name, l); routes.invalidate() }
    })
    sendHello(l)
  }

  function drop(name: PeerName, l: Live): void {
    live.delete(name)
    if (byShort.get(l.shortId) === l) byShort.delete(l.shortId)
    sleeve?.removePeer(l.shortId)
    deps.onPeerGone?.({ peer: name, shortId: l.shortId })
  }

  function handleControl(l: Live, payload: Uint8Array): void {
    const m = decodeOverlayControl(payload)
    if (!m) { stats.badControl++; return }
    if (m.t === 'ack') {
      if (m.uid === l.conn.connUid) { stats.acksReceived++; l.link.onAck(deps.clock.now()); reportDataPath(l) }
      return
    }
    if (m.t === 'fdp') {
      deps.onFastdpStatus?.({ peer: l.link.peer, shortId: l.shortId, ok: m.ok })
      return
    }
    if (m.t === 'pmtu') {
      const now = deps.clock.now()
      l.pmtu.onAck(m.size + UNDERLAY_HEADER_BYTES + (l.cipherSet ? SEAL_OVERHEAD_BYTES : 0), now)
      probe(l, now) // the next candidate at once
      return
    }
    if (m.t === 'esp') {
      deps.onEsp?.({ peer: l.link.peer, shortId: l.shortId, m })
      return
    }
    if (config.encrypt && !m.pub) {
      stats.badControl++
      log.warn(`${l.link.peer} sent no sleeve key although the mesh is encrypted; not using sleeve with it`)
      return
    }
    const r = l.link.onHello(m)
    if (r.first) {
      const ip = hostOf(l.conn.remoteAddr)
      let cipher: SleeveCipher | undefined
      let esp: OverlayPeerHello['esp']
      l.trusted = weTrust(l) && m.trusted === true
      if (config.encrypt && l.keys && m.pub && !l.trusted) {
        const name = chooseSleeveCipher(ourCiphers ?? [], m.ciphers)
        const secret = deriveSleeveSecret(l.keys, m.pub, l.conn.outbound)
        cipher = createSleeveCipher(secret, l.conn.outbound, { cipher: name })
        l.cipherName = name
        // encrypted fastdp: both offered ESP (its keys are HKDF'd apart from the sleeve's)
        if (m.esp && l.espNonce && config.esp?.()) esp = { secret, ours: l.espNonce, theirs: m.esp, localIp: hostOf(l.conn.localAddr).replace(/^::ffff:/, '') }
      }
      l.addr = `${ip}:${m.port}`
      sleeve?.setPeer(l.shortId, { addr: ip, port: m.port, cipher })
      l.cipherSet = cipher !== undefined
      log.info(`sleeve peer ${l.link.peer} (short ID ${l.shortId}) at ${l.addr}${cipher ? `, encrypted with ${cipher.name}` : l.trusted ? ', unencrypted (trusted subnet)' : ''}`)
      deps.onPeerHello?.({ peer: l.link.peer, shortId: l.shortId, ip, fastdp: m.fastdp, ...(m.dp ? { dp: m.dp } : {}), ...(esp ? { esp } : {}), ...(l.trusted ? { trusted: true } : {}) })
      routes.invalidate()
      heartbeat(l)
    }
    if (r.reply) sendHello(l)
  }

  function heartbeat(l: Live): void {
    if (!sleeve) return
    const self = mesh!.identity.shortId()
    if (sleeve.sendControl(l.shortId, encodeHeartbeat({ src: self, dst: l.shortId }, l.conn.connUid))) stats.heartbeatsSent++
  }

  function onControl(from: number, dg: SleeveDatagram): void {
    const l = byShort.get(from)
    if (!l) return
    if (dg.kind === 'probe') {
      l.conn.send({ type: 'overlay', payload: encodeOverlayControl({ t: 'pmtu', size: dg.size }) })
      return
    }
    if (dg.kind !== 'heartbeat') return
    if (dg.connUid !== BigInt.asUintN(64, l.conn.connUid)) return // from an older connection
    stats.heartbeatsReceived++
    l.link.onHeartbeat(deps.clock.now())
    l.conn.send({ type: 'overlay', payload: encodeOverlayControl({ t: 'ack', uid: l.conn.connUid }) })
    reportDataPath(l)
  }

  /**
   * One step of a connection's path-MTU search (on an established path only: heartbeats must get
   * through for an unanswered probe to mean "too big"); tells the sleeve when its figure changes.
   */
  function probe(l: Live, now: number): void {
    const kernel = sleeve?.kernelPathMtu?.(l.shortId)
    if (kernel === undefined || live.get(l.link.peer) !== l) return
    if (l.link.state(now) === 'established') {
      const size = l.pmtu.tick(kernel, now)
      // the probe's IP packet is `size` bytes: its plaintext is that less IP/UDP and sealing
      const plain = size === undefined ? 0 : size - UNDERLAY_HEADER_BYTES - (l.cipherSet ? SEAL_OVERHEAD_BYTES : 0)
      if (plain >= HEADER_BYTES) sleeve!.sendControl(l.shortId, encodeProbe({ src: mesh!.identity.shortId(), dst: l.shortId }, plain))
    }
    const use = l.pmtu.usable()
    if (use !== l.pmtuTold) {
      l.pmtuTold = use
      sleeve!.setProbedMtu?.(l.shortId, use)
    }
    if (l.pmtu.searching && !cancelProbeTimer) cancelProbeTimer = deps.clock.setTimer(PROBE_STEP_MS, probeTick)
  }

  /** While any search runs: its retries and timeouts, faster than the heartbeat tick. */
  function probeTick(): void {
    cancelProbeTimer = undefined
    const now = deps.clock.now()
    for (const l of live.values()) if (l.pmtu.searching) probe(l, now)
  }

  /**
   * Tell the mesh when a connection's data path starts or stops working: the sleeve path is
   * established, or another data plane carries the peer (the switch moves it off sleeve only
   * while that plane's own heartbeats get through). A new reason alone is passed on too (status
   * shows it; the mesh gossips only a change of the verdict).
   */
  function reportDataPath(l: Live): void {
    if (!mesh?.setDataPath || live.get(l.link.peer) !== l) return
    const now = deps.clock.now()
    const sleeveWhy = l.link.why(now)
    const ok = sleeveWhy === undefined || l.via !== 'sleeve'
    const why = ok ? undefined : sleeveWhy
    if (ok === l.toldOk && why === l.toldWhy) return
    l.toldOk = ok
    l.toldWhy = why
    mesh.setDataPath(l.link.peer, ok, why)
  }

  function tick(): void {
    cancelTimer = undefined
    if (!mesh) return
    reconcile()
    for (const l of live.values()) {
      const t = l.link.tick()
      if (t.sendHello) sendHello(l)
      if (t.sendHeartbeat) heartbeat(l)
      reportDataPath(l)
      probe(l, deps.clock.now())
    }
    cancelTimer = deps.clock.setTimer(intervalMs, tick)
  }

  return {
    routes,
    stats,
    setVia(shortId, via, why) {
      const l = byShort.get(shortId)
      if (!l) return false
      if (l.via !== via) log.info(`peer ${l.link.peer}: ${via}${why ? ` (${why})` : ''}`)
      l.via = via
      l.why = via === 'sleeve' ? why : undefined
      routes.invalidate()
      reportDataPath(l)
      return true
    },
    sendFastdpStatus(shortId, ok) {
      const l = byShort.get(shortId)
      if (!l) return false
      l.conn.send({ type: 'overlay', payload: encodeOverlayControl({ t: 'fdp', ok }) })
      return true
    },
    sendEsp(shortId, m) {
      const l = byShort.get(shortId)
      if (!l) return false
      l.conn.send({ type: 'overlay', payload: encodeOverlayControl(m) })
      return true
    },
    async attach(m, s) {
      if (mesh) throw new Error('sleeve overlay attached twice')
      if (config.encrypt) await sleeveCryptoReady()
      mesh = m
      sleeve = s
      s.onControl = onControl
      unsubscribe = m.view.onPeersChanged(reconcile)
      tick()
    },
    detach() {
      cancelTimer?.()
      cancelProbeTimer?.()
      unsubscribe?.()
      cancelTimer = cancelProbeTimer = unsubscribe = undefined
      for (const [name, l] of [...live]) drop(name, l)
      mesh = undefined
    },
    connections() {
      const now = deps.clock.now()
      const nick = new Map<string, string>()
      if (mesh) for (const r of mesh.topology.records()) nick.set(r.name, r.nickname)
      return [...live.values()].map((l) => {
        const pmtu = l.link.remote ? sleeve?.pathMtu(l.shortId) : undefined
        return {
          peer: l.link.peer,
          nickname: l.conn.remote.nickname ?? nick.get(l.link.peer) ?? '',
          addr: l.addr,
          outbound: l.conn.outbound,
          overlay: l.via,
          ...(l.why === undefined ? {} : { why: l.why }),
          state: l.link.state(now),
          encrypted: l.cipherSet,
          ...(l.cipherName === undefined ? {} : { cipher: l.cipherName }),
          ...(l.trusted ? { trusted: true } : {}),
          mtu: pmtu === undefined ? undefined : frameMtu(pmtu, l.cipherSet),
        }
      })
    },
  }
}

/** The largest IP packet one frame carries on a path of `pathMtu` bytes. */
export function frameMtu(pathMtu: number, encrypted: boolean): number {
  return maxFrameBytes(pathMtu, encrypted ? SEAL_OVERHEAD_BYTES : 0) - ETHERNET_HEADER_BYTES
}

/** "ip:port" or "[v6]:port" → ip. */
function hostOf(addr: string): string {
  const m = /^\[(.*)\]:\d+$/.exec(addr)
  if (m) return m[1]
  const i = addr.lastIndexOf(':')
  return i < 0 ? addr : addr.slice(0, i)
}

/**
 * `weave status overlay` / connection lines: `-> 10.0.0.2:6783 established sleeve mtu=1448 name(nick)`,
 * `… established sleeve mtu=1424 encrypted aes-256-gcm name(nick)`,
 * `… established fastdp name(nick)`, `… established sleeve mtu=1448 (not fastdp: why) name(nick)`.
 */
export function overlayConnectionLine(c: OverlayConnectionStatus): string {
  const mtu = c.mtu === undefined || c.overlay === 'fastdp' ? '' : ` mtu=${c.mtu}`
  const why = c.why === undefined ? '' : ` (not fastdp: ${c.why})`
  return `${c.outbound ? '->' : '<-'} ${c.addr} ${c.state} ${c.overlay}${mtu}${c.encrypted ? ` encrypted${c.cipher ? ` ${c.cipher}` : ''}` : ''}${why} ${c.peer}(${c.nickname})`
}
