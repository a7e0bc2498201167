/*
 * AEADs for sleeve datagrams: ChaCha20-Poly1305 (IETF) through the system's libsodium (keyed
 * per call: aeadSeal/aeadOpen), and keyed contexts (aeadContext…) running AES-256-GCM or
 * ChaCha20-Poly1305 through OpenSSL's libcrypto (node's own) — faster, and able to seal from gathered parts
 * and open a datagram piece by piece as it is put together (see the second half of this file).
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
#include "common.h"
#include "aead.h"
#include "units.h"
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>

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

/* ---- keyed contexts through OpenSSL's libcrypto (EVP) ----------------------------------
 *
 * Why OpenSSL as well: on this class of CPU its AES-256-GCM (AES-NI + PCLMUL, stitched AVX
 * code) seals a 64 KiB super-frame in ~25 µs and its ChaCha20-Poly1305 in ~35 µs, where
 * libsodium takes ~50 µs (AES-GCM) and ~75-100 µs (ChaCha20-Poly1305). Both ciphers are the
 * standard constructions (RFC 5116 / RFC 8439), so a datagram sealed here opens with libsodium
 * and back. A context holds one key set up once (the AES key schedule is not redone per
 * datagram). Without libcrypto, ChaCha20-Poly1305 contexts use libsodium; AES-GCM needs both
 * libcrypto and AES-NI/PCLMUL (without them it would be slower than ChaCha, and not constant
 * time), so `aeadCiphers()` then does not list it and sleeve-crypto does not offer it.
 */
#define ALG_CHACHA 0
#define ALG_AES_GCM 1
#define EVP_CTRL_AEAD_GET_TAG_ 0x10
#define EVP_CTRL_AEAD_SET_TAG_ 0x11

typedef struct evp_ctx EVP_CTX;
typedef struct evp_cipher EVP_CIPH;
static struct {
  int tried, ok;
  EVP_CTX *(*ctx_new)(void);
  void (*ctx_free)(EVP_CTX *);
  const EVP_CIPH *(*aes_256_gcm)(void);
  const EVP_CIPH *(*chacha20_poly1305)(void);
  int (*enc_init)(EVP_CTX *, const EVP_CIPH *, void *, const unsigned char *, const unsigned char *);
  int (*dec_init)(EVP_CTX *, const EVP_CIPH *, void *, const unsigned char *, const unsigned char *);
  int (*enc_update)(EVP_CTX *, unsigned char *, int *, const unsigned char *, int);
  int (*dec_update)(EVP_CTX *, unsigned char *, int *, const unsigned char *, int);
  int (*enc_final)(EVP_CTX *, unsigned char *, int *);
  int (*dec_final)(EVP_CTX *, unsigned char *, int *);
  int (*ctrl)(EVP_CTX *, int, int, void *);
} ossl;

/*
 * Node's own OpenSSL first: node exports its statically linked libcrypto's symbols (for addons),
 * or has the shared one loaded. Loading a second libcrypto beside it would be worse than
 * redundant: that copy's internal calls bind to node's exported functions of the same names
 * (ELF interposition), mixing two builds' internals. Only a node without OpenSSL gets dlopen.
 */
static int load_ossl(void) {
  if (ossl.tried) return ossl.ok;
  ossl.tried = 1;
  void *h = RTLD_DEFAULT; /* (a null pointer in glibc: `found` says whether we have a handle) */
  int found = dlsym(RTLD_DEFAULT, "EVP_aes_256_gcm") && dlsym(RTLD_DEFAULT, "EVP_chacha20_poly1305");
  const char *names[] = { "libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so" };
  for (unsigned i = 0; i < sizeof names / sizeof names[0] && !found; i++) found = (h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL)) != NULL;
  if (!found) return 0;
#define SYM(field, name) if (!(*(void **)&ossl.field = dlsym(h, name))) return 0
  SYM(ctx_new, "EVP_CIPHER_CTX_new"); SYM(ctx_free, "EVP_CIPHER_CTX_free");
  SYM(aes_256_gcm, "EVP_aes_256_gcm"); SYM(chacha20_poly1305, "EVP_chacha20_poly1305");
  SYM(enc_init, "EVP_EncryptInit_ex"); SYM(dec_init, "EVP_DecryptInit_ex");
  SYM(enc_update, "EVP_EncryptUpdate"); SYM(dec_update, "EVP_DecryptUpdate");
  SYM(enc_final, "EVP_EncryptFinal_ex"); SYM(dec_final, "EVP_DecryptFinal_ex");
  SYM(ctrl, "EVP_CIPHER_CTX_ctrl");
