/*
 * sendBatch: many frames or datagrams in one sendmmsg, with iovecs pointing straight at the
 * callers' Buffers (no copy), and with UDP GSO runs of datagrams to one destination leaving as
 * one message the kernel cuts back into the same datagrams.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include "common.h"
#include "sockets.h"
#include "units.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

/* One buffer holding a run of datagrams of `seg` bytes (the last may be shorter) to addr:port,
 * sent as few GSO messages as the kernel takes (else one by one): 0 when all left, -1 when the
 * socket buffer filled, else the errno. */
static int send_segmented(sock_t *s, uint8_t *data, size_t len, size_t seg, uint32_t addr, uint16_t port) {
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  wn_seg_ctrl ctrl[MAX_BATCH];
  struct sockaddr_in name = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(addr) };
  size_t per = s->gso ? (GSO_MAX_BYTES / seg) : 1;
  if (per > GSO_MAX_SEGS) per = GSO_MAX_SEGS;
  if (per < 1) per = 1;
  size_t off = 0;
  int gso_ok = s->gso;
  while (off < len) {
    unsigned nm = 0;
    memset(msgs, 0, sizeof msgs);
    size_t o = off;
    while (o < len && nm < MAX_BATCH) {
      size_t chunk = per * seg;
      if (!gso_ok) chunk = seg;
      if (chunk > len - o) chunk = len - o;
      iov[nm] = (struct iovec){ .iov_base = data + o, .iov_len = chunk };
      struct msghdr *h = &msgs[nm].msg_hdr;
      h->msg_iov = &iov[nm];
      h->msg_iovlen = 1;
      h->msg_name = &name;
      h->msg_namelen = sizeof name;
      if (gso_ok && chunk > seg) wn_set_segment(h, &ctrl[nm], seg);
      o += chunk;
      nm++;
    }
    int n = sendmmsg(s->fd, msgs, nm, MSG_DONTWAIT);
    if (n > 0) { for (int m = 0; m < n; m++) off += iov[m].iov_len; continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) return -1;
    if (gso_ok) { gso_ok = 0; continue; } /* the kernel refused GSO for this one: one by one */
    return n < 0 ? errno : EIO;
  }
  return 0;
}

/*
 * sendBatch(ext, bufs: Uint8Array[], addrs: Uint32Array|null, ports: Uint16Array|null, status: Int32Array
 *           [, vnet: Uint8Array|null [, segs: Uint16Array|null]]) -> processed
 * Sends bufs[0..] in order (UDP: to addrs[i]:ports[i]). status[i] = 0 sent, errno > 0 refused
 * for that message alone (EMSGSIZE above the path MTU, ECONNREFUSED...), skipped and the batch
 * continues. Stops early when the socket buffer is full (EAGAIN): messages from the returned
 * index on were not sent (status -1) and the caller may retry them when writable.
 * With GSO, runs of consecutive datagrams to one destination with equal sizes (the last of a
 * run may be shorter) leave as one message whose iovecs point at each buffer: the kernel cuts
 * it back into the same datagrams. A run the kernel refuses is retried one by one, so errors
 * are still per datagram.
 * A packet socket with a vnet header sends each frame behind its 10-byte header: vnet[i*10..]
 * when given (a GSO super-frame the kernel segments), else an all-zero one (a plain frame).
 * UDP: segs[i] > 0 makes bufs[i] a run of datagrams of segs[i] bytes each (the last may be
 * shorter), sent as few GSO messages (else one by one); its status is 0 only when all left.
 */
