/*
 * The addon's units, each defining its own JS functions on the exports object; called once by
 * the module's init (weave_native.c). Hidden: the addon exports only its N-API init.
 */
#ifndef WEAVE_NATIVE_UNITS_H
#define WEAVE_NATIVE_UNITS_H
#include <node_api.h>
#include "common.h"

WN_HIDDEN void weave_register_sockets(napi_env env, napi_value exports);    /* sockets.c */
WN_HIDDEN void weave_register_readiness(napi_env env, napi_value exports);  /* readiness.c */
WN_HIDDEN void weave_register_recv_batch(napi_env env, napi_value exports); /* recv-batch.c */
WN_HIDDEN void weave_register_send_batch(napi_env env, napi_value exports); /* send-batch.c */
WN_HIDDEN void weave_register_send_pieces(napi_env env, napi_value exports); /* send-pieces.c */
WN_HIDDEN void weave_register_recv_pieces(napi_env env, napi_value exports); /* recv-pieces.c */
WN_HIDDEN void weave_register_aead(napi_env env, napi_value exports);       /* aead.c */
WN_HIDDEN void weave_register_netlink(napi_env env, napi_value exports);    /* netlink.c */
WN_HIDDEN void weave_register_sysctl(napi_env env, napi_value exports);     /* sysctl.c */
WN_HIDDEN void weave_register_garp(napi_env env, napi_value exports);       /* garp.c */
WN_HIDDEN void weave_register_ns_exec(napi_env env, napi_value exports);    /* ns-exec.c */
#endif
