/*
 * What every part of the addon shares: errors thrown with the errno name as `code`, string,
 * nullish, typed array and Buffer argument checks, and entering another network namespace on
 * this thread only and coming straight back. Declared in common.h.
 */
#define _GNU_SOURCE
#include <node_api.h>

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

/* Throws an Error whose `code` is the errno name (EPERM, ENODEV...), so JS can branch on it. */
napi_value wn_throw_errno(napi_env env, int err, const char *what) {
  char msg[1024];
  const char *name = strerrorname_np(err);
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, name ? name : "EUNKNOWN", msg);
  return NULL;
}

napi_value wn_throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG", msg);
  return NULL;
}

int wn_get_string(napi_env env, napi_value v, char *out, size_t cap) {
  napi_valuetype t;
  size_t len;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) return 0;
  if (napi_get_value_string_utf8(env, v, out, cap, &len) != napi_ok) return 0;
  return len < cap - 1;
}

int wn_is_nullish(napi_env env, napi_value v) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return 1;
  return t == napi_undefined || t == napi_null;
}

int wn_enter_netns(const char *path, int *saved) {
  *saved = -1;
  if (!path) return 0;
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) return -1;
  int target = open(path, O_RDONLY | O_CLOEXEC);
  if (target < 0) { int e = errno; close(self); errno = e; return -1; }
  if (setns(target, CLONE_NEWNET) < 0) { int e = errno; close(self); close(target); errno = e; return -1; }
  close(target);
  *saved = self;
  return 0;
}

void wn_leave_netns(int saved) {
  if (saved < 0) return;
  int e = errno;
  /* Failing to return would leave the JS thread in the wrong namespace: never continue then. */
  if (setns(saved, CLONE_NEWNET) < 0) { perror("weave_native: setns back"); abort(); }
  close(saved);
  errno = e;
}

/* A typed array's data pointer and element count, checking its element type. */
void *wn_get_typed(napi_env env, napi_value v, napi_typedarray_type want, size_t *count) {
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

/* Bytes of a Buffer or Uint8Array element, without copying. */
int wn_element_bytes(napi_env env, napi_value arr, uint32_t i, void **data, size_t *len) {
  napi_value el;
  if (napi_get_element(env, arr, i, &el) != napi_ok) return 0;
  if (napi_get_buffer_info(env, el, data, len) == napi_ok) return 1;
  size_t cnt;
  *data = wn_get_typed(env, el, napi_uint8_array, &cnt);
  if (!*data) return 0;
  *len = cnt;
  return 1;
}

/* Random 128-bit values, fixed at build time: only their identity matters. */
const napi_type_tag WN_TAG_SOCK = { 0x8f3b2c1d4e5a6978ULL, 0x1a2b3c4d5e6f7081ULL };
const napi_type_tag WN_TAG_AEAD = { 0x5c7e9a1b3d2f4e60ULL, 0x91a3b5c7d9e1f203ULL };

int wn_tag(napi_env env, napi_value v, const napi_type_tag *tag) {
  return napi_type_tag_object(env, v, tag) == napi_ok;
}

void *wn_external_of(napi_env env, napi_value v, const napi_type_tag *tag) {
  napi_valuetype t;
  bool tagged = false;
  void *p = NULL;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external) return NULL;
  if (napi_check_object_type_tag(env, v, tag, &tagged) != napi_ok || !tagged) return NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return p;
}
