/*
 * netlink.c: rtnetlink for attaching containers without spawning `ip`, `sysctl` or `arping`.
 *
 * Why: `docker run` through the proxy waits for the attach, and each process start (nsenter,
 * ip, sh) costs milliseconds; the same steps over netlink cost microseconds. Every request is
 * answered synchronously by the kernel (rtnetlink runs the request inside sendmsg), so these
 * calls block the JS thread only for that long.
 *
 * A netlink socket belongs to the namespace it was created in: nlOpen(path) creates it there
 * (setns on the calling thread and straight back), and every later call on that fd acts there.
 *
 * Functions (all throw an Error whose `code` is the errno name on failure):
 *   nlOpen(netns|null) -> fd          NETLINK_ROUTE socket in that namespace (null: ours)
 *   nlClose(fd)
 *   nlLink(fd, name) -> {index, mtu, mac, up, running, master} | null
 *   nlVethAdd(fd, name, peer, mtu, peerNetns|null)   pair; the peer end created in peerNetns
 *   nlLinkSet(fd, index, up (-1 keep, 0, 1), master (-1 keep, 0 none, >0 index), mtu (0 keep))
 *   nlHairpin(fd, index, on)          bridge port hairpin mode
 *   nlLinkDel(fd, index)
 *   nlAddr(fd, add, index, ip, prefix)   add (EEXIST when present) or delete an IPv4 address
 *   nlRoute(fd, index, dst, prefix)   replace `dst/prefix dev index scope link` in table main
 *   nlSysctl(netns|null, key, value)  write /proc/sys/<key> as seen from that namespace
 *   nsExec(netns|null, argv, input, fn(code, output))  run a command inside a namespace (below)
 *   nlGarp(netns|null, ifname, ip) -> fd   one gratuitous ARP request for ip out of ifname;
 *                                     the caller closes the packet socket's fd (slow: see below)
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define NL_IFNAMSIZ 16
#define NL_BUF 16384

/* ---- arguments (errors, strings and namespaces: common.h) -------------------------------- */

static int arg_int(napi_env env, napi_value v, int32_t *out) {
  return napi_get_value_int32(env, v, out) == napi_ok;
}

static int arg_ip(napi_env env, napi_value v, struct in_addr *out) {
  char s[32];
  return wn_get_string(env, v, s, sizeof s) && inet_pton(AF_INET, s, out) == 1;
}

/* ---- message building ------------------------------------------------------------------- */

typedef struct { char buf[NL_BUF] __attribute__((aligned(8))); } nlmsg_t;

static struct nlmsghdr *msg_init(nlmsg_t *m, int type, int flags) {
  memset(m->buf, 0, NLMSG_HDRLEN);
  struct nlmsghdr *h = (struct nlmsghdr *)m->buf;
  h->nlmsg_len = NLMSG_HDRLEN;
  h->nlmsg_type = type;
  h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
  return h;
}

/* Append `len` bytes (zeroed when data is NULL) at the aligned end; returns where they went. */
static void *msg_put(nlmsg_t *m, const void *data, size_t len) {
  struct nlmsghdr *h = (struct nlmsghdr *)m->buf;
  size_t at = NLMSG_ALIGN(h->nlmsg_len);
  if (at + len > sizeof m->buf) abort(); /* our messages are a few hundred bytes */
  void *p = m->buf + at;
  if (data) memcpy(p, data, len); else memset(p, 0, len);
  h->nlmsg_len = at + len;
  return p;
}

static struct rtattr *attr_put(nlmsg_t *m, int type, const void *data, size_t len) {
  struct rtattr *a = msg_put(m, NULL, RTA_LENGTH(len));
  a->rta_type = type;
  a->rta_len = RTA_LENGTH(len);
  if (data) memcpy(RTA_DATA(a), data, len);
  return a;
}

static struct rtattr *nest_begin(nlmsg_t *m, int type) { return attr_put(m, type, NULL, 0); }

static void nest_end(nlmsg_t *m, struct rtattr *a) {
  struct nlmsghdr *h = (struct nlmsghdr *)m->buf;
  a->rta_len = (unsigned short)((m->buf + h->nlmsg_len) - (char *)a);
}

