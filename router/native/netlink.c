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
 * Messages are built and exchanged by netlink-msg.c (netlink.h).
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
 * The same family, in their own units:
 *   nlSysctl(netns|null, key, value)  write /proc/sys/<key> as seen from that namespace (sysctl.c)
 *   nsExec(netns|null, argv, input, fn(code, output))  run a command inside a namespace (ns-exec.c)
 *   nlGarp(netns|null, ifname, ip) -> fd   one gratuitous ARP request for ip out of ifname;
 *                                     the caller closes the packet socket's fd (slow: garp.c)
 */
#define _GNU_SOURCE
#include <node_api.h>
#include "common.h"
#include "netlink.h"
#include "units.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* ---- functions -------------------------------------------------------------------------- */

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
  if (argc < 1 || !wn_arg_int(env, argv[0], &fd)) return wn_throw_type(env, "nlClose(fd)");
  close(fd);
  return wn_undefined(env);
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
  if (argc < 2 || !wn_arg_int(env, argv[0], &fd) || !wn_get_string(env, argv[1], name, sizeof name)) return wn_throw_type(env, "nlLink(fd, name)");
  static nlmsg_t m, reply;
  struct nlmsghdr *h = wn_msg_init(&m, RTM_GETLINK, 0);
  h->nlmsg_flags &= ~NLM_F_ACK;
  wn_put_ifinfo(&m, 0);
  wn_attr_put(&m, IFLA_IFNAME, name, strlen(name) + 1);
  uint32_t ext = RTEXT_FILTER_SKIP_STATS;
  wn_attr_put(&m, IFLA_EXT_MASK, &ext, sizeof ext);
  int err = wn_nl_talk(fd, &m, &reply);
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
  if (argc < 5 || !wn_arg_int(env, argv[0], &fd) || !wn_get_string(env, argv[1], name, sizeof name) || !wn_get_string(env, argv[2], peer, sizeof peer) ||
      !wn_arg_int(env, argv[3], &mtu)) return wn_throw_type(env, "nlVethAdd(fd, name, peer, mtu, peerNetns|null)");
  int has_ns = !wn_is_nullish(env, argv[4]);
  if (has_ns && !wn_get_string(env, argv[4], ns, sizeof ns)) return wn_throw_type(env, "peerNetns must be a path or null");
  int nsfd = -1;
  if (has_ns && (nsfd = open(ns, O_RDONLY | O_CLOEXEC)) < 0) {
    char what[600];
    snprintf(what, sizeof what, "opening netns %s", ns);
    return wn_throw_errno(env, errno, what);
  }
  static nlmsg_t m;
  wn_msg_init(&m, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  wn_put_ifinfo(&m, 0);
  wn_attr_put(&m, IFLA_IFNAME, name, strlen(name) + 1);
  if (mtu > 0) wn_attr_put(&m, IFLA_MTU, &mtu, sizeof mtu);
  struct rtattr *linkinfo = wn_nest_begin(&m, IFLA_LINKINFO);
  wn_attr_put(&m, IFLA_INFO_KIND, "veth", 4);
  struct rtattr *data = wn_nest_begin(&m, IFLA_INFO_DATA);
  struct rtattr *pinfo = wn_nest_begin(&m, VETH_INFO_PEER);
  wn_put_ifinfo(&m, 0);
  wn_attr_put(&m, IFLA_IFNAME, peer, strlen(peer) + 1);
  if (mtu > 0) wn_attr_put(&m, IFLA_MTU, &mtu, sizeof mtu);
  if (nsfd >= 0) wn_attr_put(&m, IFLA_NET_NS_FD, &nsfd, sizeof nsfd);
  wn_nest_end(&m, pinfo);
  wn_nest_end(&m, data);
  wn_nest_end(&m, linkinfo);
  int err = wn_nl_talk(fd, &m, NULL);
  if (nsfd >= 0) close(nsfd);
  if (err) {
    char what[128];
    snprintf(what, sizeof what, "creating veth %s/%s", name, peer);
    return wn_throw_errno(env, err, what);
  }
  return wn_undefined(env);
}

static napi_value nl_link_set(napi_env env, napi_callback_info info) {
  ARGS(5);
  int32_t fd, index, up, master, mtu;
  if (argc < 5 || !wn_arg_int(env, argv[0], &fd) || !wn_arg_int(env, argv[1], &index) || !wn_arg_int(env, argv[2], &up) ||
      !wn_arg_int(env, argv[3], &master) || !wn_arg_int(env, argv[4], &mtu)) return wn_throw_type(env, "nlLinkSet(fd, index, up, master, mtu)");
  static nlmsg_t m;
  wn_msg_init(&m, RTM_NEWLINK, 0);
  struct ifinfomsg *ifi = wn_put_ifinfo(&m, index);
  if (up >= 0) { ifi->ifi_change = IFF_UP; ifi->ifi_flags = up ? IFF_UP : 0; }
  if (master >= 0) { uint32_t v = master; wn_attr_put(&m, IFLA_MASTER, &v, sizeof v); }
  if (mtu > 0) { uint32_t v = mtu; wn_attr_put(&m, IFLA_MTU, &v, sizeof v); }
  int err = wn_nl_talk(fd, &m, NULL);
  if (err) return wn_throw_errno(env, err, "netlink set link");
  return wn_undefined(env);
}

