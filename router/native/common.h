/* Shared by the addon's C files; see common.c. Hidden: the addon exports only its N-API init. */
#ifndef WEAVE_NATIVE_COMMON_H
#define WEAVE_NATIVE_COMMON_H
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

#define WN_HIDDEN __attribute__((visibility("hidden")))

/* Throws an Error whose `code` is the errno name (EPERM, ENODEV...); returns NULL. */
WN_HIDDEN napi_value wn_throw_errno(napi_env env, int err, const char *what);
/* Throws a TypeError with code ERR_INVALID_ARG; returns NULL. */
WN_HIDDEN napi_value wn_throw_type(napi_env env, const char *msg);
/* A JS string that fits `cap` (with its NUL) copied to `out`: 1, else 0. */
WN_HIDDEN int wn_get_string(napi_env env, napi_value v, char *out, size_t cap);
/* undefined or null (or not readable): 1. */
WN_HIDDEN int wn_is_nullish(napi_env env, napi_value v);
/* A typed array's data pointer and element count, checking its element type; NULL if not one. */
WN_HIDDEN void *wn_get_typed(napi_env env, napi_value v, napi_typedarray_type want, size_t *count);
/* Bytes of a Buffer or Uint8Array element `i` of array `arr`, without copying: 1, else 0. */
WN_HIDDEN int wn_element_bytes(napi_env env, napi_value arr, uint32_t i, void **data, size_t *len);
/* Enter the namespace at `path` on this thread (NULL: stay), keeping a handle to come back;
 * -1 with errno on failure. wn_leave_netns returns (and aborts if it cannot: never go on in the
 * wrong namespace). */
WN_HIDDEN int wn_enter_netns(const char *path, int *saved);
WN_HIDDEN void wn_leave_netns(int saved);

/* Type tags of the addon's handles (externals): a handle of one kind passed where another is
 * expected (or any other external) must throw, never be read as the wrong struct. */
WN_HIDDEN extern const napi_type_tag WN_TAG_SOCK;
WN_HIDDEN extern const napi_type_tag WN_TAG_AEAD;
/* Tags a new external `v` with `tag`: 1, else 0. */
WN_HIDDEN int wn_tag(napi_env env, napi_value v, const napi_type_tag *tag);
/* The pointer inside external `v` if it carries `tag`, else NULL (throws nothing). */
WN_HIDDEN void *wn_external_of(napi_env env, napi_value v, const napi_type_tag *tag);
#endif