static struct ifinfomsg *put_ifinfo(nlmsg_t *m, int index) {
  struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = index };
  return msg_put(m, &ifi, sizeof ifi);
}

/*
 * Send one request and read until its answer: 0 on success (errno-style positive code on
 * failure). A reply that is not an ack (RTM_GETLINK's RTM_NEWLINK) is copied into `reply`.
 */
static int nl_talk(int fd, nlmsg_t *m, nlmsg_t *reply) {
  static uint32_t seq;
  struct nlmsghdr *h = (struct nlmsghdr *)m->buf;
  h->nlmsg_seq = ++seq;
  struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
  if (sendto(fd, h, h->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) return errno;
  char buf[NL_BUF] __attribute__((aligned(8)));
  int got_reply = 0;
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) { if (errno == EINTR) continue; return errno; }
    for (struct nlmsghdr *r = (struct nlmsghdr *)buf; NLMSG_OK(r, (size_t)n); r = NLMSG_NEXT(r, n)) {
      if (r->nlmsg_seq != h->nlmsg_seq) continue; /* a stale answer to an earlier, failed call */
      if (r->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *e = NLMSG_DATA(r);
        return e->error ? -e->error : 0;
      }
      if (reply && !got_reply && r->nlmsg_len <= sizeof reply->buf) { memcpy(reply->buf, r, r->nlmsg_len); got_reply = 1; }
      if (!(h->nlmsg_flags & NLM_F_ACK)) return 0;
    }
  }
}

/* ---- functions -------------------------------------------------------------------------- */

#define ARGS(n) size_t argc = n; napi_value argv[n]; \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL

static napi_value undefined(napi_env env) { napi_value u; napi_get_undefined(env, &u); return u; }

