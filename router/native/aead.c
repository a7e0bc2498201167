/*
 * In-place ChaCha20-Poly1305 (IETF) for sleeve datagrams, through the system's libsodium.
 *
 * Why here: libsodium-wrappers (WebAssembly) costs ~15 µs per 1,400-byte datagram here, which
 * caps encrypted sleeve far below the unencrypted path; the C library does the same work in
 * about a microsecond and in place, so a sealed datagram needs no second buffer.
 * Why dlopen: the addon is built with a bare `cc -shared` and no link flags; libsodium23 is
 * optional at run time. Without it `aeadAvailable()` is false and sleeve-crypto.ts falls back
 * to libsodium-wrappers, which produces byte-identical datagrams.
 *
 * Nonce (12 bytes): byte 0 = 0x80 for the dialer's direction, bytes 4..11 = the sequence
 * number big-endian; see router/overlay/sleeve-crypto.ts for the datagram layout.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

#define KEY_BYTES 32
#define TAG_BYTES 16
#define NONCE_BYTES 12

typedef int (*enc_fn)(unsigned char *c, unsigned char *mac, unsigned long long *maclen,
                      const unsigned char *m, unsigned long long mlen,
                      const unsigned char *ad, unsigned long long adlen,
                      const unsigned char *nsec, const unsigned char *npub, const unsigned char *k);
typedef int (*dec_fn)(unsigned char *m, unsigned char *nsec,
                      const unsigned char *c, unsigned long long clen, const unsigned char *mac,
                      const unsigned char *ad, unsigned long long adlen,
                      const unsigned char *npub, const unsigned char *k);

static struct { int tried; int ok; enc_fn enc; dec_fn dec; } lib;

static int load(void) {
  if (lib.tried) return lib.ok;
  lib.tried = 1;
  void *h = dlopen("libsodium.so.23", RTLD_NOW | RTLD_LOCAL);
  if (!h) h = dlopen("libsodium.so", RTLD_NOW | RTLD_LOCAL);
  if (!h) return 0;
  int (*init)(void) = (int (*)(void))dlsym(h, "sodium_init");
  lib.enc = (enc_fn)dlsym(h, "crypto_aead_chacha20poly1305_ietf_encrypt_detached");
  lib.dec = (dec_fn)dlsym(h, "crypto_aead_chacha20poly1305_ietf_decrypt_detached");
  if (!init || !lib.enc || !lib.dec || init() < 0) return 0;
  lib.ok = 1;
  return 1;
}

static void make_nonce(unsigned char n[NONCE_BYTES], int dir, double seqd) {
  uint64_t seq = (uint64_t)seqd;
  memset(n, 0, NONCE_BYTES);
  n[0] = dir ? 0x80 : 0;
  for (int i = 0; i < 8; i++) n[4 + i] = (unsigned char)(seq >> (56 - 8 * i));
}

static void *bytes_of(napi_env env, napi_value v, size_t *len) {
  napi_typedarray_type t;
  void *data;
  napi_value ab;
  size_t off;
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return NULL;
  if (napi_get_typedarray_info(env, v, &t, len, &data, &ab, &off) != napi_ok || t != napi_uint8_array) return NULL;
  return data;
}

/* Shared argument parsing: (key, dir, seq, buf, adLen) with buf = ad ‖ message ‖ tag. */
static int parse(napi_env env, napi_callback_info info, unsigned char **key, unsigned char nonce[NONCE_BYTES],
                 unsigned char **buf, size_t *len, uint32_t *adlen) {
  size_t argc = 5, klen;
  napi_value argv[5];
  int32_t dir = 0;
  double seq = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5) goto bad;
  *key = bytes_of(env, argv[0], &klen);
  *buf = bytes_of(env, argv[3], len);
  if (!*key || klen != KEY_BYTES || !*buf) goto bad;
  if (napi_get_value_int32(env, argv[1], &dir) != napi_ok || napi_get_value_double(env, argv[2], &seq) != napi_ok) goto bad;
  if (napi_get_value_uint32(env, argv[4], adlen) != napi_ok || (size_t)*adlen + TAG_BYTES > *len) goto bad;
  if (!(seq >= 0 && seq <= 9007199254740991.0)) goto bad;
  make_nonce(nonce, dir, seq);
  return 1;
bad:
  napi_throw_type_error(env, "ERR_INVALID_ARG", "aead(key: 32 bytes, dir, seq, buf: ad‖message‖tag, adLen)");
  return 0;
}

/* aeadSeal(key, dir, seq, buf, adLen): encrypts buf[adLen..len-16) in place, tag into the last 16. */
static napi_value aead_seal(napi_env env, napi_callback_info info) {
  unsigned char *key, *buf, nonce[NONCE_BYTES];
  size_t len;
  uint32_t adlen;
  if (!parse(env, info, &key, nonce, &buf, &len, &adlen)) return NULL;
  if (!load()) { napi_throw_error(env, "ERR_NATIVE_UNAVAILABLE", "libsodium not loadable"); return NULL; }
  unsigned long long mlen = len - adlen - TAG_BYTES, maclen;
  lib.enc(buf + adlen, buf + adlen + mlen, &maclen, buf + adlen, mlen, buf, adlen, NULL, nonce, key);
  return NULL;
}

/* aeadOpen(key, dir, seq, buf, adLen) -> bool: authenticates, then decrypts in place. */
static napi_value aead_open(napi_env env, napi_callback_info info) {
  unsigned char *key, *buf, nonce[NONCE_BYTES];
  size_t len;
  uint32_t adlen;
  napi_value out;
  if (!parse(env, info, &key, nonce, &buf, &len, &adlen)) return NULL;
  if (!load()) { napi_throw_error(env, "ERR_NATIVE_UNAVAILABLE", "libsodium not loadable"); return NULL; }
  unsigned long long clen = len - adlen - TAG_BYTES;
  int r = lib.dec(buf + adlen, NULL, buf + adlen, clen, buf + adlen + clen, buf, adlen, nonce, key);
  napi_get_boolean(env, r == 0, &out);
  return out;
}

/* aeadAvailable() -> bool */
static napi_value aead_available(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  napi_get_boolean(env, load(), &out);
  return out;
}

void weave_register_aead(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "aeadSeal", NULL, aead_seal, NULL, NULL, NULL, napi_default, NULL },
    { "aeadOpen", NULL, aead_open, NULL, NULL, NULL, napi_default, NULL },
    { "aeadAvailable", NULL, aead_available, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
