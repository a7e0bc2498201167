/*
 * rtnetlink messages: building a request (header, attributes, nested attributes) and the
 * synchronous exchange with the kernel (wn_nl_talk), plus the argument checks the namespace units
 * share. Declared in netlink.h.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include "netlink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ---- arguments (errors, strings and namespaces: common.h) -------------------------------- */

napi_value wn_undefined(napi_env env) { napi_value u; napi_get_undefined(env, &u); return u; }

int wn_arg_int(napi_env env, napi_value v, int32_t *out) {
  return napi_get_value_int32(env, v, out) == napi_ok;
}

int wn_arg_ip(napi_env env, napi_value v, struct in_addr *out) {
  char s[32];
  return wn_get_string(env, v, s, sizeof s) && inet_pton(AF_INET, s, out) == 1;
}

/* ---- message building ------------------------------------------------------------------- */

struct nlmsghdr *wn_msg_init(nlmsg_t *m, int type, int flags) {
  memset(m->buf, 0, NLMSG_HDRLEN);
  struct nlmsghdr *h = (struct nlmsghdr *)m->buf;
  h->nlmsg_len = NLMSG_HDRLEN;
  h->nlmsg_type = type;
  h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
  return h;
}

/* Append `len` bytes (zeroed when data is NULL) at the aligned end; returns where they went. */
void *wn_msg_put(nlmsg_t *m, const void *data, size_t len) {
  struct nlmsghdr *h = (struct nlmsghdr *)m->buf;
  size_t at = NLMSG_ALIGN(h->nlmsg_len);
  if (at + len > sizeof m->buf) abort(); /* our messages are a few hundred bytes */
  void *p = m->buf + at;
  if (data) memcpy(p, data, len); else memset(p, 0, len);
  h->nlmsg_len = at + len;
  return p;
}

struct rtattr *wn_attr_put(nlmsg_t *m, int type, const void *data, size_t len) {
  struct rtattr *a = wn_msg_put(m, NULL, RTA_LENGTH(len));
  a->rta_type = type;
  a->rta_len = RTA_LENGTH(len);
  if (data) memcpy(RTA_DATA(a), data, len);
  return a;
}

struct rtattr *wn_nest_begin(nlmsg_t *m, int type) { return wn_attr_put(m, type, NULL, 0); }

void wn_nest_end(nlmsg_t *m, struct rtattr *a) {
  struct nlmsghdr *h = (struct nlmsghdr *)m->buf;
  a->rta_len = (unsigned short)((m->buf + h->nlmsg_len) - (char *)a);
}

struct ifinfomsg *wn_put_ifinfo(nlmsg_t *m, int index) {
  struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = index };
  return wn_msg_put(m, &ifi, sizeof ifi);
}

/*
 * Send one request and read until its answer: 0 on success (errno-style positive code on
 * failure). A reply that is not an ack (RTM_GETLINK's RTM_NEWLINK) is copied into `reply`.
 */
int wn_nl_talk(int fd, nlmsg_t *m, nlmsg_t *reply) {
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
