/*
 * weave_native: the project's one N-API addon. Packet sockets (AF_PACKET) to take Ethernet
 * frames off the weave bridge and put them back, and UDP sockets for sleeve, both moved in
 * batches with recvmmsg/sendmmsg so one system call carries up to MAX_BATCH packets.
 *
 * Readiness: each socket can be watched with a libuv uv_poll_t on node's own event loop.
 * Chosen over a reader thread + napi_threadsafe_function because:
 *  - the forwarding logic runs in JS on the main thread anyway, so a thread would only add a
 *    hand-off (queue, wake-up, copy or ownership transfer) per batch;
 *  - epoll through libuv is level-triggered, so JS reads one batch per wake-up and is simply
 *    called again on the next loop turn if more is queued: fairness between sockets for free;
 *  - nothing to join or synchronise on close: stop polling, close the fd, done.
 *
 * Buffers: the caller owns them. Receives fill one caller-provided Buffer split into fixed
 * slots (slot i at i * slotSize) plus typed arrays of offsets/lengths/addresses, so a batch
 * allocates nothing. Sends take an array of Buffers and point iovecs straight at their memory
 * (no copy). UDP GSO/GRO (see udp_open) multiply what one system call moves.
 * The AEAD for sleeve encryption lives in aead.c.
 *
 * Everything below is called on the JS thread only.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>
#include "common.h"
#include "pieces.h"
#include "units.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef PACKET_VNET_HDR
#define PACKET_VNET_HDR 15
#endif
#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

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

/* ---- errors (wn_throw_*: common.h) ------------------------------------------------------ */

#define CHECK(call) do { if ((call) != napi_ok) return wn_throw_type(env, "N-API call failed: " #call); } while (0)

/* ---- argument helpers (strings, nullish: common.h) ----------------------------------------- */

/* The socket behind handle `v`; NULL (with a TypeError thrown) for anything that is not one of
 * our socket handles: another external (an AEAD context) is never read as a sock_t. */
static sock_t *get_sock(napi_env env, napi_value v) {
  sock_t *s = wn_external_of(env, v, &WN_TAG_SOCK);
  if (!s) wn_throw_type(env, "not a socket handle of this addon");
  return s;
}

/* A typed array's data pointer and element count, checking its element type. */
static void *get_typed(napi_env env, napi_value v, napi_typedarray_type want, size_t *count) {
  napi_typedarray_type t;
  size_t len, off;
  void *data;
  napi_value ab;
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return NULL;
  if (napi_get_typedarray_info(env, v, &t, &len, &data, &ab, &off) != napi_ok || t != want) return NULL;
  *count = len;
  return data;
}

/*
 * Sockets in another network namespace (wn_enter_netns, common.h): setns() moves only the calling
 * thread, we move back right after, and a socket keeps the namespace it was created in.
 * Nothing else runs on the JS thread meanwhile (this is synchronous), and libuv's pool
 * threads are unaffected.
 */

/* ---- socket objects -------------------------------------------------------------------- */

static void poll_closed(uv_handle_t *h) { free(h); }

static void stop_polling(sock_t *s) {
  if (!s->poll) return;
  uv_poll_stop(s->poll);
  s->poll->data = NULL;
  uv_close((uv_handle_t *)s->poll, poll_closed);
  s->poll = NULL;
  if (s->cb_ref) { napi_delete_reference(s->env, s->cb_ref); s->cb_ref = NULL; }
  if (s->self_ref) { napi_delete_reference(s->env, s->self_ref); s->self_ref = NULL; }
  if (s->async_ctx) { napi_async_destroy(s->env, s->async_ctx); s->async_ctx = NULL; }
}

static void close_sock(sock_t *s) {
  stop_polling(s);
  if (s->fd >= 0) { close(s->fd); s->fd = -1; }
}

static void finalize_sock(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  sock_t *s = data;
  close_sock(s);
  free(s->netns);
  free(s);
}

