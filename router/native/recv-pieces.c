/*
 * The receive side of sendPieces (send-pieces.c): collectPieces puts a datagram's pieces
 * together from a receive batch (checked by pieces.c, opened in place by aead.c when
 * encrypted), and injectPieces sends a super-frame on a packet socket straight from its
 * received pieces.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include "aead.h"
#include "common.h"
#include "pieces.h"
#include "sockets.h"
#include "units.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

/*
 * collectPieces(buf, offs: Uint32Array, lens: Int32Array, addrs: Uint32Array, ports: Uint16Array,
 *               start, end, state: Uint32Array [addr, port, id, total, got], dest: Buffer) -> consumed
 * The receive side of sendPieces, for the entries of one recvBatch: from entry `start` on,
 * while entries are the next pieces (from state's addr:port, sleeve version 1, kind piece,
 * count 0, same id and total, offset == got, within total) of the datagram being rebuilt in
 * `dest`, copy their bytes into place and advance state[4]. Stops at the first entry that is
 * not (the caller handles it), or when the datagram is complete. Returns how many it took.
 * With an AEAD context and direction (arguments 10, 11; aead.c), each piece is decrypted into
 * place instead of copied (weave_aead_piece); a piece it refuses ends the run like a bad header.
 */
static napi_value collect_pieces(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 9) return wn_throw_type(env, "collectPieces: 9 arguments");
  void *bufp, *destp;
  size_t buflen, destlen, noffs = 0, nlens = 0, naddrs = 0, nports = 0, nst = 0;
  CHECK(napi_get_buffer_info(env, argv[0], &bufp, &buflen));
  uint32_t *offs = wn_get_typed(env, argv[1], napi_uint32_array, &noffs);
  int32_t *lens = wn_get_typed(env, argv[2], napi_int32_array, &nlens);
  uint32_t *addrs = wn_get_typed(env, argv[3], napi_uint32_array, &naddrs);
  uint16_t *ports = wn_get_typed(env, argv[4], napi_uint16_array, &nports);
  uint32_t start = 0, end = 0;
  napi_get_value_uint32(env, argv[5], &start);
  napi_get_value_uint32(env, argv[6], &end);
  uint32_t *st = wn_get_typed(env, argv[7], napi_uint32_array, &nst);
  /* dest null: only check the run (how many entries continue the datagram), copy nothing */
  int dry = wn_is_nullish(env, argv[8]);
  if (dry) { destp = NULL; destlen = SIZE_MAX; }
  else CHECK(napi_get_buffer_info(env, argv[8], &destp, &destlen));
  if (!offs || !lens || !addrs || !ports || !st || nst < 5) return wn_throw_type(env, "collectPieces: bad arguments");
  void *aead = NULL;
  int32_t dir = 0;
  napi_valuetype at;
  if (argc >= 11 && napi_typeof(env, argv[9], &at) == napi_ok && at == napi_external) {
    aead = wn_external_of(env, argv[9], &WN_TAG_AEAD);
    if (!aead) return wn_throw_type(env, "collectPieces: not an AEAD context handle");
    CHECK(napi_get_value_int32(env, argv[10], &dir));
  }
  size_t cap = noffs < nlens ? noffs : nlens;
  if (cap > naddrs) cap = naddrs;
  if (cap > nports) cap = nports;
  struct wn_piece_run run = {
    .buf = bufp, .buflen = buflen, .offs = offs, .lens = lens, .addrs = addrs, .ports = ports, .cap = cap,
    .start = start, .end = end, .st = st, .dest = dry ? NULL : destp, .destlen = destlen,
    .open = aead ? weave_aead_piece : NULL, .ctx = aead, .dir = dir,
  };
  CHECK(napi_create_uint32(env, wn_collect_pieces(&run), &out));
  return out;
}

/*
 * injectPieces(pkt, buf, offs, lens, start, count, skip, vnet) -> 0 | errno: sends one frame on
 * a vnet packet socket, gathered by the kernel from the payloads of receive entries
 * start..start+count-1 of `buf` (each past its piece header; the first also past `skip` more
 * bytes: the super datagram's own header) behind the 10-byte virtio_net_hdr `vnet`. A
 * super-frame whose pieces all arrived in one read is injected without being put together here.
 */
static napi_value inject_pieces(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *s = argc == 8 ? wn_get_sock(env, argv[0]) : NULL;
  if (!s || s->fd < 0 || s->kind == KIND_UDP || !s->vnet) return wn_throw_type(env, "injectPieces: needs an open packet socket with vnet headers");
  void *bufp;
  size_t buflen, noffs = 0, nlens = 0, nvnet = 0;
  CHECK(napi_get_buffer_info(env, argv[1], &bufp, &buflen));
  uint32_t *offs = wn_get_typed(env, argv[2], napi_uint32_array, &noffs);
  int32_t *lens = wn_get_typed(env, argv[3], napi_int32_array, &nlens);
  uint32_t start = 0, count = 0, skip = 0;
  napi_get_value_uint32(env, argv[4], &start);
  napi_get_value_uint32(env, argv[5], &count);
  napi_get_value_uint32(env, argv[6], &skip);
  uint8_t *vnet = wn_get_typed(env, argv[7], napi_uint8_array, &nvnet);
  if (!offs || !lens || !vnet || nvnet < VNET_HDR_BYTES || count == 0 || count > 256 ||
      (size_t)start + count > noffs || (size_t)start + count > nlens) return wn_throw_type(env, "injectPieces: bad arguments");
  struct iovec iov[257];
  iov[0] = (struct iovec){ .iov_base = vnet, .iov_len = VNET_HDR_BYTES };
  for (uint32_t i = 0; i < count; i++) {
    int32_t len = lens[start + i];
    size_t cut = PIECE_HDR + (i == 0 ? skip : 0);
    if (len < 0 || (size_t)len <= cut || (size_t)offs[start + i] + (size_t)len > buflen) return wn_throw_type(env, "injectPieces: entry out of range");
    iov[i + 1] = (struct iovec){ .iov_base = (uint8_t *)bufp + offs[start + i] + cut, .iov_len = (size_t)len - cut };
  }
  struct msghdr m = { .msg_iov = iov, .msg_iovlen = count + 1 };
  int r = sendmsg(s->fd, &m, MSG_DONTWAIT) < 0 ? errno : 0;
  CHECK(napi_create_int32(env, r, &out));
  return out;
}

void weave_register_recv_pieces(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "collectPieces", NULL, collect_pieces, NULL, NULL, NULL, napi_default, NULL },
    { "injectPieces", NULL, inject_pieces, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
