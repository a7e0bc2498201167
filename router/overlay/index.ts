/**
 * The data plane's door (router/overlay): the Overlay seam (overlay.ts) and its planes. Sleeve:
 * the datagram format, MAC table and forwarding decision, the driver that joins them to the
 * sockets of router/native (sleeve.ts and its parts), and the per-connection layer that runs it
 * over the mesh (sleeve-overlay.ts and its parts). Fastdp over Open vSwitch (fastdp*.ts,
 * ovs-overlay.ts), the kernel vxlan path (vxlan-*.ts), and the switch that picks a plane per
 * peer (overlay-switch.ts).
 */
export {
  SLEEVE_VERSION, HEADER_BYTES, PER_FRAME_BYTES, MIN_FRAME_BYTES, MAX_DATAGRAM_BYTES, UNDERLAY_HEADER_BYTES, MAX_SHORT_ID,
  Kind, encodeFrames, encodeFrameList, encodeHeartbeat, encodeProbe, decodeDatagram, decodeBody, decodeFrameList,
  framesDatagramBytes, packFrames, maxFrameBytes, writeHeader,
} from './sleeve-frame'
export type { SleeveHeader, SleeveDatagram, DecodeFailure, DecodeResult } from './sleeve-frame'
export { MacTable, macAt, formatMac, isGroupMac, DEFAULT_MAC_MAX_AGE_MS } from './mac-table'
export type { LearnResult } from './mac-table'
export { Forwarder } from './forwarder'
export type { Routes, ForwardEffect, ForwardResult, DropReason } from './forwarder'
export {
  createSleeveCipher, sleeveCryptoReady, ReplayWindow, SEAL_OVERHEAD_BYTES, SEQ_BYTES, TAG_BYTES, REPLAY_WINDOW,
  sleeveCiphers, chooseSleeveCipher, DEFAULT_SLEEVE_CIPHER,
} from './sleeve-crypto'
export type { SleeveCipher, SleeveCipherName, OpenResult, OpenFailure, ReplayVerdict } from './sleeve-crypto'
export { Sleeve } from './sleeve'
export type { SleeveConfig, SleeveDeps } from './sleeve'
export type { SleeveStats } from './sleeve-core'
export type { SleevePeer, SleeveTraffic } from './sleeve-peers'
export { handleTooBig, ipChecksum } from './too-big'
export type { TooBigAction } from './too-big'
export { createSleeveOverlay } from './sleeve-overlay'
export { SleeveLink, HEARTBEAT_INTERVAL_MS, HEARTBEAT_TIMEOUT_MS } from './sleeve-link'
export type { LinkState, LinkTick } from './sleeve-link'
export { SleeveRoutes } from './sleeve-routes'
export type { MeshRouting } from './sleeve-routes'
export { encodeOverlayControl, decodeOverlayControl } from './overlay-control'
export type { OverlayControl } from './overlay-control'
export { kxKeyPair, deriveSleeveSecret } from './sleeve-kx'
export type { KxKeyPair } from './sleeve-kx'
export { frameMtu, overlayConnectionLine } from './sleeve-overlay-status'
export type {
  SleeveOverlay, SleeveOverlayConfig, SleeveOverlayDeps, OverlayConnectionStatus, OverlayMeshHost, SleeveHandle,
} from './sleeve-overlay-contract'
export {
  computeFlows, diffFlows, applyChange, changeScript, isEmptyChange, flowKey, formatFlow, tunnelKey, parseTunnelKey, normalizeMac,
  FLOW_COOKIE, LEARNT_COOKIE, VXLAN_OVERHEAD_BYTES, MAX_FASTDP_SHORT_ID,
} from './fastdp-flows'
export type { Flow, FlowChange, FlowPeer, FlowPorts, FlowState } from './fastdp-flows'
export { createOfctlProgrammer, parseDumpFlows, bridgeTarget, OfctlError } from './ofctl'
export type { FlowProgrammer, FlowStat, OfctlOptions } from './ofctl'
export { createFastdp, startFastdp, FastdpUnavailableError, rundirFor } from './fastdp'
export type { Fastdp, FastdpConfig, FastdpDeps, FastdpPeerInfo, FastdpInfo } from './fastdp'
export { NullOverlay, chooseOverlay } from './overlay'
export type { Overlay, OverlayConnection, OverlayPeer, OverlayHealth, FastPeerTraffic } from './overlay'
export { createOverlaySwitch } from './overlay-switch'
export type { OverlaySwitch, OverlaySwitchConfig, OverlaySwitchDeps } from './overlay-switch'
export { createOvsOverlay, kernelOvsModule, probeOvsdb } from './ovs-overlay'
export type { OvsOverlay, OvsOverlayConfig, OvsOverlayDeps } from './ovs-overlay'
export { TunnelHeartbeats } from './tunnel-heartbeats'
export type { HeartbeatSender } from './fastdp-health'
export { createVxlanOverlay } from './vxlan-overlay'
export type { VxlanOverlay, VxlanOverlayConfig, VxlanOverlayDeps, VxlanIo, KernelVxlanHost } from './vxlan-overlay'
export { openVxlanIo } from './vxlan-io'
export { VxlanTraffic, planCounters } from './vxlan-traffic'
export type { VxlanCounterHost } from './vxlan-traffic'
export { encodeHeartbeat as encodeVxlanHeartbeat, decodeHeartbeat as decodeVxlanHeartbeat, MacAnnouncer, MacCollector } from './vxlan-heartbeat'
export { planFdb, wantedFdb, emptyFdb } from './vxlan-fdb'
export type { FdbState } from './vxlan-fdb'