static napi_value nl_open(napi_env env, napi_callback_info info) {
  ARGS(1);
  char ns[512];
  int has_ns = argc >= 1 && !wn_is_nullish(env, argv[0]);
  if (has_ns && !wn_get_string(env, argv[0], ns, sizeof ns)) return wn_throw_type(env, "nlOpen(netns|null)");
  int saved;
  if (wn_enter_netns(has_ns ? ns : NULL, &saved) < 0) {
    char what[600];
    snprintf(what, sizeof what, "entering netns %s", ns);
    return wn_throw_errno(env, errno, what);
  }
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  int e = errno;
  wn_leave_netns(saved);
  if (fd < 0) return wn_throw_errno(env, e, "netlink socket");
  struct sockaddr_nl local = { .nl_family = AF_NETLINK };
  if (bind(fd, (struct sockaddr *)&local, sizeof local) < 0) { e = errno; close(fd); return wn_throw_errno(env, e, "netlink bind"); }
  int one = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  /* rtnetlink answers within the request's own system call; a bound wait keeps a kernel
     surprise from hanging the JS thread forever (recv then fails with EAGAIN). */
  struct timeval tv = { .tv_sec = 5 };
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

static napi_value nl_close(napi_env env, napi_callback_info info) {
  ARGS(1);
  int32_t fd;
  if (argc < 1 || !arg_int(env, argv[0], &fd)) return wn_throw_type(env, "nlClose(fd)");
  close(fd);
  return undefined(env);
}

static void set_num(napi_env env, napi_value obj, const char *key, int64_t v) {
  napi_value n;
  napi_create_int64(env, v, &n);
  napi_set_named_property(env, obj, key, n);
}

static napi_value nl_link(napi_env env, napi_callback_info info) {
  ARGS(2);
  int32_t fd;
  char name[NL_IFNAMSIZ + 1];
  if (argc < 2 || !arg_int(env, argv[0], &fd) || !wn_get_string(env, argv[1], name, sizeof name)) return wn_throw_type(env, "nlLink(fd, name)");
  static nlmsg_t m, reply;
  struct nlmsghdr *h = msg_init(&m, RTM_GETLINK, 0);
  h->nlmsg_flags &= ~NLM_F_ACK;
  put_ifinfo(&m, 0);
  attr_put(&m, IFLA_IFNAME, name, strlen(name) + 1);
  uint32_t ext = RTEXT_FILTER_SKIP_STATS;
  attr_put(&m, IFLA_EXT_MASK, &ext, sizeof ext);
  int err = nl_talk(fd, &m, &reply);
  if (err == ENODEV) { napi_value n; napi_get_null(env, &n); return n; }
  if (err) return wn_throw_errno(env, err, "netlink get link");
  struct nlmsghdr *r = (struct nlmsghdr *)reply.buf;
  struct ifinfomsg *ifi = NLMSG_DATA(r);
  napi_value obj;
  napi_create_object(env, &obj);
  set_num(env, obj, "index", ifi->ifi_index);
  napi_value up, running;
  napi_get_boolean(env, (ifi->ifi_flags & IFF_UP) != 0, &up);
  napi_set_named_property(env, obj, "up", up);
  /* IFF_RUNNING: operstate up, set by the kernel's link watcher a moment after carrier on */
  napi_get_boolean(env, (ifi->ifi_flags & IFF_RUNNING) != 0, &running);
  napi_set_named_property(env, obj, "running", running);
  set_num(env, obj, "master", 0);
  int len = r->nlmsg_len - NLMSG_LENGTH(sizeof *ifi);
  for (struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if (a->rta_type == IFLA_MTU) set_num(env, obj, "mtu", *(uint32_t *)RTA_DATA(a));
    else if (a->rta_type == IFLA_MASTER) set_num(env, obj, "master", *(uint32_t *)RTA_DATA(a));
    else if (a->rta_type == IFLA_ADDRESS && RTA_PAYLOAD(a) == 6) {
      unsigned char *b = RTA_DATA(a);
      char mac[18];
      snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
      napi_value s;
      napi_create_string_utf8(env, mac, NAPI_AUTO_LENGTH, &s);
      napi_set_named_property(env, obj, "mac", s);
    }
  }
  return obj;
}

static napi_value nl_veth_add(napi_env env, napi_callback_info info) {
  ARGS(5);
  int32_t fd, mtu;
  char name[NL_IFNAMSIZ + 1], peer[NL_IFNAMSIZ + 1], ns[512];
  if (argc < 5 || !arg_int(env, argv[0], &fd) || !wn_get_string(env, argv[1], name, sizeof name) || !wn_get_string(env, argv[2], peer, sizeof peer) ||
      !arg_int(env, argv[3], &mtu)) return wn_throw_type(env, "nlVethAdd(fd, name, peer, mtu, peerNetns|null)");
  int has_ns = !wn_is_nullish(env, argv[4]);
  if (has_ns && !wn_get_string(env, argv[4], ns, sizeof ns)) return wn_throw_type(env, "peerNetns must be a path or null");
  int nsfd = -1;
  if (has_ns && (nsfd = open(ns, O_RDONLY | O_CLOEXEC)) < 0) {
    char what[600];
    snprintf(what, sizeof what, "opening netns %s", ns);
    return wn_throw_errno(env, errno, what);
  }
  static nlmsg_t m;
  msg_init(&m, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  put_ifinfo(&m, 0);
  attr_put(&m, IFLA_IFNAME, name, strlen(name) + 1);
  if (mtu > 0) attr_put(&m, IFLA_MTU, &mtu, sizeof mtu);
  struct rtattr *linkinfo = nest_begin(&m, IFLA_LINKINFO);
  attr_put(&m, IFLA_INFO_KIND, "veth", 4);
  struct rtattr *data = nest_begin(&m, IFLA_INFO_DATA);
  struct rtattr *pinfo = nest_begin(&m, VETH_INFO_PEER);
  put_ifinfo(&m, 0);
  attr_put(&m, IFLA_IFNAME, peer, strlen(peer) + 1);
  if (mtu > 0) attr_put(&m, IFLA_MTU, &mtu, sizeof mtu);
  if (nsfd >= 0) attr_put(&m, IFLA_NET_NS_FD, &nsfd, sizeof nsfd);
  nest_end(&m, pinfo);
  nest_end(&m, data);
  nest_end(&m, linkinfo);
  int err = nl_talk(fd, &m, NULL);
  if (nsfd >= 0) close(nsfd);
  if (err) {
    char what[128];
    snprintf(what, sizeof what, "creating veth %s/%s", name, peer);
    return wn_throw_errno(env, err, what);
  }
  return undefined(env);
}

static napi_value nl_link_set(napi_env env, napi_callback_info info) {
  ARGS(5);
  int32_t fd, index, up, master, mtu;
  if (argc < 5 || !arg_int(env, argv[0], &fd) || !arg_int(env, argv[1], &index) || !arg_int(env, argv[2], &up) ||
      !arg_int(env, argv[3], &master) || !arg_int(env, argv[4], &mtu)) return wn_throw_type(env, "nlLinkSet(fd, index, up, master, mtu)");
  static nlmsg_t m;
  msg_init(&m, RTM_NEWLINK, 0);
  struct ifinfomsg *ifi = put_ifinfo(&m, index);
  if (up >= 0) { ifi->ifi_change = IFF_UP; ifi->ifi_flags = up ? IFF_UP : 0; }
  if (master >= 0) { uint32_t v = master; attr_put(&m, IFLA_MASTER, &v, sizeof v); }
  if (mtu > 0) { uint32_t v = mtu; attr_put(&m, IFLA_MTU, &v, sizeof v); }
  int err = nl_talk(fd, &m, NULL);
  if (err) return wn_throw_errno(env, err, "netlink set link");
  return undefined(env);
}

static napi_value nl_hairpin(napi_env env, napi_callback_info info) {
  ARGS(3);
  int32_t fd, index;
  bool on;
  if (argc < 3 || !arg_int(env, argv[0], &fd) || !arg_int(env, argv[1], &index) || napi_get_value_bool(env, argv[2], &on) != napi_ok)
    return wn_throw_type(env, "nlHairpin(fd, index, on)");
  static nlmsg_t m;
  msg_init(&m, RTM_NEWLINK, 0);
  put_ifinfo(&m, index);
  struct rtattr *linkinfo = nest_begin(&m, IFLA_LINKINFO);
  attr_put(&m, IFLA_INFO_SLAVE_KIND, "bridge", 6);
  struct rtattr *data = nest_begin(&m, IFLA_INFO_SLAVE_DATA);
  uint8_t v = on ? 1 : 0;
  attr_put(&m, IFLA_BRPORT_MODE, &v, sizeof v);
  nest_end(&m, data);
  nest_end(&m, linkinfo);
  int err = nl_talk(fd, &m, NULL);
  if (err) return wn_throw_errno(env, err, "netlink hairpin");
  return undefined(env);
}

static napi_value nl_link_del(napi_env env, napi_callback_info info) {
  ARGS(2);
  int32_t fd, index;
  if (argc < 2 || !arg_int(env, argv[0], &fd) || !arg_int(env, argv[1], &index)) return wn_throw_type(env, "nlLinkDel(fd, index)");
  static nlmsg_t m;
  msg_init(&m, RTM_DELLINK, 0);
  put_ifinfo(&m, index);
  int err = nl_talk(fd, &m, NULL);
  if (err) return wn_throw_errno(env, err, "netlink delete link");
  return undefined(env);
}

static napi_value nl_addr(napi_env env, napi_callback_info info) {
  ARGS(5);
  int32_t fd, index, prefix;
  bool add;
  struct in_addr ip;
  if (argc < 5 || !arg_int(env, argv[0], &fd) || napi_get_value_bool(env, argv[1], &add) != napi_ok || !arg_int(env, argv[2], &index) ||
      !arg_ip(env, argv[3], &ip) || !arg_int(env, argv[4], &prefix) || prefix < 0 || prefix > 32)
    return wn_throw_type(env, "nlAddr(fd, add, index, ip, prefix)");
  static nlmsg_t m;
  msg_init(&m, add ? RTM_NEWADDR : RTM_DELADDR, add ? NLM_F_CREATE | NLM_F_EXCL : 0);
  struct ifaddrmsg ifa = { .ifa_family = AF_INET, .ifa_prefixlen = prefix, .ifa_index = index, .ifa_scope = RT_SCOPE_UNIVERSE };
  msg_put(&m, &ifa, sizeof ifa);
  attr_put(&m, IFA_LOCAL, &ip, sizeof ip);
  attr_put(&m, IFA_ADDRESS, &ip, sizeof ip);
  int err = nl_talk(fd, &m, NULL);
  if (err) return wn_throw_errno(env, err, add ? "netlink add address" : "netlink delete address");
  return undefined(env);
}

static napi_value nl_route(napi_env env, napi_callback_info info) {
  ARGS(5);
  int32_t fd, index, prefix;
  struct in_addr dst, gw;
  /* optional 5th argument: a gateway (a CNI pod's default route); without one the route is on-link */
  int has_gw = argc >= 5 && !wn_is_nullish(env, argv[4]);
  if (argc < 4 || !arg_int(env, argv[0], &fd) || !arg_int(env, argv[1], &index) || !arg_ip(env, argv[2], &dst) ||
      !arg_int(env, argv[3], &prefix) || prefix < 0 || prefix > 32 || (has_gw && !arg_ip(env, argv[4], &gw)))
    return wn_throw_type(env, "nlRoute(fd, index, dst, prefix, gw?)");
  static nlmsg_t m;
  msg_init(&m, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE);
  struct rtmsg rt = {
    .rtm_family = AF_INET, .rtm_dst_len = prefix, .rtm_table = RT_TABLE_MAIN,
    .rtm_protocol = RTPROT_BOOT, .rtm_scope = has_gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK, .rtm_type = RTN_UNICAST,
  };
  msg_put(&m, &rt, sizeof rt);
  attr_put(&m, RTA_DST, &dst, sizeof dst);
  if (has_gw) attr_put(&m, RTA_GATEWAY, &gw, sizeof gw);
  uint32_t oif = index;
  attr_put(&m, RTA_OIF, &oif, sizeof oif);
  int err = nl_talk(fd, &m, NULL);
  if (err) return wn_throw_errno(env, err, "netlink replace route");
  return undefined(env);
}

static napi_value nl_sysctl(napi_env env, napi_callback_info info) {
  ARGS(3);
  char ns[512], key[256], value[64], path[300];
  int has_ns = argc >= 1 && !wn_is_nullish(env, argv[0]);
  if (argc < 3 || (has_ns && !wn_get_string(env, argv[0], ns, sizeof ns)) || !wn_get_string(env, argv[1], key, sizeof key) ||
      !wn_get_string(env, argv[2], value, sizeof value) || strstr(key, "..")) return wn_throw_type(env, "nlSysctl(netns|null, key, value)");
  snprintf(path, sizeof path, "/proc/sys/%s", key);
  for (char *p = path + 10; *p; p++) if (*p == '.') *p = '/';
  int saved;
  if (wn_enter_netns(has_ns ? ns : NULL, &saved) < 0) return wn_throw_errno(env, errno, "entering netns for sysctl");
  /* /proc/sys/net resolves against the opening thread's namespace: open while inside it. */
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  int e = errno;
  wn_leave_netns(saved);
  if (fd < 0) return wn_throw_errno(env, e, path);
  ssize_t n = write(fd, value, strlen(value));
  e = errno;
  close(fd);
  if (n < 0) return wn_throw_errno(env, e, path);
  return undefined(env);
}

static napi_value nl_garp(napi_env env, napi_callback_info info) {
  ARGS(3);
  char ns[512], ifname[NL_IFNAMSIZ + 1];
  struct in_addr ip;
  int has_ns = argc >= 1 && !wn_is_nullish(env, argv[0]);
  if (argc < 3 || (has_ns && !wn_get_string(env, argv[0], ns, sizeof ns)) || !wn_get_string(env, argv[1], ifname, sizeof ifname) || !arg_ip(env, argv[2], &ip))
    return wn_throw_type(env, "nlGarp(netns|null, ifname, ip)");
  int saved;
  if (wn_enter_netns(has_ns ? ns : NULL, &saved) < 0) return wn_throw_errno(env, errno, "entering netns for ARP");
  int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP));
  int e = errno;
  wn_leave_netns(saved);
  if (fd < 0) return wn_throw_errno(env, e, "packet socket for ARP");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, ifname, strlen(ifname));
  int index = ioctl(fd, SIOCGIFINDEX, &ifr) < 0 ? -1 : ifr.ifr_ifindex;
  if (index < 0 || ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) { e = errno; close(fd); return wn_throw_errno(env, e, ifname); }
  /* An ARP request for our own address (sender = target), broadcast: what `arping -U` sends. */
  unsigned char pkt[28];
  struct arphdr *a = (struct arphdr *)pkt;
  a->ar_hrd = htons(ARPHRD_ETHER);
  a->ar_pro = htons(ETH_P_IP);
  a->ar_hln = 6;
  a->ar_pln = 4;
  a->ar_op = htons(ARPOP_REQUEST);
  memcpy(pkt + 8, ifr.ifr_hwaddr.sa_data, 6);
  memcpy(pkt + 14, &ip, 4);
  memset(pkt + 18, 0, 6);
  memcpy(pkt + 24, &ip, 4);
  struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ARP), .sll_ifindex = index, .sll_halen = 6 };
  memset(to.sll_addr, 0xff, 6);
  ssize_t n = sendto(fd, pkt, sizeof pkt, 0, (struct sockaddr *)&to, sizeof to);
  if (n < 0) { e = errno; close(fd); return wn_throw_errno(env, e, "sending gratuitous ARP"); }
  /* Closing a packet socket waits for an RCU grace period (milliseconds): the caller closes the
     returned fd off the JS thread (fs.close runs in libuv's pool). */
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

