/*
 * weave_native: the project's one N-API addon. Packet sockets (AF_PACKET) to take Ethernet
 * frames off the weave bridge and put them back, and UDP sockets for sleeve, both moved in
 * batches with recvmmsg/sendmmsg so one system call carries up to MAX_BATCH packets.
 *
 * Buffers: the caller owns them. Receives fill one caller-provided Buffer split into fixed
 * slots (slot i at i * slotSize) plus typed arrays of offsets/lengths/addresses, so a batch
 * allocates nothing. Sends take an array of Buffers and point iovecs straight at their memory
 * (no copy). UDP GSO/GRO (see sockets.c's udp_open) multiply what one system call moves.
 *
 * Units (each a translation unit that defines its own JS functions, see units.h):
 *   sockets.c      opening and closing packet and UDP sockets, their options (sockets.h)
 *   readiness.c    readiness callbacks from node's own event loop (uv_poll)
 *   recv-batch.c   recvBatch: a batch in, GRO messages split, offloaded checksums finished
 *   send-batch.c   sendBatch: a batch out, with UDP GSO runs
 *   send-pieces.c  sendPieces: an oversized sleeve datagram out as pieces
 *   recv-pieces.c  collectPieces, injectPieces: pieces back into a datagram or a frame
 *   pieces.c       the pure parsing of received pieces and GRO messages (fuzzed: pieces.h)
 *   checksum.c     Internet checksums (checksum.h)
 *   aead.c         sleeve encryption (libsodium, libcrypto)
 *   netlink.c, netlink-msg.c, sysctl.c, garp.c, ns-exec.c   configuring namespaces and links
 *   common.c       errors, argument checks, entering a namespace (common.h)
 *
 * Everything is called on the JS thread only.
 */
#include <node_api.h>
#include "sockets.h"
#include "units.h"

static napi_value init(napi_env env, napi_value exports) {
  napi_value max;
  weave_register_sockets(env, exports);
  weave_register_recv_batch(env, exports);
  weave_register_send_batch(env, exports);
  weave_register_send_pieces(env, exports);
  weave_register_recv_pieces(env, exports);
  weave_register_readiness(env, exports);
  weave_register_aead(env, exports);
  weave_register_netlink(env, exports);
  weave_register_sysctl(env, exports);
  weave_register_garp(env, exports);
  weave_register_ns_exec(env, exports);
  napi_create_int32(env, MAX_BATCH, &max);
  napi_set_named_property(env, exports, "MAX_BATCH", max);
  return exports;
}

NAPI_MODULE(weave_native, init)