static napi_value nl_hairpin(napi_env env, napi_callback_info info) {
  ARGS(3);
  int32_t fd, index;
  bool on;
  if (argc < 3 || !wn_arg_int(env, argv[0], &fd) || !wn_arg_int(env, argv[1], &index) || napi_get_value_bool(env, argv[2], &on) != napi_ok)
    return wn_throw_type(env, "nlHairpin(fd, index, on)");
  static nlmsg_t m;
  wn_msg_init(&m, RTM_NEWLINK, 0);
  wn_put_ifinfo(&m, index);
  struct rtattr *linkinfo = wn_nest_begin(&m, IFLA_LINKINFO);
  wn_attr_put(&m, IFLA_INFO_SLAVE_KIND, "bridge", 6);
  struct rtattr *data = wn_nest_begin(&m, IFLA_INFO_SLAVE_DATA);
  uint8_t v = on ? 1 : 0;
  wn_attr_put(&m, IFLA_BRPORT_MODE, &v, sizeof v);
  wn_nest_end(&m, data);
  wn_nest_end(&m, linkinfo);
  int err = wn_nl_talk(fd, &m, NULL);
  if (err) return wn_throw_errno(env, err, "netlink hairpin");
  return wn_undefined(env);
}

static napi_value nl_link_del(napi_env env, napi_callback_info info) {
  ARGS(2);
  int32_t fd, index;
  if (argc < 2 || !wn_arg_int(env, argv[0], &fd) || !wn_arg_int(env, argv[1], &index)) return wn_throw_type(env, "nlLinkDel(fd, index)");
  static nlmsg_t m;
  wn_msg_init(&m, RTM_DELLINK, 0);
  wn_put_ifinfo(&m, index);
  int err = wn_nl_talk(fd, &m, NULL);
  if (err) return wn_throw_errno(env, err, "netlink delete link");
  return wn_undefined(env);
}

static napi_value nl_addr(napi_env env, napi_callback_info info) {
  ARGS(5);
  int32_t fd, index, prefix;
  bool add;
  struct in_addr ip;
  if (argc < 5 || !wn_arg_int(env, argv[0], &fd) || napi_get_value_bool(env, argv[1], &add) != napi_ok || !wn_arg_int(env, argv[2], &index) ||
      !wn_arg_ip(env, argv[3], &ip) || !wn_arg_int(env, argv[4], &prefix) || prefix < 0 || prefix > 32)
    return wn_throw_type(env, "nlAddr(fd, add, index, ip, prefix)");
  static nlmsg_t m;
  wn_msg_init(&m, add ? RTM_NEWADDR : RTM_DELADDR, add ? NLM_F_CREATE | NLM_F_EXCL : 0);
  struct ifaddrmsg ifa = { .ifa_family = AF_INET, .ifa_prefixlen = prefix, .ifa_index = index, .ifa_scope = RT_SCOPE_UNIVERSE };
  wn_msg_put(&m, &ifa, sizeof ifa);
  wn_attr_put(&m, IFA_LOCAL, &ip, sizeof ip);
  wn_attr_put(&m, IFA_ADDRESS, &ip, sizeof ip);
  int err = wn_nl_talk(fd, &m, NULL);
  if (err) return wn_throw_errno(env, err, add ? "netlink add address" : "netlink delete address");
  return wn_undefined(env);
}

static napi_value nl_route(napi_env env, napi_callback_info info) {
  ARGS(5);
  int32_t fd, index, prefix;
  struct in_addr dst, gw;
  /* optional 5th argument: a gateway (a CNI pod's default route); without one the route is on-link */
  int has_gw = argc >= 5 && !wn_is_nullish(env, argv[4]);
  if (argc < 4 || !wn_arg_int(env, argv[0], &fd) || !wn_arg_int(env, argv[1], &index) || !wn_arg_ip(env, argv[2], &dst) ||
      !wn_arg_int(env, argv[3], &prefix) || prefix < 0 || prefix > 32 || (has_gw && !wn_arg_ip(env, argv[4], &gw)))
    return wn_throw_type(env, "nlRoute(fd, index, dst, prefix, gw?)");
  static nlmsg_t m;
  wn_msg_init(&m, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE);
  struct rtmsg rt = {
    .rtm_family = AF_INET, .rtm_dst_len = prefix, .rtm_table = RT_TABLE_MAIN,
    .rtm_protocol = RTPROT_BOOT, .rtm_scope = has_gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK, .rtm_type = RTN_UNICAST,
  };
  wn_msg_put(&m, &rt, sizeof rt);
  wn_attr_put(&m, RTA_DST, &dst, sizeof dst);
  if (has_gw) wn_attr_put(&m, RTA_GATEWAY, &gw, sizeof gw);
  uint32_t oif = index;
  wn_attr_put(&m, RTA_OIF, &oif, sizeof oif);
  int err = wn_nl_talk(fd, &m, NULL);
  if (err) return wn_throw_errno(env, err, "netlink replace route");
  return wn_undefined(env);
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
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