/* ---- nsExec: a command inside a namespace, without forking node ---------------------------- */

/*
 * Why: node's child_process forks the whole process (libuv uses fork): with tens of MB mapped that
 * costs 5-15 ms, during which the event loop stands still, on every attach. vfork shares the
 * parent's memory until exec, so its cost does not grow with the daemon. The child enters the
 * namespace itself (setns), so no nsenter either. Exit is seen through a pidfd polled on node's
 * loop; libuv reaps only the pids it spawned, so this child is ours to reap.
 */
/* Output kept for the callback (the rest is read and dropped, so the child never blocks on a
 * full pipe); exit code reported for a child killed at its deadline (as timeout(1) does). */
#define NSEXEC_OUT_CAP 16384
#define NSEXEC_TIMED_OUT 124

typedef struct {
  uv_poll_t exit_poll;    /* the child's pidfd: readable once it exited */
  uv_poll_t out_poll;     /* its stdout+stderr pipe, read while it runs */
  uv_timer_t timer;       /* its deadline */
  int pidfd, outfd, out_open, closing, timed_out;
  uint64_t timeout_ms;
  pid_t pid;
  size_t out_len, dropped;
  char out[NSEXEC_OUT_CAP];
  napi_env env;
  napi_ref cb;
  napi_async_context actx;
} nschild_t;

