/*
 * nlGarp(netns|null, ifname, ip) -> fd: one gratuitous ARP request for ip out of ifname, what
 * `arping -U` sends, without spawning it (see netlink.c for why). The caller closes the returned
 * packet socket's fd (slow: see below).
 */
#define _GNU_SOURCE
#include <node_api.h>
#include "common.h"
#include "netlink.h"
#include "units.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static napi_value nl_garp(napi_env env, napi_callback_info info) {
  ARGS(3);
  char ns[512], ifname[NL_IFNAMSIZ + 1];
  struct in_addr ip;
  int has_ns = argc >= 1 && !wn_is_nullish(env, argv[0]);
  if (argc < 3 || (has_ns && !wn_get_string(env, argv[0], ns, sizeof ns)) || !wn_get_string(env, argv[1], ifname, sizeof ifname) || !wn_arg_ip(env, argv[2], &ip))
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

void weave_register_garp(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "nlGarp", NULL, nl_garp, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