static napi_value send_batch(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *s = argc >= 5 ? wn_get_sock(env, argv[0]) : NULL;
  if (!s || s->fd < 0) return wn_throw_type(env, "sendBatch: socket is closed");
  uint32_t total;
  bool isarr;
  CHECK(napi_is_array(env, argv[1], &isarr));
  if (!isarr) return wn_throw_type(env, "sendBatch: bufs must be an array");
  CHECK(napi_get_array_length(env, argv[1], &total));
  size_t naddrs = 0, nports = 0, nstatus = 0;
  uint32_t *addrs = wn_is_nullish(env, argv[2]) ? NULL : wn_get_typed(env, argv[2], napi_uint32_array, &naddrs);
  uint16_t *ports = wn_is_nullish(env, argv[3]) ? NULL : wn_get_typed(env, argv[3], napi_uint16_array, &nports);
  int32_t *status = wn_get_typed(env, argv[4], napi_int32_array, &nstatus);
  if (!status || nstatus < total) return wn_throw_type(env, "sendBatch: status must be an Int32Array as long as bufs");
  int udp = s->kind == KIND_UDP;
  static uint8_t zero_hdr[VNET_HDR_BYTES];
  size_t nvnet = 0;
  uint8_t *vnet = (argc >= 6 && !wn_is_nullish(env, argv[5])) ? wn_get_typed(env, argv[5], napi_uint8_array, &nvnet) : NULL;
  int with_hdr = !udp && s->vnet;
  if (vnet && nvnet < (size_t)total * VNET_HDR_BYTES) return wn_throw_type(env, "sendBatch: vnet must hold 10 bytes per buffer");
  size_t nsegs = 0;
  uint16_t *segs = (udp && argc >= 7 && !wn_is_nullish(env, argv[6])) ? wn_get_typed(env, argv[6], napi_uint16_array, &nsegs) : NULL;
  if (segs && nsegs < total) return wn_throw_type(env, "sendBatch: segs must hold one entry per buffer");
  if (udp && (!addrs || !ports || naddrs < total || nports < total)) return wn_throw_type(env, "sendBatch: UDP needs addrs and ports for every buffer");

  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  struct sockaddr_in names[MAX_BATCH];
  wn_seg_ctrl ctrl[MAX_BATCH];
  uint32_t first[MAX_BATCH], count[MAX_BATCH];
  uint32_t done = 0, no_gso_below = 0;
  for (uint32_t i = 0; i < total; i++) status[i] = -1;
  while (done < total) {
    if (segs && segs[done] > 0) {
      void *data;
      size_t len;
      if (!wn_element_bytes(env, argv[1], done, &data, &len)) return wn_throw_type(env, "sendBatch: every element must be a Buffer or Uint8Array");
      int r = send_segmented(s, data, len, segs[done], addrs[done], ports[done]);
      if (r < 0) break; /* buffer full: this one and the rest not (wholly) sent */
      status[done++] = r;
      continue;
    }
    unsigned nm = 0, ni = 0;
    uint32_t j = done;
    memset(msgs, 0, sizeof msgs);
    while (j < total && nm < MAX_BATCH && ni < MAX_BATCH && !(segs && segs[j] > 0)) {
      void *data;
      size_t len;
      if (!wn_element_bytes(env, argv[1], j, &data, &len)) return wn_throw_type(env, "sendBatch: every element must be a Buffer or Uint8Array");
      struct msghdr *h = &msgs[nm].msg_hdr;
      h->msg_iov = &iov[ni];
      if (with_hdr) {
        if (ni + 2 > MAX_BATCH) break;
        iov[ni++] = (struct iovec){ .iov_base = vnet ? vnet + (size_t)j * VNET_HDR_BYTES : zero_hdr, .iov_len = VNET_HDR_BYTES };
      }
      iov[ni++] = (struct iovec){ .iov_base = data, .iov_len = len };
      first[nm] = j;
      count[nm] = 1;
      j++;
      if (udp && s->gso && j > no_gso_below && len > 0) {
        size_t seg = len, bytes = len;
        while (j < total && ni < MAX_BATCH && count[nm] < GSO_MAX_SEGS) {
          void *d2;
          size_t l2;
          if (addrs[j] != addrs[first[nm]] || ports[j] != ports[first[nm]] || (segs && segs[j] > 0)) break;
          if (!wn_element_bytes(env, argv[1], j, &d2, &l2)) return wn_throw_type(env, "sendBatch: every element must be a Buffer or Uint8Array");
          if (l2 == 0 || l2 > seg || bytes + l2 > GSO_MAX_BYTES) break;
          iov[ni++] = (struct iovec){ .iov_base = d2, .iov_len = l2 };
          count[nm]++;
          bytes += l2;
          j++;
          if (l2 < seg) break; /* only the last segment may be shorter */
        }
        if (count[nm] > 1) wn_set_segment(h, &ctrl[nm], seg);
      }
      h->msg_iovlen = count[nm] + (with_hdr ? 1 : 0);
      if (udp) {
        uint32_t k = first[nm];
        names[nm] = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons(ports[k]), .sin_addr.s_addr = htonl(addrs[k]) };
        h->msg_name = &names[nm];
        h->msg_namelen = sizeof names[nm];
      }
      nm++;
    }
    int n = sendmmsg(s->fd, msgs, nm, MSG_DONTWAIT);
    if (n > 0) {
      for (int m = 0; m < n; m++)
        for (uint32_t k = 0; k < count[m]; k++) status[first[m] + k] = 0;
      done = first[n - 1] + count[n - 1];
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) break;
    if (count[0] > 1) { no_gso_below = first[0] + count[0]; continue; } /* retry that run one by one */
    /* The first message of the chunk failed on its own: note why and go on with the next. */
    status[done] = n < 0 ? errno : EIO;
    done++;
  }
  CHECK(napi_create_uint32(env, done, &out));
  return out;
}

void weave_register_send_batch(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "sendBatch", NULL, send_batch, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