static napi_value wrap_sock(napi_env env, int fd, int kind, const char *netns) {
  sock_t *s = calloc(1, sizeof *s);
  if (!s) { close(fd); return wn_throw_errno(env, ENOMEM, "calloc"); }
  s->fd = fd;
  s->kind = kind;
  s->env = env;
  s->netns = netns ? strdup(netns) : NULL;
  napi_value ext;
  if (napi_create_external(env, s, finalize_sock, NULL, &ext) != napi_ok) {
    close(fd); free(s->netns); free(s);
    return wn_throw_type(env, "napi_create_external failed");
  }
  if (!wn_tag(env, ext, &WN_TAG_SOCK)) return wn_throw_type(env, "napi_type_tag_object failed"); /* the finalizer frees s */
  return ext;
}

/* Big socket buffers absorb bursts between two wake-ups; FORCE works as root, else best effort. */
static void set_bufsize(int fd, int bytes) {
  if (bytes <= 0) return;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) < 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
}

/*
 * packetOpen(ifname, netns|null, bufBytes[, flags (8 vnet)[, ethertype]]) -> external
 * An ethertype other than 0 binds to that protocol only: the kernel then hands over nothing else
 * (heartbeats on a busy tunnel device without copying its traffic), and frames a bridge port
 * passes up rather than forwards still reach it.
 * With PKT_F_VNET (when the kernel grants PACKET_VNET_HDR) frames are read and written with a
 * virtio_net_hdr in front: the kernel then hands over TCP/UDP GSO super-frames (up to 64 KiB)
 * whole instead of segmenting them first, and frames whose checksum was left to offload.
 */
static napi_value packet_open(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  char ifname[IF_NAMESIZE + 1], netns[512];
  int32_t bufsize = 0, flags = 0, ethertype = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3 || !wn_get_string(env, argv[0], ifname, sizeof ifname)) return wn_throw_type(env, "packetOpen(ifname, netns, bufBytes)");
  int has_ns = !wn_is_nullish(env, argv[1]);
  if (has_ns && !wn_get_string(env, argv[1], netns, sizeof netns)) return wn_throw_type(env, "netns must be a path or null");
  napi_get_value_int32(env, argv[2], &bufsize);
  if (argc > 3 && !wn_is_nullish(env, argv[3])) napi_get_value_int32(env, argv[3], &flags);
  if (argc > 4 && !wn_is_nullish(env, argv[4])) napi_get_value_int32(env, argv[4], &ethertype);
  if (ethertype < 0 || ethertype > 0xffff) return wn_throw_type(env, "ethertype must be 0..65535");
  int vnet = 0;

  int saved;
  char what[640];
  if (wn_enter_netns(has_ns ? netns : NULL, &saved) < 0) {
    snprintf(what, sizeof what, "entering netns %s", netns);
    return wn_throw_errno(env, errno, what);
  }
  /* Protocol 0 at creation so nothing is queued from other interfaces before bind. */
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int err = 0;
  const char *step = "socket(AF_PACKET)";
  unsigned idx = 0;
  if (fd < 0) err = errno;
  if (!err && !(idx = if_nametoindex(ifname))) { err = errno ? errno : ENODEV; step = "if_nametoindex"; }
  if (!err) {
    struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ethertype ? (uint16_t)ethertype : ETH_P_ALL), .sll_ifindex = (int)idx };
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) { err = errno; step = "bind"; }
  }
  if (!err) {
    int one = 1;
    /* Our own injections would otherwise come straight back to us as captured frames.
     * Kernels before 4.20 lack this; readBatch also drops PACKET_OUTGOING frames itself. */
    setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
    set_bufsize(fd, bufsize);
    if ((flags & PKT_F_VNET) && setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) == 0) vnet = 1;
    /* The kernel takes VLAN tags off received frames (into metadata): auxdata gives them back,
     * so the datapath's relay tag (802.1ad, see RELAY_TAG_TPID) reaches the router. */
    setsockopt(fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof one);
  }
  wn_leave_netns(saved);
  if (err) {
    if (fd >= 0) close(fd);
    snprintf(what, sizeof what, "packet socket on %s: %s", ifname, step);
    return wn_throw_errno(env, err, what);
  }
  napi_value ext = wrap_sock(env, fd, KIND_PACKET, has_ns ? netns : NULL);
  if (ext) get_sock(env, ext)->vnet = vnet;
  return ext;
}

