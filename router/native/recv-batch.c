/*
 * recvBatch: up to MAX_BATCH messages in one recvmmsg, into slots of one caller-provided Buffer
 * with typed arrays of offsets, lengths and sources, so a batch allocates nothing. UDP GRO
 * messages are split back into datagrams (pieces.c's wn_split_message); packet sockets' frames
 * get their offloaded checksum finished (checksum.c) and their 802.1ad tag back.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include "checksum.h"
#include "common.h"
#include "pieces.h"
#include "sockets.h"
#include "units.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

/*
 * A received frame whose 802.1ad (S-)tag the kernel took off into auxdata gets it back in place
 * (after the MACs), so the router sees the datapath's relay tag; only plain frames (no GSO
 * super-frame, whose header offsets would move) and only when the slot has room. Other tags
 * stay as the kernel left them. Returns the frame's new length.
 */
static int restore_stag(struct msghdr *m, uint8_t *frame, int len, int room, const uint8_t *vnet_hdr) {
  for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
    if (c->cmsg_level != SOL_PACKET || c->cmsg_type != PACKET_AUXDATA) continue;
    if (c->cmsg_len < CMSG_LEN(sizeof(struct tpacket_auxdata))) return len;
    struct tpacket_auxdata aux;
    memcpy(&aux, CMSG_DATA(c), sizeof aux);
    if (!(aux.tp_status & TP_STATUS_VLAN_VALID) || !(aux.tp_status & TP_STATUS_VLAN_TPID_VALID)) return len;
    if (aux.tp_vlan_tpid != 0x88a8 || len + 4 > room || (vnet_hdr && vnet_hdr[1] != 0)) return len;
    memmove(frame + 16, frame + 12, (size_t)(len - 12));
    frame[12] = 0x88; frame[13] = 0xa8;
    frame[14] = (uint8_t)(aux.tp_vlan_tci >> 8); frame[15] = (uint8_t)aux.tp_vlan_tci;
    return len + 4;
  }
  return len;
}

/*
 * recvBatch(ext, buf, slotSize, max, offs: Uint32Array, lens: Int32Array,
 *           addrs: Uint32Array|null, ports: Uint16Array|null) -> entries
 * Receives up to `max` messages; message i lands at buf[i*slotSize]. Each datagram becomes one
 * entry e: its bytes are buf[offs[e] .. offs[e]+lens[e]). With GRO one message may hold several
 * datagrams (split here by the kernel's segment size), so the entry arrays must hold 64 per
 * message; `max` is lowered to fit them. lens[e] == 0: skip it (one of our own outgoing frames
 * on an old kernel); lens[e] < 0: a message of -lens[e] bytes did not fit its slot.
 * addrs[e] is the IPv4 source as a host-order u32. Returns 0 when nothing is queued.
 */
