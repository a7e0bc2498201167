/*
 * The addon's sockets: packet sockets (AF_PACKET) to take Ethernet frames off an interface and
 * put them back, and UDP sockets for sleeve, as handles (type-tagged externals) that the batch,
 * piece and readiness units use (sockets.h). Opening, options (offloads, buffer sizes, path MTU
 * discovery), what the kernel granted, and closing.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>
#include "common.h"
#include "sockets.h"
#include "units.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/udp.h>
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

sock_t *wn_get_sock(napi_env env, napi_value v) {
  sock_t *s = wn_external_of(env, v, &WN_TAG_SOCK);
  if (!s) wn_throw_type(env, "not a socket handle of this addon");
  return s;
}

/*
 * Sockets in another network namespace (wn_enter_netns, common.h): setns() moves only the calling
 * thread, we move back right after, and a socket keeps the namespace it was created in.
 * Nothing else runs on the JS thread meanwhile (this is synchronous), and libuv's pool
 * threads are unaffected.
 */

static void close_sock(sock_t *s) {
  wn_stop_polling(s);
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
  if (ext) wn_get_sock(env, ext)->vnet = vnet;
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
    sock_t *s = wn_get_sock(env, ext);
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
  sock_t *s = argc ? wn_get_sock(env, argv[0]) : NULL;
  if (!s) return wn_throw_type(env, "features: not a socket");
  CHECK(napi_create_int32(env, (s->gro ? UDP_F_GRO : 0) | (s->gso ? UDP_F_GSO : 0) | (s->vnet ? PKT_F_VNET : 0), &out));
  return out;
}

/* localPort(ext) -> number */
static napi_value local_port(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *s = argc ? wn_get_sock(env, argv[0]) : NULL;
  if (!s || s->fd < 0 || s->kind != KIND_UDP) return wn_throw_type(env, "localPort: not an open UDP socket");
  struct sockaddr_in sin;
  socklen_t len = sizeof sin;
  if (getsockname(s->fd, (struct sockaddr *)&sin, &len) < 0) return wn_throw_errno(env, errno, "getsockname");
  CHECK(napi_create_int32(env, ntohs(sin.sin_port), &out));
  return out;
}

/* close(ext): stop polling and close the fd. Idempotent. */
static napi_value sock_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *s = argc ? wn_get_sock(env, argv[0]) : NULL;
  if (!s) return wn_throw_type(env, "close: not a socket");
  close_sock(s);
  return NULL;
}

/* fd(ext) -> number (-1 once closed) */
static napi_value sock_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *s = argc ? wn_get_sock(env, argv[0]) : NULL;
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
  sock_t *s = argc == 3 ? wn_get_sock(env, argv[0]) : NULL;
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

void weave_register_sockets(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "packetOpen", NULL, packet_open, NULL, NULL, NULL, napi_default, NULL },
    { "udpOpen", NULL, udp_open, NULL, NULL, NULL, napi_default, NULL },
    { "localPort", NULL, local_port, NULL, NULL, NULL, napi_default, NULL },
    { "close", NULL, sock_close, NULL, NULL, NULL, napi_default, NULL },
    { "fd", NULL, sock_fd, NULL, NULL, NULL, napi_default, NULL },
    { "features", NULL, sock_features, NULL, NULL, NULL, napi_default, NULL },
    { "pathMtu", NULL, path_mtu, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