/* udpOpen(bindAddr, port, netns|null, bufBytes, flags (1 pmtu DO | 2 GRO | 4 GSO)) -> external */
static napi_value udp_open(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  char addr[64], netns[512], what[640];
  int32_t port = 0, bufsize = 0, flags = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5 || !wn_get_string(env, argv[0], addr, sizeof addr)) return wn_throw_type(env, "udpOpen(bindAddr, port, netns, bufBytes, flags)");
  napi_get_value_int32(env, argv[1], &port);
  int has_ns = !wn_is_nullish(env, argv[2]);
  if (has_ns && !wn_get_string(env, argv[2], netns, sizeof netns)) return wn_throw_type(env, "netns must be a path or null");
  napi_get_value_int32(env, argv[3], &bufsize);
  napi_get_value_int32(env, argv[4], &flags);
  struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
  if (port < 0 || port > 65535 || inet_pton(AF_INET, addr, &sin.sin_addr) != 1) return wn_throw_type(env, "bad IPv4 bind address or port");

  int saved;
  if (wn_enter_netns(has_ns ? netns : NULL, &saved) < 0) {
    snprintf(what, sizeof what, "entering netns %s", netns);
    return wn_throw_errno(env, errno, what);
  }
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int err = fd < 0 ? errno : 0;
  const char *step = "socket(AF_INET, SOCK_DGRAM)";
  if (!err) {
    /* DO: the kernel sets DF and refuses datagrams above the path MTU with EMSGSIZE, which is
     * how sleeve learns the MTU; DONT: the kernel fragments (for non-DF inner traffic). */
    int v = (flags & UDP_F_PMTU) ? IP_PMTUDISC_DO : IP_PMTUDISC_DONT;
    setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v, sizeof v);
    set_bufsize(fd, bufsize);
    if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0) { err = errno; step = "bind"; }
  }
  wn_leave_netns(saved);
  if (err) {
    if (fd >= 0) close(fd);
    snprintf(what, sizeof what, "udp socket %s:%d: %s", addr, port, step);
    return wn_throw_errno(env, err, what);
  }
  /*
   * GRO/GSO (Linux 4.18/5.0): the kernel moves up to 64 equal-sized datagrams as one buffer
   * through the stack, so a batch costs a few traversals instead of one per datagram. Each is
   * used only when the kernel accepts it; without, everything still works one by one.
   */
  int one = 1, gro = 0, gso = 0;
  if ((flags & UDP_F_GRO) && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0) gro = 1;
  if (flags & UDP_F_GSO) {
    int seg = 0;
    socklen_t sl = sizeof seg;
    gso = getsockopt(fd, SOL_UDP, UDP_SEGMENT, &seg, &sl) == 0;
  }
  napi_value ext = wrap_sock(env, fd, KIND_UDP, has_ns ? netns : NULL);
  if (ext) {
    sock_t *s = get_sock(env, ext);
    s->gro = gro;
    s->gso = gso;
  }
  return ext;
}

/* features(ext) -> flags actually in effect (2 GRO | 4 GSO) */
static napi_value sock_features(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *s = argc ? get_sock(env, argv[0]) : NULL;
  if (!s) return wn_throw_type(env, "features: not a socket");
  CHECK(napi_create_int32(env, (s->gro ? UDP_F_GRO : 0) | (s->gso ? UDP_F_GSO : 0) | (s->vnet ? PKT_F_VNET : 0), &out));
  return out;
}

/* localPort(ext) -> number */
static napi_value local_port(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *s = argc ? get_sock(env, argv[0]) : NULL;
  if (!s || s->fd < 0 || s->kind != KIND_UDP) return wn_throw_type(env, "localPort: not an open UDP socket");
  struct sockaddr_in sin;
  socklen_t len = sizeof sin;
  if (getsockname(s->fd, (struct sockaddr *)&sin, &len) < 0) return wn_throw_errno(env, errno, "getsockname");
  CHECK(napi_create_int32(env, ntohs(sin.sin_port), &out));
  return out;
}

/* Internet checksum (RFC 1071) of p[0..len), folded, not complemented. */
static uint16_t csum_fold(const uint8_t *p, size_t len) {
  uint64_t sum = 0;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint32_t a, b;
    memcpy(&a, p + i, 4);
    memcpy(&b, p + i + 4, 4);
    sum += a;
    sum += b;
  }
  for (; i + 2 <= len; i += 2) { uint16_t w; memcpy(&w, p + i, 2); sum += w; }
  if (i < len) { uint16_t w = 0; memcpy(&w, p + i, 1); sum += w; }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)sum; /* in the byte order of the data */
}

