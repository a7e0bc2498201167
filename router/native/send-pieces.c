/*
 * sendPieces: one oversized sleeve datagram sent as sleeve piece datagrams, gathered by the
 * kernel straight from the callers' buffers, up to 64 pieces per GSO message. The receiving
 * side is recv-pieces.c (and pieces.c).
 */
#define _GNU_SOURCE
#include <node_api.h>
#include "common.h"
#include "pieces.h"
#include "sockets.h"
#include "units.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/*
 * sendPieces(ext, addr: u32, port, head: Uint8Array(8), id: u32, parts: Uint8Array[], room) -> status
 * Sends the bytes of parts[0] ‖ parts[1] ‖ ... (one oversized sleeve datagram) as sleeve piece
 * datagrams to addr:port: each piece is `head` (the 8-byte sleeve header, kind piece) + u32 id,
 * u32 total length, u32 offset (big-endian) + up to `room` bytes. The kernel gathers the
 * pieces straight from the callers' buffers (iovecs, no copy here) and, with GSO, sends up to
 * 64 of them per message. Returns 0 when all left, -1 when the socket buffer filled (some
 * pieces may have left: the receiver drops the incomplete datagram), else the errno.
 */
#define MAX_PARTS 4
static napi_value udp_send_pieces(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *s = argc == 7 ? wn_get_sock(env, argv[0]) : NULL;
  if (!s || s->fd < 0 || s->kind != KIND_UDP) return wn_throw_type(env, "sendPieces: not an open UDP socket");
  double addr_d = 0;
  uint32_t port = 0, id = 0, room = 0, nparts = 0;
  napi_get_value_double(env, argv[1], &addr_d);
  napi_get_value_uint32(env, argv[2], &port);
  size_t headlen = 0;
  uint8_t *head = wn_get_typed(env, argv[3], napi_uint8_array, &headlen);
  napi_get_value_uint32(env, argv[4], &id);
  napi_get_value_uint32(env, argv[6], &room);
  bool isarr;
  CHECK(napi_is_array(env, argv[5], &isarr));
  if (!isarr || !head || headlen < 8 || room < 64 || room > 65000) return wn_throw_type(env, "sendPieces: bad arguments");
  CHECK(napi_get_array_length(env, argv[5], &nparts));
  if (nparts > MAX_PARTS) return wn_throw_type(env, "sendPieces: too many parts");
  uint8_t *pdata[MAX_PARTS];
  size_t plen[MAX_PARTS], total = 0;
  for (uint32_t i = 0; i < nparts; i++) {
    void *d;
    if (!wn_element_bytes(env, argv[5], i, &d, &plen[i])) return wn_throw_type(env, "sendPieces: parts must be Buffers or Uint8Arrays");
    pdata[i] = d;
    total += plen[i];
  }
  if (total == 0 || total > 0x20000) return wn_throw_type(env, "sendPieces: 1 to 131072 bytes");
  size_t n = (total + room - 1) / room;
  size_t seg = PIECE_HDR + room;
  uint8_t *hdrs = malloc(n * PIECE_HDR);
  if (!hdrs) return wn_throw_errno(env, ENOMEM, "sendPieces");
  for (size_t i = 0; i < n; i++) {
    uint8_t *h = hdrs + i * PIECE_HDR;
    uint32_t off = (uint32_t)(i * room), tot = (uint32_t)total;
    memcpy(h, head, 8);
    h[8] = id >> 24; h[9] = id >> 16; h[10] = id >> 8; h[11] = id;
    h[12] = tot >> 24; h[13] = tot >> 16; h[14] = tot >> 8; h[15] = tot;
    h[16] = off >> 24; h[17] = off >> 16; h[18] = off >> 8; h[19] = off;
  }
  struct sockaddr_in name = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl((uint32_t)addr_d) };
  int gso_ok = s->gso;
  size_t done = 0; /* pieces sent */
  int result = 0;
  enum { MSGS = 8, IOV_PER_PIECE = 1 + MAX_PARTS };
  static struct iovec iov[MSGS * GSO_MAX_SEGS * IOV_PER_PIECE];
  struct mmsghdr msgs[MSGS];
  wn_seg_ctrl ctrl[MSGS];
  size_t first[MSGS], cnt[MSGS];
  while (done < n) {
    size_t per = gso_ok ? 65000 / seg : 1;
    if (per > GSO_MAX_SEGS) per = GSO_MAX_SEGS;
    if (per < 1) per = 1;
    unsigned nm = 0;
    size_t ni = 0, i = done;
    memset(msgs, 0, sizeof msgs);
    while (i < n && nm < MSGS) {
      struct msghdr *h = &msgs[nm].msg_hdr;
      h->msg_iov = &iov[ni];
      first[nm] = i;
      cnt[nm] = 0;
      size_t iv0 = ni;
      for (; i < n && cnt[nm] < per; i++, cnt[nm]++) {
        iov[ni++] = (struct iovec){ .iov_base = hdrs + i * PIECE_HDR, .iov_len = PIECE_HDR };
        /* bytes [i*room, min(total, (i+1)*room)) of the concatenated parts */
        size_t from = i * room, to = from + room < total ? from + room : total, base = 0;
        for (uint32_t k = 0; k < nparts && from < to; k++) {
          size_t a = from > base ? from - base : 0;
          if (from < base + plen[k]) {
            size_t take = (to < base + plen[k] ? to : base + plen[k]) - (base + a);
            iov[ni++] = (struct iovec){ .iov_base = pdata[k] + a, .iov_len = take };
            from += take;
          }
          base += plen[k];
        }
      }
      h->msg_iovlen = ni - iv0;
      h->msg_name = &name;
      h->msg_namelen = sizeof name;
      if (cnt[nm] > 1) wn_set_segment(h, &ctrl[nm], seg);
      nm++;
    }
    int r = sendmmsg(s->fd, msgs, nm, MSG_DONTWAIT);
    if (r > 0) { done = first[r - 1] + cnt[r - 1]; continue; }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) { result = -1; break; }
    if (gso_ok && cnt[0] > 1) { gso_ok = 0; continue; }
    result = r < 0 ? errno : EIO;
    break;
  }
  free(hdrs);
  CHECK(napi_create_int32(env, result, &out));
  return out;
}

void weave_register_send_pieces(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "sendPieces", NULL, udp_send_pieces, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
