/**
 * What the parts of the sleeve overlay share: the live connections (by peer name and by short
 * ID), the routes, the counters, and the mesh and sleeve while attached. createSleeveOverlay
 * (sleeve-overlay.ts) builds one OverlayCore and hands it to the connection table
 * (sleeve-connections.ts), the hello exchange (sleeve-hello.ts), the heartbeats and data-path
 * verdicts (sleeve-heartbeats.ts), the path-MTU probing (sleeve-probing.ts) and the status view
 * (sleeve-overlay-status.ts), each a set of functions over it.
 */
import type { Logger } from '../deps'
import type { PeerConnection, PeerName } from '../mesh'
import type { SleeveCipherName } from './sleeve-crypto'
import type { KxKeyPair } from './sleeve-kx'
import type { SleeveLink } from './sleeve-link'
import type {
  OverlayMeshHost, SleeveHandle, SleeveOverlayConfig, SleeveOverlayDeps, SleeveOverlayStats,
} from './sleeve-overlay-contract'
import type { PmtuSearch } from './sleeve-pmtu'
import type { SleeveRoutes } from './sleeve-routes'

/** One live mesh connection's overlay state. */
export interface Live {
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

export interface OverlayCore {
  readonly config: SleeveOverlayConfig
  readonly deps: SleeveOverlayDeps
  readonly log: Logger
  /** Heartbeat timeout of every link. */
  readonly timeoutMs: number
  readonly live: Map<PeerName, Live>
  readonly byShort: Map<number, Live>
  readonly stats: SleeveOverlayStats
  readonly routes: SleeveRoutes
  /** With `encrypt`: the ciphers we offer; fixed for our lifetime, so both ends of a connection choose from the same two offers. */
  readonly ourCiphers: readonly SleeveCipherName[] | undefined
  /** Set by attach, cleared by detach (mesh) or never (sleeve: its owner stops it). */
  mesh: OverlayMeshHost | undefined
  sleeve: SleeveHandle | undefined
  /** The path-MTU probing timer, while any search runs. */
  cancelProbeTimer: (() => void) | undefined
}