/*
 * A captured frame whose checksum was left to offload (CHECKSUM_PARTIAL: the field holds the
 * pseudo-header sum): finish it as the NIC would, so the frame is complete on the wire.
 */
static void finish_csum(uint8_t *frame, size_t len, uint16_t start, uint16_t offset) {
  if ((size_t)start + offset + 2 > len) return;
  uint16_t c = (uint16_t)~csum_fold(frame + start, len - start);
  if (c == 0) c = 0xffff; /* UDP: 0 would mean "no checksum"; equivalent for TCP */
  memcpy(frame + start + offset, &c, 2);
}

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
  sock_t *s = argc == 8 ? get_sock(env, argv[0]) : NULL;
  if (!s || s->fd < 0) return wn_throw_type(env, "recvBatch: socket is closed");
  void *bufp;
  size_t buflen, noffs = 0, nlens = 0, naddrs = SIZE_MAX, nports = SIZE_MAX;
  int32_t slot = 0, max = 0;
  CHECK(napi_get_buffer_info(env, argv[1], &bufp, &buflen));
  napi_get_value_int32(env, argv[2], &slot);
  napi_get_value_int32(env, argv[3], &max);
  uint32_t *offs = get_typed(env, argv[4], napi_uint32_array, &noffs);
  int32_t *lens = get_typed(env, argv[5], napi_int32_array, &nlens);
  uint32_t *addrs = wn_is_nullish(env, argv[6]) ? NULL : get_typed(env, argv[6], napi_uint32_array, &naddrs);
  uint16_t *ports = wn_is_nullish(env, argv[7]) ? NULL : get_typed(env, argv[7], napi_uint16_array, &nports);
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
          finish_csum(h + VNET_HDR_BYTES, (size_t)(len - VNET_HDR_BYTES), start, off);
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