#undef SYM
  ossl.ok = 1;
  return 1;
}

static int cpu_has_aes(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul");
#else
  return 0;
#endif
}

typedef struct {
  int alg;
  unsigned char key[KEY_BYTES];
  EVP_CTX *enc, *dec; /* OpenSSL contexts; NULL without libcrypto */
  /* a datagram being opened piece by piece (see weave_aead_piece): its length, the next offset
   * expected, whether the AEAD was started (its associated data seen) */
  uint32_t st_total, st_next;
  int st_started;
} aead_ctx;

static const EVP_CIPH *cipher_of(int alg) { return alg == ALG_AES_GCM ? ossl.aes_256_gcm() : ossl.chacha20_poly1305(); }

static void ctx_finalize(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  aead_ctx *c = data;
  if (c->enc) ossl.ctx_free(c->enc);
  if (c->dec) ossl.ctx_free(c->dec);
  memset(c, 0, sizeof *c);
  free(c);
}

/* aeadCiphers() -> number: bit 0 ChaCha20-Poly1305 natively, bit 1 AES-256-GCM natively (fast and
 * constant time), bit 2 contexts open piece by piece (libcrypto; not with libsodium alone). */
static napi_value aead_ciphers(napi_env env, napi_callback_info info) {
  (void)info;
  int o = load_ossl();
  int bits = (o || load() ? 1 : 0) | (o && cpu_has_aes() ? 2 : 0) | (o ? 4 : 0);
  napi_value out;
  napi_create_int32(env, bits, &out);
  return out;
}

/*
 * aeadContext(alg, key[, sodiumOnly]) -> external: a key set up for sealing and opening with alg
 * (0 ChaCha, 1 AES-GCM). sodiumOnly (tests): ChaCha through libsodium as if libcrypto were absent.
 */
static napi_value aead_context(napi_env env, napi_callback_info info) {
  size_t argc = 3, klen;
  napi_value argv[3], out;
  int32_t alg = -1;
  bool sodium_only = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) goto bad;
  if (argc >= 3 && napi_get_value_bool(env, argv[2], &sodium_only) != napi_ok) sodium_only = false;
  unsigned char *key = bytes_of(env, argv[1], &klen);
  if (napi_get_value_int32(env, argv[0], &alg) != napi_ok || (alg != ALG_CHACHA && alg != ALG_AES_GCM) || !key || klen != KEY_BYTES) goto bad;
  int o = sodium_only ? 0 : load_ossl();
  if (alg == ALG_AES_GCM ? !(o && cpu_has_aes()) : !(o || load())) {
    napi_throw_error(env, "ERR_NATIVE_UNAVAILABLE", alg == ALG_AES_GCM ? "AES-GCM needs libcrypto and AES-NI" : "neither libcrypto nor libsodium loadable");
    return NULL;
  }
  aead_ctx *c = calloc(1, sizeof *c);
  if (!c) { napi_throw_error(env, "ENOMEM", "out of memory"); return NULL; }
  c->alg = alg;
  memcpy(c->key, key, KEY_BYTES);
  if (o) {
    c->enc = ossl.ctx_new();
    c->dec = ossl.ctx_new();
    if (!c->enc || !c->dec || ossl.enc_init(c->enc, cipher_of(alg), NULL, c->key, NULL) != 1 ||
        ossl.dec_init(c->dec, cipher_of(alg), NULL, c->key, NULL) != 1) {
      ctx_finalize(env, c, NULL);
      napi_throw_error(env, "ERR_CRYPTO", "libcrypto refused the cipher");
      return NULL;
    }
  }
  if (napi_create_external(env, c, ctx_finalize, NULL, &out) != napi_ok) { ctx_finalize(env, c, NULL); return NULL; }
  if (!wn_tag(env, out, &WN_TAG_AEAD)) return NULL; /* the finalizer frees c */
  return out;
bad:
  napi_throw_type_error(env, "ERR_INVALID_ARG", "aeadContext(alg: 0 | 1, key: 32 bytes)");
  return NULL;
}

