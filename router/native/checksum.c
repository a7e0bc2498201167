/* Internet checksums for frames whose checksum was left to offload: see checksum.h. */
#include <string.h>
#include "checksum.h"

/* Internet checksum (RFC 1071) of p[0..len), folded, not complemented. */
static uint16_t csum_fold(const uint8_t *p, size_t len) {
  uint64_t sum = 0;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint32_t a, b;
    memcpy(&a, p + i, 4);
    memcpy(&b, p + i + 4, 4);
    sum += a;
    sum += b;
  }
  for (; i + 2 <= len; i += 2) { uint16_t w; memcpy(&w, p + i, 2); sum += w; }
  if (i < len) { uint16_t w = 0; memcpy(&w, p + i, 1); sum += w; }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)sum; /* in the byte order of the data */
}

/*
 * A captured frame whose checksum was left to offload (CHECKSUM_PARTIAL: the field holds the
 * pseudo-header sum): finish it as the NIC would, so the frame is complete on the wire.
 */
void wn_finish_csum(uint8_t *frame, size_t len, uint16_t start, uint16_t offset) {
  if ((size_t)start + offset + 2 > len) return;
  uint16_t c = (uint16_t)~csum_fold(frame + start, len - start);
  if (c == 0) c = 0xffff; /* UDP: 0 would mean "no checksum"; equivalent for TCP */
  memcpy(frame + start + offset, &c, 2);
}