/* Bytes of a Buffer or Uint8Array element, without copying. */
static int element_bytes(napi_env env, napi_value arr, uint32_t i, void **data, size_t *len) {
  napi_value el;
  if (napi_get_element(env, arr, i, &el) != napi_ok) return 0;
  if (napi_get_buffer_info(env, el, data, len) == napi_ok) return 1;
  size_t cnt;
  *data = get_typed(env, el, napi_uint8_array, &cnt);
  if (!*data) return 0;
  *len = cnt;
  return 1;
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
static int send_segmented(sock_t *s, uint8_t *data, size_t len, size_t seg, uint32_t addr, uint16_t port) {
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  union { char buf[CMSG_SPACE(sizeof(uint16_t))]; struct cmsghdr align; } ctrl[MAX_BATCH];
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
      if (gso_ok && chunk > seg) {
        struct cmsghdr *c = (struct cmsghdr *)ctrl[nm].buf;
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t sz = (uint16_t)seg;
        memcpy(CMSG_DATA(c), &sz, sizeof sz);
        h->msg_control = ctrl[nm].buf;
        h->msg_controllen = sizeof ctrl[nm].buf;
      }
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

static napi_value send_batch(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *s = argc >= 5 ? get_sock(env, argv[0]) : NULL;
  if (!s || s->fd < 0) return wn_throw_type(env, "sendBatch: socket is closed");
  uint32_t total;
  bool isarr;
  CHECK(napi_is_array(env, argv[1], &isarr));
  if (!isarr) return wn_throw_type(env, "sendBatch: bufs must be an array");
  CHECK(napi_get_array_length(env, argv[1], &total));
  size_t naddrs = 0, nports = 0, nstatus = 0;
  uint32_t *addrs = wn_is_nullish(env, argv[2]) ? NULL : get_typed(env, argv[2], napi_uint32_array, &naddrs);
  uint16_t *ports = wn_is_nullish(env, argv[3]) ? NULL : get_typed(env, argv[3], napi_uint16_array, &nports);
  int32_t *status = get_typed(env, argv[4], napi_int32_array, &nstatus);
  if (!status || nstatus < total) return wn_throw_type(env, "sendBatch: status must be an Int32Array as long as bufs");
  int udp = s->kind == KIND_UDP;
  static uint8_t zero_hdr[VNET_HDR_BYTES];
  size_t nvnet = 0;
  uint8_t *vnet = (argc >= 6 && !wn_is_nullish(env, argv[5])) ? get_typed(env, argv[5], napi_uint8_array, &nvnet) : NULL;
  int with_hdr = !udp && s->vnet;
  if (vnet && nvnet < (size_t)total * VNET_HDR_BYTES) return wn_throw_type(env, "sendBatch: vnet must hold 10 bytes per buffer");
  size_t nsegs = 0;
  uint16_t *segs = (udp && argc >= 7 && !wn_is_nullish(env, argv[6])) ? get_typed(env, argv[6], napi_uint16_array, &nsegs) : NULL;
  if (segs && nsegs < total) return wn_throw_type(env, "sendBatch: segs must hold one entry per buffer");
  if (udp && (!addrs || !ports || naddrs < total || nports < total)) return wn_throw_type(env, "sendBatch: UDP needs addrs and ports for every buffer");

  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  struct sockaddr_in names[MAX_BATCH];
  union { char buf[CMSG_SPACE(sizeof(uint16_t))]; struct cmsghdr align; } ctrl[MAX_BATCH];
  uint32_t first[MAX_BATCH], count[MAX_BATCH];
  uint32_t done = 0, no_gso_below = 0;
  for (uint32_t i = 0; i < total; i++) status[i] = -1;
  while (done < total) {
    if (segs && segs[done] > 0) {
      void *data;
      size_t len;
      if (!element_bytes(env, argv[1], done, &data, &len)) return wn_throw_type(env, "sendBatch: every element must be a Buffer or Uint8Array");
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
      if (!element_bytes(env, argv[1], j, &data, &len)) return wn_throw_type(env, "sendBatch: every element must be a Buffer or Uint8Array");
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
          if (!element_bytes(env, argv[1], j, &d2, &l2)) return wn_throw_type(env, "sendBatch: every element must be a Buffer or Uint8Array");
          if (l2 == 0 || l2 > seg || bytes + l2 > GSO_MAX_BYTES) break;
          iov[ni++] = (struct iovec){ .iov_base = d2, .iov_len = l2 };
          count[nm]++;
          bytes += l2;
          j++;
          if (l2 < seg) break; /* only the last segment may be shorter */
        }
        if (count[nm] > 1) {
          struct cmsghdr *c = (struct cmsghdr *)ctrl[nm].buf;
          c->cmsg_level = SOL_UDP;
          c->cmsg_type = UDP_SEGMENT;
          c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
          uint16_t sz = (uint16_t)seg;
          memcpy(CMSG_DATA(c), &sz, sizeof sz);
          h->msg_control = ctrl[nm].buf;
          h->msg_controllen = sizeof ctrl[nm].buf;
        }
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
  sock_t *s = argc == 7 ? get_sock(env, argv[0]) : NULL;
  if (!s || s->fd < 0 || s->kind != KIND_UDP) return wn_throw_type(env, "sendPieces: not an open UDP socket");
  double addr_d = 0;
  uint32_t port = 0, id = 0, room = 0, nparts = 0;
  napi_get_value_double(env, argv[1], &addr_d);
  napi_get_value_uint32(env, argv[2], &port);
  size_t headlen = 0;
  uint8_t *head = get_typed(env, argv[3], napi_uint8_array, &headlen);
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
    if (!element_bytes(env, argv[5], i, &d, &plen[i])) return wn_throw_type(env, "sendPieces: parts must be Buffers or Uint8Arrays");
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
  union { char buf[CMSG_SPACE(sizeof(uint16_t))]; struct cmsghdr align; } ctrl[MSGS];
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
      if (cnt[nm] > 1) {
        struct cmsghdr *c = (struct cmsghdr *)ctrl[nm].buf;
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t sz = (uint16_t)seg;
        memcpy(CMSG_DATA(c), &sz, sizeof sz);
        h->msg_control = ctrl[nm].buf;
        h->msg_controllen = sizeof ctrl[nm].buf;
      }
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
int weave_aead_piece(void *ctx, int dir, uint8_t *dest, const uint8_t *src, uint32_t off, uint32_t len, uint32_t total);
static napi_value collect_pieces(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 9) return wn_throw_type(env, "collectPieces: 9 arguments");
  void *bufp, *destp;
  size_t buflen, destlen, noffs = 0, nlens = 0, naddrs = 0, nports = 0, nst = 0;
  CHECK(napi_get_buffer_info(env, argv[0], &bufp, &buflen));
  uint32_t *offs = get_typed(env, argv[1], napi_uint32_array, &noffs);
  int32_t *lens = get_typed(env, argv[2], napi_int32_array, &nlens);
  uint32_t *addrs = get_typed(env, argv[3], napi_uint32_array, &naddrs);
  uint16_t *ports = get_typed(env, argv[4], napi_uint16_array, &nports);
  uint32_t start = 0, end = 0;
  napi_get_value_uint32(env, argv[5], &start);
  napi_get_value_uint32(env, argv[6], &end);
  uint32_t *st = get_typed(env, argv[7], napi_uint32_array, &nst);
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
  sock_t *s = argc == 8 ? get_sock(env, argv[0]) : NULL;
  if (!s || s->fd < 0 || s->kind == KIND_UDP || !s->vnet) return wn_throw_type(env, "injectPieces: needs an open packet socket with vnet headers");
  void *bufp;
  size_t buflen, noffs = 0, nlens = 0, nvnet = 0;
  CHECK(napi_get_buffer_info(env, argv[1], &bufp, &buflen));
  uint32_t *offs = get_typed(env, argv[2], napi_uint32_array, &noffs);
  int32_t *lens = get_typed(env, argv[3], napi_int32_array, &nlens);
  uint32_t start = 0, count = 0, skip = 0;
  napi_get_value_uint32(env, argv[4], &start);
  napi_get_value_uint32(env, argv[5], &count);
  napi_get_value_uint32(env, argv[6], &skip);
  uint8_t *vnet = get_typed(env, argv[7], napi_uint8_array, &nvnet);
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

/* ---- readiness ------------------------------------------------------------------------- */

static void on_poll(uv_poll_t *h, int status, int events) {
  sock_t *s = h->data;
  if (!s || !s->cb_ref) return;
  napi_env env = s->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, argv[2], res;
  napi_get_reference_value(env, s->cb_ref, &cb);
  napi_get_global(env, &recv);
  napi_create_int32(env, status, &argv[0]);
  napi_create_int32(env, events, &argv[1]);
  /* make_callback (not call_function) so process.nextTick and promise jobs run afterwards.
   * `s` may be freed by the callback (close); it is not touched after this point. */
  if (napi_make_callback(env, s->async_ctx, recv, cb, 2, argv, &res) == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  napi_close_handle_scope(env, scope);
}

/* pollStart(ext, events (1 readable | 2 writable), fn(status, events)) */
static napi_value poll_start(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], name, resource;
  int32_t events = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *s = argc == 3 ? get_sock(env, argv[0]) : NULL;
  if (!s || s->fd < 0) return wn_throw_type(env, "pollStart: socket is closed");
  napi_get_value_int32(env, argv[1], &events);
  napi_valuetype t;
  CHECK(napi_typeof(env, argv[2], &t));
  if (t != napi_function) return wn_throw_type(env, "pollStart: callback must be a function");
  int uvev = ((events & 1) ? UV_READABLE : 0) | ((events & 2) ? UV_WRITABLE : 0);
  if (!uvev) return wn_throw_type(env, "pollStart: no events");

  if (!s->poll) {
    uv_loop_t *loop;
    CHECK(napi_get_uv_event_loop(env, &loop));
    uv_poll_t *p = calloc(1, sizeof *p);
    if (!p) return wn_throw_errno(env, ENOMEM, "calloc");
    int r = uv_poll_init(loop, p, s->fd);
    if (r < 0) { free(p); return wn_throw_errno(env, -r, "uv_poll_init"); }
    p->data = s;
    s->poll = p;
    CHECK(napi_create_object(env, &resource));
    CHECK(napi_create_string_utf8(env, "weave_native.poll", NAPI_AUTO_LENGTH, &name));
    CHECK(napi_async_init(env, resource, name, &s->async_ctx));
    CHECK(napi_create_reference(env, argv[0], 1, &s->self_ref));
  }
  if (s->cb_ref) napi_delete_reference(env, s->cb_ref);
  CHECK(napi_create_reference(env, argv[2], 1, &s->cb_ref));
  int r = uv_poll_start(s->poll, uvev, on_poll);
  if (r < 0) { stop_polling(s); return wn_throw_errno(env, -r, "uv_poll_start"); }
  return NULL;
}

/* pollStop(ext): no more callbacks; the socket stays open. */
static napi_value poll_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *s = argc ? get_sock(env, argv[0]) : NULL;
  if (!s) return wn_throw_type(env, "pollStop: not a socket");
  stop_polling(s);
  return NULL;
}

/* close(ext): stop polling and close the fd. Idempotent. */
static napi_value sock_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *s = argc ? get_sock(env, argv[0]) : NULL;
  if (!s) return wn_throw_type(env, "close: not a socket");
  close_sock(s);
  return NULL;
}

/* fd(ext) -> number (-1 once closed) */
static napi_value sock_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *s = argc ? get_sock(env, argv[0]) : NULL;
  if (!s) return wn_throw_type(env, "fd: not a socket");
  CHECK(napi_create_int32(env, s->fd, &out));
  return out;
}

/*
 * pathMtu(ext, addr: u32, port) -> number
 * The kernel's current path MTU towards addr: IP_MTU needs a connected socket, so a throw-away
 * one is connected (no packet is sent) in the same namespace as `ext`. The kernel keeps learnt
 * PMTUs per destination, so EMSGSIZE seen on the main socket shows up here too.
 */
static napi_value path_mtu(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], out;
  uint32_t addr = 0;
  int32_t port = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *s = argc == 3 ? get_sock(env, argv[0]) : NULL;
  if (!s || s->kind != KIND_UDP) return wn_throw_type(env, "pathMtu: not a UDP socket");
  napi_get_value_uint32(env, argv[1], &addr);
  napi_get_value_int32(env, argv[2], &port);
  int saved;
  if (wn_enter_netns(s->netns, &saved) < 0) return wn_throw_errno(env, errno, "entering netns");
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  wn_leave_netns(saved);
  if (fd < 0) return wn_throw_errno(env, errno, "socket");
  int v = IP_PMTUDISC_DO, mtu = 0;
  socklen_t ml = sizeof mtu;
  struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(addr) };
  setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v, sizeof v);
  if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0 || getsockopt(fd, IPPROTO_IP, IP_MTU, &mtu, &ml) < 0) {
    int e = errno;
    close(fd);
    return wn_throw_errno(env, e, "path MTU (connect/IP_MTU)");
  }
  close(fd);
  CHECK(napi_create_int32(env, mtu, &out));
  return out;
}