/* All three handles share the struct: it is freed when the last of them has closed. */
static void nschild_closed(uv_handle_t *h) {
  nschild_t *c = h->data;
  if (--c->closing == 0) free(c);
}

/* Reads what the pipe holds now; at EOF stops watching it. */
static void nschild_drain(nschild_t *c) {
  char scratch[4096];
  while (c->out_open) {
    char *to = c->out_len < sizeof c->out ? c->out + c->out_len : scratch;
    size_t room = c->out_len < sizeof c->out ? sizeof c->out - c->out_len : sizeof scratch;
    ssize_t n = read(c->outfd, to, room);
    if (n > 0) {
      if (to == scratch) c->dropped += (size_t)n; else c->out_len += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) { uv_poll_stop(&c->out_poll); c->out_open = 0; }
    break;
  }
}

static void nschild_output(uv_poll_t *h, int status, int events) {
  (void)status; (void)events;
  nschild_drain(h->data);
}

/* The deadline: kill it; its exit then arrives through the pidfd as usual. */
static void nschild_deadline(uv_timer_t *t) {
  nschild_t *c = t->data;
  c->timed_out = 1;
  if (syscall(SYS_pidfd_send_signal, c->pidfd, SIGKILL, NULL, 0) < 0) kill(c->pid, SIGKILL);
}