/* (ctx, dir, seq, buf, adLen): like parse() with a context in place of the key. */
static aead_ctx *parse_ctx(napi_env env, napi_callback_info info, unsigned char nonce[NONCE_BYTES], unsigned char **buf, size_t *len, uint32_t *adlen) {
  size_t argc = 5;
  napi_value argv[5];
  void *c = NULL;
  int32_t dir = 0;
  double seq = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5) goto bad;
  if (!(c = wn_external_of(env, argv[0], &WN_TAG_AEAD))) goto bad;
  *buf = bytes_of(env, argv[3], len);
  if (!*buf || *len > 0x7fffffff) goto bad;
  if (napi_get_value_int32(env, argv[1], &dir) != napi_ok || napi_get_value_double(env, argv[2], &seq) != napi_ok) goto bad;
  if (napi_get_value_uint32(env, argv[4], adlen) != napi_ok || (size_t)*adlen + TAG_BYTES > *len) goto bad;
  if (!(seq >= 0 && seq <= 9007199254740991.0)) goto bad;
  make_nonce(nonce, dir, seq);
  return c;
bad:
  napi_throw_type_error(env, "ERR_INVALID_ARG", "aeadContext seal/open(ctx, dir, seq, buf: ad‖message‖tag, adLen)");
  return NULL;
}

/* aeadCtxSeal(ctx, dir, seq, buf, adLen): encrypts buf[adLen..len-16) in place, tag into the last 16. */
static napi_value aead_ctx_seal(napi_env env, napi_callback_info info) {
  unsigned char *buf, nonce[NONCE_BYTES];
  size_t len;
  uint32_t adlen;
  aead_ctx *c = parse_ctx(env, info, nonce, &buf, &len, &adlen);
  if (!c) return NULL;
  int mlen = (int)(len - adlen - TAG_BYTES), l;
  unsigned char *m = buf + adlen;
  if (!c->enc) {
    unsigned long long maclen;
    lib.enc(m, m + mlen, &maclen, m, (unsigned long long)mlen, buf, adlen, NULL, nonce, c->key);
    return NULL;
  }
  if (ossl.enc_init(c->enc, NULL, NULL, NULL, nonce) != 1 || ossl.enc_update(c->enc, NULL, &l, buf, (int)adlen) != 1 ||
      ossl.enc_update(c->enc, m, &l, m, mlen) != 1 || ossl.enc_final(c->enc, m + mlen, &l) != 1 ||
      ossl.ctrl(c->enc, EVP_CTRL_AEAD_GET_TAG_, TAG_BYTES, m + mlen) != 1)
    napi_throw_error(env, "ERR_CRYPTO", "libcrypto failed to seal");
  return NULL;
}

/*
 * aeadCtxSealv(ctx, dir, seq, out, adLen, parts): out = ad ‖ room for the message ‖ tag; the
 * message is parts[0] ‖ parts[1] ‖ … (≤ 8, their lengths summing to the room), encrypted from
 * where the parts are straight into out: one pass over a 64 KiB super-frame instead of a copy
 * and then an in-place pass.
 */
static napi_value aead_ctx_sealv(napi_env env, napi_callback_info info) {
  size_t argc = 6, len, plen[8];
  napi_value argv[6], el;
  void *cp = NULL;
  unsigned char *out, *part[8], nonce[NONCE_BYTES];
  int32_t dir = 0;
  double seq = 0;
  uint32_t adlen, nparts = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 6) goto bad;
  if (!(cp = wn_external_of(env, argv[0], &WN_TAG_AEAD))) goto bad;
  aead_ctx *c = cp;
  out = bytes_of(env, argv[3], &len);
  if (!out || len > 0x7fffffff) goto bad;
  if (napi_get_value_int32(env, argv[1], &dir) != napi_ok || napi_get_value_double(env, argv[2], &seq) != napi_ok) goto bad;
  if (napi_get_value_uint32(env, argv[4], &adlen) != napi_ok || (size_t)adlen + TAG_BYTES > len) goto bad;
  if (!(seq >= 0 && seq <= 9007199254740991.0)) goto bad;
  if (napi_get_array_length(env, argv[5], &nparts) != napi_ok || nparts > 8) goto bad;
  size_t mlen = len - adlen - TAG_BYTES, sum = 0;
  for (uint32_t i = 0; i < nparts; i++) {
    if (napi_get_element(env, argv[5], i, &el) != napi_ok || !(part[i] = bytes_of(env, el, &plen[i]))) goto bad;
    sum += plen[i];
  }
  if (sum != mlen) goto bad;
  make_nonce(nonce, dir, seq);
  unsigned char *m = out + adlen;
  int l;
  if (!c->enc) {
    size_t at = 0;
    for (uint32_t i = 0; i < nparts; i++) { memmove(m + at, part[i], plen[i]); at += plen[i]; }
    unsigned long long maclen;
    lib.enc(m, m + mlen, &maclen, m, (unsigned long long)mlen, out, adlen, NULL, nonce, c->key);
    return NULL;
  }
  int ok = ossl.enc_init(c->enc, NULL, NULL, NULL, nonce) == 1 && ossl.enc_update(c->enc, NULL, &l, out, (int)adlen) == 1;
  size_t at = 0;
  for (uint32_t i = 0; ok && i < nparts; i++) {
    if (plen[i]) ok = ossl.enc_update(c->enc, m + at, &l, part[i], (int)plen[i]) == 1 && (size_t)l == plen[i];
    at += plen[i];
  }
  if (!ok || ossl.enc_final(c->enc, m + mlen, &l) != 1 || ossl.ctrl(c->enc, EVP_CTRL_AEAD_GET_TAG_, TAG_BYTES, m + mlen) != 1)
    napi_throw_error(env, "ERR_CRYPTO", "libcrypto failed to seal");
  return NULL;
