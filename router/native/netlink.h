/*
 * Shared by the namespace-configuring units (netlink.c, sysctl.c, garp.c, ns-exec.c): argument
 * checks and the rtnetlink message builder with its request/answer exchange (netlink-msg.c).
 * Hidden: the addon exports only its N-API init.
 */
#ifndef WEAVE_NATIVE_NETLINK_H
#define WEAVE_NATIVE_NETLINK_H
#include <node_api.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include "common.h"

#define NL_IFNAMSIZ 16
#define NL_BUF 16384

/* The callback's arguments: `argc` (how many were passed, up to n) and `argv`. */
#define ARGS(n) size_t argc = n; napi_value argv[n]; \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL

WN_HIDDEN napi_value wn_undefined(napi_env env);
/* An int32 argument: 1, else 0. */
WN_HIDDEN int wn_arg_int(napi_env env, napi_value v, int32_t *out);
/* A dotted-quad IPv4 string argument: 1, else 0. */
WN_HIDDEN int wn_arg_ip(napi_env env, napi_value v, struct in_addr *out);

/* One rtnetlink message under construction (our messages are a few hundred bytes). */
typedef struct { char buf[NL_BUF] __attribute__((aligned(8))); } nlmsg_t;

/* Starts a request of `type` (with NLM_F_REQUEST | NLM_F_ACK | flags). */
WN_HIDDEN struct nlmsghdr *wn_msg_init(nlmsg_t *m, int type, int flags);
/* Append `len` bytes (zeroed when data is NULL) at the aligned end; returns where they went. */
WN_HIDDEN void *wn_msg_put(nlmsg_t *m, const void *data, size_t len);
WN_HIDDEN struct rtattr *wn_attr_put(nlmsg_t *m, int type, const void *data, size_t len);
/* A nested attribute: its length is fixed by wn_nest_end once its contents are in. */
WN_HIDDEN struct rtattr *wn_nest_begin(nlmsg_t *m, int type);
WN_HIDDEN void wn_nest_end(nlmsg_t *m, struct rtattr *a);
WN_HIDDEN struct ifinfomsg *wn_put_ifinfo(nlmsg_t *m, int index);
/*
 * Send one request and read until its answer: 0 on success (errno-style positive code on
 * failure). A reply that is not an ack (RTM_GETLINK's RTM_NEWLINK) is copied into `reply`.
 */
WN_HIDDEN int wn_nl_talk(int fd, nlmsg_t *m, nlmsg_t *reply);
#endif
