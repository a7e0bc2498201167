/*
 * Readiness: each socket can be watched with a libuv uv_poll_t on node's own event loop.
 * Chosen over a reader thread + napi_threadsafe_function because:
 *  - the forwarding logic runs in JS on the main thread anyway, so a thread would only add a
 *    hand-off (queue, wake-up, copy or ownership transfer) per batch;
 *  - epoll through libuv is level-triggered, so JS reads one batch per wake-up and is simply
 *    called again on the next loop turn if more is queued: fairness between sockets for free;
 *  - nothing to join or synchronise on close: stop polling, close the fd, done.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>
#include "common.h"
#include "sockets.h"
#include "units.h"

#include <errno.h>
#include <stdlib.h>

static void poll_closed(uv_handle_t *h) { free(h); }

void wn_stop_polling(sock_t *s) {
  if (!s->poll) return;
  uv_poll_stop(s->poll);
  s->poll->data = NULL;
  uv_close((uv_handle_t *)s->poll, poll_closed);
  s->poll = NULL;
  if (s->cb_ref) { napi_delete_reference(s->env, s->cb_ref); s->cb_ref = NULL; }
  if (s->self_ref) { napi_delete_reference(s->env, s->self_ref); s->self_ref = NULL; }
  if (s->async_ctx) { napi_async_destroy(s->env, s->async_ctx); s->async_ctx = NULL; }
}

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
  sock_t *s = argc == 3 ? wn_get_sock(env, argv[0]) : NULL;
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
  if (r < 0) { wn_stop_polling(s); return wn_throw_errno(env, -r, "uv_poll_start"); }
  return NULL;
}

/* pollStop(ext): no more callbacks; the socket stays open. */
static napi_value poll_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *s = argc ? wn_get_sock(env, argv[0]) : NULL;
  if (!s) return wn_throw_type(env, "pollStop: not a socket");
  wn_stop_polling(s);
  return NULL;
}

void weave_register_readiness(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "pollStart", NULL, poll_start, NULL, NULL, NULL, napi_default, NULL },
    { "pollStop", NULL, poll_stop, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
