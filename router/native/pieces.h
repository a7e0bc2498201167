/*
 * The addon's parsing of received datagrams, pure (no N-API, no sockets) so that a libFuzzer
 * target (test/fuzz/pieces-fuzz.c) drives exactly this code under AddressSanitizer.
 */
#ifndef WEAVE_NATIVE_PIECES_H
#define WEAVE_NATIVE_PIECES_H
#include <stddef.h>
#include <stdint.h>

/* A sleeve piece: 8-byte sleeve header (version 1, kind 3 = piece, count 0) + u32 id, u32 total
 * length, u32 offset (big-endian), then data. */
#define PIECE_HDR 20

/* Decrypts one piece into place (aead.c's weave_aead_piece); 0 when it authenticates so far. */
typedef int (*wn_piece_open_fn)(void *ctx, int dir, uint8_t *dest, const uint8_t *src, uint32_t off, uint32_t len, uint32_t total);

/* What collects one datagram's pieces: entries [start, end) of a receive batch (each entry k is
 * buf[offs[k], offs[k]+lens[k]) from addrs[k]:ports[k]; `cap` entries in every array) and the
 * run state st = [addr, port, id, total, got]. dest NULL: only count the run. */
struct wn_piece_run {
  const uint8_t *buf; size_t buflen;
  const uint32_t *offs; const int32_t *lens; const uint32_t *addrs; const uint16_t *ports; size_t cap;
  uint32_t start, end;
  uint32_t *st;
  uint8_t *dest; size_t destlen;
  wn_piece_open_fn open; void *ctx; int dir;
};

/* Takes the entries that continue the datagram in st (same sender, a well-formed piece header
 * with its id and total, offset == got, inside total and dest), copying or opening each into
 * dest; stops at the first that does not. Advances st[4]; returns how many entries it took. */
__attribute__((visibility("hidden"))) uint32_t wn_collect_pieces(const struct wn_piece_run *r);

/* Receive entries for one message of `len` bytes (len < 0: it was truncated; 0: skip it) at
 * `base` in the receive buffer, cut at the GRO segment size `seg` (0: none) into one entry per
 * datagram, written from entry `e` on but never at or beyond `cap`. Returns the next free entry. */
__attribute__((visibility("hidden"))) uint32_t wn_split_message(int len, int seg, uint32_t base, uint32_t from, uint16_t port,
  uint32_t *offs, int32_t *lens, uint32_t *addrs, uint16_t *ports, uint32_t e, size_t cap);
#endif