static void nschild_exited(uv_poll_t *h, int status, int events) {
  (void)status; (void)events;
  nschild_t *c = h->data;
  int st = 0;
  while (waitpid(c->pid, &st, 0) < 0 && errno == EINTR) {}
  nschild_drain(c); /* what it wrote last (a grandchild holding the pipe gets no more waiting) */
  uv_poll_stop(&c->exit_poll);
  uv_poll_stop(&c->out_poll);
  uv_timer_stop(&c->timer);
  char note[128];
  int nl = 0;
  if (c->timed_out) nl = snprintf(note, sizeof note, "\n(killed: no exit within %llu ms)", (unsigned long long)c->timeout_ms);
  else if (c->dropped) nl = snprintf(note, sizeof note, "\n(%zu more bytes of output dropped)", c->dropped);
  size_t keep = c->out_len + (size_t)nl > sizeof c->out ? sizeof c->out - (size_t)nl : c->out_len;
  memcpy(c->out + keep, note, (size_t)nl);
  size_t len = keep + (size_t)nl;
  napi_env env = c->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) == napi_ok) {
    napi_value cb, recv, argv[2], res;
    napi_get_reference_value(env, c->cb, &cb);
    napi_get_global(env, &recv);
    int code = c->timed_out ? NSEXEC_TIMED_OUT : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    napi_create_int32(env, code, &argv[0]);
    napi_create_string_utf8(env, c->out, len, &argv[1]);
    if (napi_make_callback(env, c->actx, recv, cb, 2, argv, &res) == napi_pending_exception) {
      napi_value e;
      napi_get_and_clear_last_exception(env, &e);
      napi_fatal_exception(env, e);
    }
    napi_close_handle_scope(env, scope);
  }
  napi_delete_reference(env, c->cb);
  napi_async_destroy(env, c->actx);
  c->closing = 3;
  uv_close((uv_handle_t *)&c->exit_poll, nschild_closed);
  uv_close((uv_handle_t *)&c->out_poll, nschild_closed);
  uv_close((uv_handle_t *)&c->timer, nschild_closed);
  close(c->outfd);
  close(c->pidfd);
}

