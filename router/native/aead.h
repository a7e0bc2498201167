/* What other units use of aead.c beyond its JS functions. */
#ifndef WEAVE_NATIVE_AEAD_H
#define WEAVE_NATIVE_AEAD_H
#include <stdint.h>
#include "common.h"

/* Opens one received piece of a sealed datagram into place (see aead.c); a wn_piece_open_fn
 * (pieces.h). 0 when it follows and decrypts so far, else -1. */
WN_HIDDEN int weave_aead_piece(void *ctx, int dir, uint8_t *dest, const uint8_t *src, uint32_t off, uint32_t len, uint32_t total);
#endif
