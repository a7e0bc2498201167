/*
 * nlSysctl(netns|null, key, value): writes /proc/sys/<key> (dots or slashes) as seen from that
 * namespace, without spawning `sysctl` (see netlink.c for why).
 */
#define _GNU_SOURCE
#include <node_api.h>
#include "common.h"
#include "netlink.h"
#include "units.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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
  return wn_undefined(env);
}

void weave_register_sysctl(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "nlSysctl", NULL, nl_sysctl, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
