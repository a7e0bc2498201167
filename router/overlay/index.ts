/**
 * The data plane's door (router/overlay). So far the sleeve core: the datagram format, the MAC
 * table and the per-batch forwarding decision. Sockets live in router/native; the driver that
 * joins them (capture → forwarder → sleeve UDP → forwarder → inject) builds on these.
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
export {
  createSleeveOverlay, SleeveLink, SleeveRoutes, encodeOverlayControl, decodeOverlayControl, kxKeyPair, deriveSleeveSecret,
  frameMtu, overlayConnectionLine, HEARTBEAT_INTERVAL_MS, HEARTBEAT_TIMEOUT_MS,
} from './sleeve-overlay'
export type {
  SleeveOverlay, SleeveOverlayConfig, SleeveOverlayDeps, OverlayConnectionStatus, OverlayMeshHost, SleeveHandle, MeshRouting,
  LinkState, LinkTick, OverlayControl, KxKeyPair,
} from './sleeve-overlay'
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
