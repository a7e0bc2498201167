/* Internet checksums (RFC 1071), for frames whose checksum was left to offload. */
#ifndef WEAVE_NATIVE_CHECKSUM_H
#define WEAVE_NATIVE_CHECKSUM_H
#include <stddef.h>
#include <stdint.h>

/*
 * A captured frame whose checksum was left to offload (CHECKSUM_PARTIAL: the field at
 * start + offset holds the pseudo-header sum): finish it as the NIC would, so the frame is
 * complete on the wire. Out of range start/offset: left as it is.
 */
__attribute__((visibility("hidden"))) void wn_finish_csum(uint8_t *frame, size_t len, uint16_t start, uint16_t offset);
#endif