static napi_value recv_batch(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *s = argc == 8 ? wn_get_sock(env, argv[0]) : NULL;
  if (!s || s->fd < 0) return wn_throw_type(env, "recvBatch: socket is closed");
  void *bufp;
  size_t buflen, noffs = 0, nlens = 0, naddrs = SIZE_MAX, nports = SIZE_MAX;
  int32_t slot = 0, max = 0;
  CHECK(napi_get_buffer_info(env, argv[1], &bufp, &buflen));
  napi_get_value_int32(env, argv[2], &slot);
  napi_get_value_int32(env, argv[3], &max);
  uint32_t *offs = wn_get_typed(env, argv[4], napi_uint32_array, &noffs);
  int32_t *lens = wn_get_typed(env, argv[5], napi_int32_array, &nlens);
  uint32_t *addrs = wn_is_nullish(env, argv[6]) ? NULL : wn_get_typed(env, argv[6], napi_uint32_array, &naddrs);
  uint16_t *ports = wn_is_nullish(env, argv[7]) ? NULL : wn_get_typed(env, argv[7], napi_uint16_array, &nports);
  if (slot <= 0 || max <= 0 || !lens || !offs) return wn_throw_type(env, "recvBatch: bad slotSize/max/offs/lens");
  size_t cap = nlens < noffs ? nlens : noffs;
  if (cap > naddrs) cap = naddrs;
  if (cap > nports) cap = nports;
  size_t per_msg = s->gro ? GRO_MAX_SEGS : 1;
  if (max > MAX_BATCH) max = MAX_BATCH;
  if ((size_t)max > cap / per_msg) max = (int32_t)(cap / per_msg);
  if ((size_t)max * (size_t)slot > buflen) max = (int32_t)(buflen / (size_t)slot);
  if (max <= 0) return wn_throw_type(env, "recvBatch: buffers too small for one message");

  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  union { struct sockaddr_in in; struct sockaddr_ll ll; } names[MAX_BATCH];
  union { char buf[CMSG_SPACE(sizeof(struct tpacket_auxdata))]; struct cmsghdr align; } ctrl[MAX_BATCH];
  memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)max);
  for (int i = 0; i < max; i++) {
    iov[i].iov_base = (char *)bufp + (size_t)i * (size_t)slot;
    iov[i].iov_len = (size_t)slot;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = &names[i];
    msgs[i].msg_hdr.msg_namelen = sizeof names[i];
    if (s->gro || s->kind == KIND_PACKET) {
      msgs[i].msg_hdr.msg_control = ctrl[i].buf;
      msgs[i].msg_hdr.msg_controllen = sizeof ctrl[i].buf;
    }
  }
  /* MSG_TRUNC: packet sockets then report a frame's real length, so truncation is visible. */
  int n = recvmmsg(s->fd, msgs, (unsigned)max, MSG_DONTWAIT | (s->kind == KIND_PACKET ? MSG_TRUNC : 0), NULL);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) n = 0;
    else return wn_throw_errno(env, errno, "recvmmsg");
  }
  uint32_t e = 0;
  for (int i = 0; i < n; i++) {
    int len = (int)msgs[i].msg_len;
    uint32_t base = (uint32_t)i * (uint32_t)slot;
    uint32_t from = s->kind == KIND_UDP ? ntohl(names[i].in.sin_addr.s_addr) : 0;
    uint16_t port = s->kind == KIND_UDP ? ntohs(names[i].in.sin_port) : 0;
    int seg = 0;
    if (s->gro) {
      for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c))
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) memcpy(&seg, CMSG_DATA(c), sizeof seg);
    }
    if ((msgs[i].msg_hdr.msg_flags & MSG_TRUNC) || len > slot) { len = -len; seg = 0; }
    if (s->kind == KIND_PACKET && names[i].ll.sll_pkttype == PACKET_OUTGOING) len = 0;
    if (s->vnet && len > 0) {
      /* The header stays in front of the frame (the caller reads gso fields at offs - 10);
       * a non-GSO frame with a partial checksum is finished here and its header cleared. */
      if (len < VNET_HDR_BYTES) len = 0;
      else {
        uint8_t *h = (uint8_t *)bufp + base;
        if ((h[0] & VNET_F_NEEDS_CSUM) && h[1] == 0) {
          uint16_t start, off;
          memcpy(&start, h + 6, 2);
          memcpy(&off, h + 8, 2);
          wn_finish_csum(h + VNET_HDR_BYTES, (size_t)(len - VNET_HDR_BYTES), start, off);
          h[0] = 0;
        }
        base += VNET_HDR_BYTES;
        len -= VNET_HDR_BYTES;
      }
    } else if (s->vnet && len < 0) len += VNET_HDR_BYTES;
    if (s->kind == KIND_PACKET && len >= 12) len = restore_stag(&msgs[i].msg_hdr, (uint8_t *)bufp + base, len,
      (int)((uint32_t)slot - (base - (uint32_t)i * (uint32_t)slot)), s->vnet ? (uint8_t *)bufp + base - VNET_HDR_BYTES : NULL);
    e = wn_split_message(len, seg, base, from, port, offs, lens, addrs, ports, e, cap);
  }
  CHECK(napi_create_uint32(env, e, &out));
  return out;
}

void weave_register_recv_batch(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "recvBatch", NULL, recv_batch, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