/* ---- module ---------------------------------------------------------------------------- */


static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "packetOpen", NULL, packet_open, NULL, NULL, NULL, napi_default, NULL },
    { "udpOpen", NULL, udp_open, NULL, NULL, NULL, napi_default, NULL },
    { "localPort", NULL, local_port, NULL, NULL, NULL, napi_default, NULL },
    { "recvBatch", NULL, recv_batch, NULL, NULL, NULL, napi_default, NULL },
    { "sendBatch", NULL, send_batch, NULL, NULL, NULL, napi_default, NULL },
    { "sendPieces", NULL, udp_send_pieces, NULL, NULL, NULL, napi_default, NULL },
    { "collectPieces", NULL, collect_pieces, NULL, NULL, NULL, napi_default, NULL },
    { "injectPieces", NULL, inject_pieces, NULL, NULL, NULL, napi_default, NULL },
    { "pollStart", NULL, poll_start, NULL, NULL, NULL, napi_default, NULL },
    { "pollStop", NULL, poll_stop, NULL, NULL, NULL, napi_default, NULL },
    { "close", NULL, sock_close, NULL, NULL, NULL, napi_default, NULL },
    { "fd", NULL, sock_fd, NULL, NULL, NULL, napi_default, NULL },
    { "features", NULL, sock_features, NULL, NULL, NULL, napi_default, NULL },
    { "pathMtu", NULL, path_mtu, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_value max;
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
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
