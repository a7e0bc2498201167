/*
 * libFuzzer target for the addon's parsing of received datagrams (router/native/pieces.c):
 * the sleeve piece run (wn_collect_pieces) over a receive batch whose bytes, entry table and run
 * state all come from the input, and the GRO split of one message into entries
 * (wn_split_message). Every buffer is allocated at exactly its size, so AddressSanitizer reports
 * any read or write past one; the contracts below abort when broken.
 * Built and run for a bounded time by test/unit/native-fuzz.test.ts:
 *   clang -g -O1 -fsanitize=fuzzer,address -I router/native test/fuzz/pieces-fuzz.c router/native/pieces.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "pieces.h"

#define MAX_ENTRIES 16

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static void *dup_exact(const void *src, size_t n) {
  void *p = malloc(n ? n : 1);
  if (n) memcpy(p, src, n);
  return p;
}

/* Input: [n][flags][destlen u16][start][end][id u32][total u16][got u16] then n entries of
 * [off u16][len u16][addr-mismatch][port-mismatch], the split case [len u32][seg u32][cap][e],
 * and the rest is the receive buffer. */
static void collect(const uint8_t *d, size_t size) {
  const size_t head = 14;
  if (size < head) return;
  size_t n = d[0] % (MAX_ENTRIES + 1), flags = d[1], destlen = rd16(d + 2);
  uint32_t start = d[4], end = d[5];
  uint32_t st[5] = { 0x0a000001, 6784, rd32(d + 6), rd16(d + 10), rd16(d + 12) };
  size_t need = head + n * 6;
  if (size < need) return;
  uint32_t *offs = malloc(sizeof *offs * (n ? n : 1));
  int32_t *lens = malloc(sizeof *lens * (n ? n : 1));
  uint32_t *addrs = malloc(sizeof *addrs * (n ? n : 1));
  uint16_t *ports = malloc(sizeof *ports * (n ? n : 1));
  for (size_t i = 0; i < n; i++) {
    const uint8_t *e = d + head + i * 6;
    offs[i] = rd16(e);
    lens[i] = (int16_t)rd16(e + 2);
    addrs[i] = st[0] + (e[4] == 0xff);
    ports[i] = (uint16_t)(st[1] + (e[5] == 0xff));
  }
  size_t buflen = size - need;
  uint8_t *buf = dup_exact(d + need, buflen);
  uint8_t *dest = (flags & 1) ? NULL : malloc(destlen ? destlen : 1);
  uint32_t before = st[4];
  struct wn_piece_run r = {
    .buf = buf, .buflen = buflen, .offs = offs, .lens = lens, .addrs = addrs, .ports = ports, .cap = n,
    .start = start, .end = end, .st = st, .dest = dest, .destlen = dest ? destlen : SIZE_MAX,
  };
  uint32_t took = wn_collect_pieces(&r);
  if (took > n || (took && start + took > n)) abort();     /* never past the entry table */
  if (st[4] < before || (st[4] > st[3] && took)) abort();   /* progress only, within total */
  if (dest && st[4] > before && st[4] > destlen) abort();   /* within dest */
  free(offs); free(lens); free(addrs); free(ports); free(buf); free(dest);
}

static void split(const uint8_t *d, size_t size) {
  if (size < 10) return;
  int len = (int)rd32(d), seg = (int)rd32(d + 4);
  size_t cap = d[8] % 200;
  uint32_t e = cap ? d[9] % (cap + 1) : 0;
  uint32_t *offs = malloc(sizeof *offs * (cap ? cap : 1));
  int32_t *lens = malloc(sizeof *lens * (cap ? cap : 1));
  uint32_t *addrs = malloc(sizeof *addrs * (cap ? cap : 1));
  uint16_t *ports = malloc(sizeof *ports * (cap ? cap : 1));
  uint32_t next = wn_split_message(len, seg, 0, 1, 2, offs, lens, addrs, ports, e, cap);
  if (next > cap || next < e) abort();
  for (uint32_t i = e; i < next; i++) if (len > 0 && (lens[i] <= 0 || lens[i] > len)) abort();
  free(offs); free(lens); free(addrs); free(ports);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  if (data[0] & 0x80) split(data + 1, size - 1);
  else collect(data + 1, size - 1);
  return 0;
}
