/**
 * The door to the native addon (router/native/weave_native.c and its units): packet sockets that
 * take Ethernet frames off an interface and put them back, and UDP sockets, both moved in batches
 * (recvmmsg/sendmmsg), with readiness callbacks from node's own event loop.
 *
 * Received data are views into one receive buffer per socket, reused by the next read:
 * a caller that keeps bytes past the next `readBatch`/`recvBatch` copies them.
 * UDP sockets use GSO/GRO where the kernel has them (equal-sized runs to one destination leave
 * as one message; received coalesced messages are split back into datagrams), invisibly to
 * callers. `nativeAead()` offers in-place ChaCha20-Poly1305 through the system's libsodium;
 * `nativeAeadKey()` AES-256-GCM or ChaCha20-Poly1305 through OpenSSL's libcrypto (faster).
 *
 * Requirements at run time: Linux, root or CAP_NET_RAW for packet sockets, CAP_SYS_ADMIN for
 * the `netns` option; libsodium23 only for nativeAead (else callers use libsodium-wrappers).
 *
 * Loading is lazy (importing this folder does no I/O); `nativeStatus()` tells a data-plane
 * factory whether it can work here and, if not, why.
 *
 * Files: addon.ts (loading, the raw surface), aead.ts, netlink.ts, packet-socket.ts,
 * udp-socket.ts (both on batch-socket.ts and poller.ts), ipv4-text.ts, errno.ts.
 */
export { MAX_BATCH, NativeUnavailableError, nativeStatus, type AeadContext } from './addon'
export { nativeAead, nativeAeadKey, nativeCiphers, type NativeAead, type NativeAeadKey, type NativeCipherName } from './aead'
export { NS_EXEC_TIMED_OUT, nativeNetlink, type NativeNetlink } from './netlink'
export { formatIpv4, parseIpv4 } from './ipv4-text'
export type { SendResult, SocketOptions, Truncated } from './batch-socket'
export { PacketSocket, VNET_HDR_BYTES, openPacketSocket, type PacketSocketOptions } from './packet-socket'
export { UdpSocket, openUdpSocket, type Datagram, type OutDatagram, type UdpSocketOptions } from './udp-socket'