bad:
  napi_throw_type_error(env, "ERR_INVALID_ARG", "aeadCtxSealv(ctx, dir, seq, out: ad‖room‖tag, adLen, parts: ≤ 8 byte arrays filling the room)");
  return NULL;
}

/*
 * Opening a sealed datagram as its pieces arrive: each piece, bytes [off, off+len) of a datagram
 * of `total` bytes laid out as associated data (AD_LEN) ‖ ciphertext ‖ tag, is decrypted from
 * where it was received straight into its place in `dest` (associated data and tag copied), so
 * the datagram is put together and decrypted in one pass instead of a copy and an in-place pass.
 * Pieces must come in order from offset 0 (a new offset 0 restarts). Nothing is trusted until
 * weave_aead_piece_done checks the tag over the whole: the caller keeps `dest` private till then.
 * Returns 0, or -1 when this context cannot stream (no libcrypto) or the piece does not follow.
 */
#define AD_LEN 16
int weave_aead_piece(void *ctxp, int dir, uint8_t *dest, const uint8_t *src, uint32_t off, uint32_t len, uint32_t total) {
  aead_ctx *c = ctxp;
  if (!c || !c->dec || total < AD_LEN + TAG_BYTES) return -1;
  if (off == 0) { c->st_total = total; c->st_next = 0; c->st_started = 0; }
  if (off != c->st_next || total != c->st_total || (uint64_t)off + len > total) { c->st_next = UINT32_MAX; return -1; }
  uint32_t end = off + len, ct_end = total - TAG_BYTES;
  /* associated data and tag: copied */
  if (off < AD_LEN) memcpy(dest + off, src, (end < AD_LEN ? end : AD_LEN) - off);
  if (end > ct_end) { uint32_t a = off > ct_end ? off : ct_end; memcpy(dest + a, src + (a - off), end - a); }
  if (!c->st_started && end >= AD_LEN) {
    unsigned char nonce[NONCE_BYTES];
    uint64_t seq = 0;
    for (int i = 0; i < 8; i++) seq = seq << 8 | dest[8 + i];
    make_nonce(nonce, dir, (double)seq);
    int l;
    if (ossl.dec_init(c->dec, NULL, NULL, NULL, nonce) != 1 || ossl.dec_update(c->dec, NULL, &l, dest, AD_LEN) != 1) { c->st_next = UINT32_MAX; return -1; }
    c->st_started = 1;
  }
  uint32_t a = off > AD_LEN ? off : AD_LEN, b = end < ct_end ? end : ct_end;
  if (a < b) {
    int l;
    if (ossl.dec_update(c->dec, dest + a, &l, src + (a - off), (int)(b - a)) != 1 || (uint32_t)l != b - a) { c->st_next = UINT32_MAX; return -1; }
  }
  c->st_next = end;
  return 0;
}

/* aeadCtxPiece(ctx, dir, dest, src, off, total): weave_aead_piece for one piece (`src` = its bytes); false if it did not follow. */
static napi_value aead_ctx_piece(napi_env env, napi_callback_info info) {
  size_t argc = 6, dlen, slen;
  napi_value argv[6], out;
  void *c = NULL;
  int32_t dir = 0;
  uint32_t off = 0, total = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 6) goto bad;
  if (!(c = wn_external_of(env, argv[0], &WN_TAG_AEAD))) goto bad;
  uint8_t *dest = bytes_of(env, argv[2], &dlen);
  uint8_t *src = bytes_of(env, argv[3], &slen);
  if (!dest || !src || napi_get_value_int32(env, argv[1], &dir) != napi_ok) goto bad;
  if (napi_get_value_uint32(env, argv[4], &off) != napi_ok || napi_get_value_uint32(env, argv[5], &total) != napi_ok) goto bad;
  if (total > dlen || slen > UINT32_MAX) goto bad;
  napi_get_boolean(env, weave_aead_piece(c, dir, dest, src, off, (uint32_t)slen, total) == 0, &out);
  return out;
