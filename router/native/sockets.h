/*
 * The addon's socket handles, shared by the units that move packets through them (sockets.c
 * opens and closes them; readiness.c, recv-batch.c, send-batch.c, send-pieces.c and
 * recv-pieces.c use them). Everything here runs on the JS thread only. Hidden: the addon exports
 * only its N-API init.
 */
#ifndef WEAVE_NATIVE_SOCKETS_H
#define WEAVE_NATIVE_SOCKETS_H
#include <node_api.h>
#include <uv.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include "common.h"

#define MAX_BATCH 256
#define KIND_PACKET 1
#define KIND_UDP 2
/* udpOpen flags */
#define UDP_F_PMTU 1
#define UDP_F_GRO 2
#define UDP_F_GSO 4
/* packetOpen flags / features: frames carry a virtio_net_hdr (GSO super-frames, partial checksums) */
#define PKT_F_VNET 8
/* struct virtio_net_hdr, as the packet socket reads and writes it (host byte order) */
#define VNET_HDR_BYTES 10
#define VNET_F_NEEDS_CSUM 1
/* Kernel limits for UDP GSO: segments per send (UDP_MAX_SEGMENTS was 64 before 6.x) and bytes. */
#define GSO_MAX_SEGS 64
#define GSO_MAX_BYTES 65000
#define GRO_MAX_SEGS 64

typedef struct sock {
  int fd;
  int kind;
  int gro;                /* UDP_GRO on: one received message may hold several datagrams */
  int gso;                /* UDP_SEGMENT usable: sends coalesce runs of datagrams */
  int vnet;               /* packet socket with PACKET_VNET_HDR: each frame has a 10-byte header in front */
  char *netns;            /* path of the namespace the socket was opened in, or NULL */
  uv_poll_t *poll;        /* non-NULL while polling; freed in its uv_close callback */
  napi_env env;
  napi_ref cb_ref;        /* the JS callback while polling */
  napi_ref self_ref;      /* keeps the external alive while polling */
  napi_async_context async_ctx;
} sock_t;

#define CHECK(call) do { if ((call) != napi_ok) return wn_throw_type(env, "N-API call failed: " #call); } while (0)

/* The socket behind handle `v`; NULL (with a TypeError thrown) for anything that is not one of
 * our socket handles: another external (an AEAD context) is never read as a sock_t. */
WN_HIDDEN sock_t *wn_get_sock(napi_env env, napi_value v);
/* No more readiness callbacks for `s` (readiness.c); its fd stays open. */
WN_HIDDEN void wn_stop_polling(sock_t *s);

/* Room for one UDP_SEGMENT control message. */
typedef union { char buf[CMSG_SPACE(sizeof(uint16_t))]; struct cmsghdr align; } wn_seg_ctrl;

/* Makes message `h` a GSO run the kernel cuts into datagrams of `seg` bytes (the last may be
 * shorter), with its control message in `ctrl`. */
static inline void wn_set_segment(struct msghdr *h, wn_seg_ctrl *ctrl, size_t seg) {
  struct cmsghdr *c = (struct cmsghdr *)ctrl->buf;
  c->cmsg_level = SOL_UDP;
  c->cmsg_type = UDP_SEGMENT;
  c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  uint16_t sz = (uint16_t)seg;
  memcpy(CMSG_DATA(c), &sz, sizeof sz);
  h->msg_control = ctrl->buf;
  h->msg_controllen = sizeof ctrl->buf;
}
#endif