/*
 * nsExec(netns|null, argv[], input, fn(exitCode, stderrAndStdout) [, timeoutMs = 30000]); argv[0]
 * is looked up on PATH. Its output is read while it runs (a child writing more than a pipe holds
 * never blocks; 16 KiB are kept); past timeoutMs it is SIGKILLed and fn gets exit code 124.
 */
static napi_value ns_exec(napi_env env, napi_callback_info info) {
  ARGS(5);
  char ns[512];
  int has_ns = argc >= 1 && !wn_is_nullish(env, argv[0]);
  bool is_array = false;
  napi_valuetype t;
  if (argc < 4 || (has_ns && !wn_get_string(env, argv[0], ns, sizeof ns)) || napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array ||
      napi_typeof(env, argv[3], &t) != napi_ok || t != napi_function) return wn_throw_type(env, "nsExec(netns|null, argv, input, fn)");
  uint32_t nargs = 0;
  napi_get_array_length(env, argv[1], &nargs);
  if (nargs == 0 || nargs > 64) return wn_throw_type(env, "nsExec: 1 to 64 arguments");
  char *args[65] = { 0 };
  char store[8192];
  size_t used = 0;
  for (uint32_t i = 0; i < nargs; i++) {
    napi_value v;
    size_t len;
    napi_get_element(env, argv[1], i, &v);
    if (napi_get_value_string_utf8(env, v, store + used, sizeof store - used, &len) != napi_ok || used + len + 1 >= sizeof store)
      return wn_throw_type(env, "nsExec: arguments must be strings (8 KiB in all)");
    args[i] = store + used;
    used += len + 1;
  }
  static char input[65536];
  size_t in_len = 0;
  if (napi_get_value_string_utf8(env, argv[2], input, sizeof input, &in_len) != napi_ok || in_len >= sizeof input - 1)
    return wn_throw_type(env, "nsExec: input must be a string under 64 KiB");
  double tmo = 30000;
  if (argc >= 5 && !wn_is_nullish(env, argv[4]) && (napi_get_value_double(env, argv[4], &tmo) != napi_ok || !(tmo >= 1 && tmo <= 86400000)))
    return wn_throw_type(env, "nsExec: timeoutMs must be 1 to 86400000");
  uint64_t timeout_ms = (uint64_t)tmo;

  int nsfd = -1, in[2] = { -1, -1 }, out[2] = { -1, -1 };
  if (has_ns && (nsfd = open(ns, O_RDONLY | O_CLOEXEC)) < 0) return wn_throw_errno(env, errno, ns);
  if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
    int e = errno;
    if (nsfd >= 0) close(nsfd);
    for (int i = 0; i < 2; i++) { if (in[i] >= 0) close(in[i]); if (out[i] >= 0) close(out[i]); }
    return wn_throw_errno(env, e, "nsExec: pipe");
  }
  /* The input fits the pipe (64 KiB), so writing it before the child runs cannot block. */
  ssize_t w = write(in[1], input, in_len);
  close(in[1]);
  if (w != (ssize_t)in_len) { int e = errno; close(in[0]); close(out[0]); close(out[1]); if (nsfd >= 0) close(nsfd); return wn_throw_errno(env, e, "nsExec: writing input"); }
  /* No signal handler may run in the child while it borrows our memory (as posix_spawn does):
     all blocked across vfork; the child resets handled signals to default, then unblocks. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = vfork();
  if (pid == 0) {
    /* Only system calls here: we run on the parent's memory until exec. */
    for (int sig = 1; sig < NSIG; sig++) {
      struct sigaction sa;
      if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &sa) < 0) continue;
      if (sa.sa_handler != SIG_IGN && sa.sa_handler != SIG_DFL) { sa.sa_handler = SIG_DFL; sa.sa_flags = 0; sigaction(sig, &sa, NULL); }
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (nsfd >= 0 && setns(nsfd, CLONE_NEWNET) < 0) _exit(126);
    if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(out[1], 2) < 0) _exit(126);
    execvp(args[0], args);
    _exit(127);
  }
  int e = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(in[0]);
  close(out[1]);
  if (nsfd >= 0) close(nsfd);
  if (pid < 0) { close(out[0]); return wn_throw_errno(env, e, "nsExec: vfork"); }
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) {
    e = errno;
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    close(out[0]);
    return wn_throw_errno(env, e, "nsExec: pidfd_open");
  }
  fcntl(out[0], F_SETFL, O_NONBLOCK);
  nschild_t *c = calloc(1, sizeof *c);
  uv_loop_t *loop;
  napi_value name, resource;
  if (!c || napi_get_uv_event_loop(env, &loop) != napi_ok || uv_poll_init(loop, &c->exit_poll, pidfd) < 0) {
    /* Cannot watch it: kill and reap it here rather than leave it unwatched. */
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    free(c); close(pidfd); close(out[0]);
    return wn_throw_errno(env, ENOMEM, "nsExec: watching the child");
  }
  /* Both can only fail on a bad fd or loop: the fds and loop are good by now. */
  uv_poll_init(loop, &c->out_poll, out[0]);
  uv_timer_init(loop, &c->timer);
  c->exit_poll.data = c->out_poll.data = c->timer.data = c;
  c->pid = pid;
  c->pidfd = pidfd;
  c->outfd = out[0];
  c->out_open = 1;
  c->timeout_ms = timeout_ms;
  c->env = env;
  napi_create_reference(env, argv[3], 1, &c->cb);
  napi_create_object(env, &resource);
  napi_create_string_utf8(env, "weave_native.nsExec", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, resource, name, &c->actx);
  uv_poll_start(&c->out_poll, UV_READABLE, nschild_output);
  uv_poll_start(&c->exit_poll, UV_READABLE, nschild_exited);
  uv_timer_start(&c->timer, nschild_deadline, timeout_ms, 0);
  return undefined(env);
}

void weave_register_netlink(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "nlOpen", NULL, nl_open, NULL, NULL, NULL, napi_default, NULL },
    { "nlClose", NULL, nl_close, NULL, NULL, NULL, napi_default, NULL },
    { "nlLink", NULL, nl_link, NULL, NULL, NULL, napi_default, NULL },
    { "nlVethAdd", NULL, nl_veth_add, NULL, NULL, NULL, napi_default, NULL },
    { "nlLinkSet", NULL, nl_link_set, NULL, NULL, NULL, napi_default, NULL },
    { "nlHairpin", NULL, nl_hairpin, NULL, NULL, NULL, napi_default, NULL },
    { "nlLinkDel", NULL, nl_link_del, NULL, NULL, NULL, napi_default, NULL },
    { "nlAddr", NULL, nl_addr, NULL, NULL, NULL, napi_default, NULL },
    { "nlRoute", NULL, nl_route, NULL, NULL, NULL, napi_default, NULL },
    { "nlSysctl", NULL, nl_sysctl, NULL, NULL, NULL, napi_default, NULL },
    { "nlGarp", NULL, nl_garp, NULL, NULL, NULL, napi_default, NULL },
    { "nsExec", NULL, ns_exec, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