bad:
  napi_throw_type_error(env, "ERR_INVALID_ARG", "aeadCtxPiece(ctx, dir, dest, src, off, total ≤ dest.length)");
  return NULL;
}

/* aeadCtxPiecesDone(ctx, buf) -> bool: buf (the whole datagram) was streamed in full and its tag is right. */
static napi_value aead_ctx_pieces_done(napi_env env, napi_callback_info info) {
  size_t argc = 2, len;
  napi_value argv[2], out;
  void *cp = NULL;
  int ok = 0, l;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      !(cp = wn_external_of(env, argv[0], &WN_TAG_AEAD))) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "aeadCtxPiecesDone(ctx, buf)");
    return NULL;
  }
  aead_ctx *c = cp;
  uint8_t *buf = bytes_of(env, argv[1], &len);
  if (buf && c->dec && c->st_started && c->st_next == c->st_total && len == c->st_total) {
    unsigned char tag[TAG_BYTES];
    memcpy(tag, buf + len - TAG_BYTES, TAG_BYTES);
    ok = ossl.ctrl(c->dec, EVP_CTRL_AEAD_SET_TAG_, TAG_BYTES, tag) == 1 && ossl.dec_final(c->dec, buf + len - TAG_BYTES, &l) > 0;
  }
  c->st_next = UINT32_MAX; /* one verdict per datagram */
  napi_get_boolean(env, ok, &out);
  return out;
}

/* aeadCtxOpen(ctx, dir, seq, buf, adLen) -> bool: decrypts in place when authentic; else false,
 * buf as it was with libcrypto (libsodium zeroes the message part). */
static napi_value aead_ctx_open(napi_env env, napi_callback_info info) {
  unsigned char *buf, nonce[NONCE_BYTES], tag[TAG_BYTES];
  size_t len;
  uint32_t adlen;
  napi_value out;
  aead_ctx *c = parse_ctx(env, info, nonce, &buf, &len, &adlen);
  if (!c) return NULL;
  int clen = (int)(len - adlen - TAG_BYTES), l, ok;
  unsigned char *m = buf + adlen;
  if (!c->dec) {
    ok = lib.dec(m, NULL, m, (unsigned long long)clen, m + clen, buf, adlen, nonce, c->key) == 0;
  } else {
    /* EVP decrypts before it can check the tag: on failure, run the same keystream over the
     * bytes again (both ciphers are counter-mode stream ciphers) to put the ciphertext back. */
    memcpy(tag, m + clen, TAG_BYTES);
    ok = ossl.dec_init(c->dec, NULL, NULL, NULL, nonce) == 1 && ossl.dec_update(c->dec, NULL, &l, buf, (int)adlen) == 1 &&
         ossl.dec_update(c->dec, m, &l, m, clen) == 1 && ossl.ctrl(c->dec, EVP_CTRL_AEAD_SET_TAG_, TAG_BYTES, tag) == 1 &&
         ossl.dec_final(c->dec, m + clen, &l) > 0;
    if (!ok && ossl.dec_init(c->dec, NULL, NULL, NULL, nonce) == 1) ossl.dec_update(c->dec, m, &l, m, clen);
  }
  napi_get_boolean(env, ok, &out);
  return out;
}

void weave_register_aead(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "aeadSeal", NULL, aead_seal, NULL, NULL, NULL, napi_default, NULL },
    { "aeadOpen", NULL, aead_open, NULL, NULL, NULL, napi_default, NULL },
    { "aeadAvailable", NULL, aead_available, NULL, NULL, NULL, napi_default, NULL },
    { "aeadCiphers", NULL, aead_ciphers, NULL, NULL, NULL, napi_default, NULL },
    { "aeadContext", NULL, aead_context, NULL, NULL, NULL, napi_default, NULL },
    { "aeadCtxSeal", NULL, aead_ctx_seal, NULL, NULL, NULL, napi_default, NULL },
    { "aeadCtxOpen", NULL, aead_ctx_open, NULL, NULL, NULL, napi_default, NULL },
    { "aeadCtxSealv", NULL, aead_ctx_sealv, NULL, NULL, NULL, napi_default, NULL },
    { "aeadCtxPiece", NULL, aead_ctx_piece, NULL, NULL, NULL, napi_default, NULL },
    { "aeadCtxPiecesDone", NULL, aead_ctx_pieces_done, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
