/* Parsing of received sleeve pieces and GRO messages: see pieces.h. */
#include <string.h>
#include "pieces.h"

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint32_t wn_collect_pieces(const struct wn_piece_run *r) {
  uint32_t *st = r->st;
  uint32_t end = r->end > r->cap ? (uint32_t)r->cap : r->end;
  uint32_t k = r->start, got = st[4];
  for (; k < end && got < st[3]; k++) {
    int32_t len = r->lens[k];
    if (len <= PIECE_HDR || r->addrs[k] != st[0] || r->ports[k] != st[1]) break;
    if ((size_t)r->offs[k] + (size_t)len > r->buflen) break;
    const uint8_t *p = r->buf + r->offs[k];
    if (p[0] != 1 || p[1] != 3 || p[6] || p[7]) break;
    uint32_t id = be32(p + 8), total = be32(p + 12), off = be32(p + 16);
    uint32_t dlen = (uint32_t)len - PIECE_HDR;
    if (id != st[2] || total != st[3] || off != got || (size_t)off + dlen > total || (size_t)off + dlen > r->destlen) break;
    if (!r->dest) { /* checked only */ }
    else if (r->open) { if (r->open(r->ctx, r->dir, r->dest, p + PIECE_HDR, off, dlen, total) != 0) break; }
    else memcpy(r->dest + off, p + PIECE_HDR, dlen);
    got += dlen;
  }
  st[4] = got;
  return k > r->start ? k - r->start : 0;
}

uint32_t wn_split_message(int len, int seg, uint32_t base, uint32_t from, uint16_t port,
  uint32_t *offs, int32_t *lens, uint32_t *addrs, uint16_t *ports, uint32_t e, size_t cap) {
  if (seg <= 0 || len <= seg) seg = len > 0 ? len : 1;
  /* Every write, the message's first entry too, is within the entry arrays: a GRO segment size
   * smaller than expected cannot run past them (the rest of that message is dropped). */
  int64_t o = 0; /* 64 bits: o + seg must not overflow whatever the kernel says seg is */
  while (e < cap) {
    int piece = len > 0 ? (len - o < seg ? (int)(len - o) : seg) : len;
    offs[e] = base + (uint32_t)(o > 0 ? o : 0);
    lens[e] = piece;
    if (addrs) addrs[e] = from;
    if (ports) ports[e] = port;
    e++;
    o += seg;
    if (!(len > 0 && o < len)) break;
  }
  return e;
}
