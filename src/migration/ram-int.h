/* RAM page encodings of ram-pages records (docs/stream-format.md, "RAM records"): zero-page
 * detection, and the XOR+RLE delta of a re-sent page against the copy the destination holds. */
#ifndef FERRY_MIGRATION_RAM_INT_H
#define FERRY_MIGRATION_RAM_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/error.h"

#define RAM_PAGE 4096u
#define RAM_PAGE_WORDS (RAM_PAGE / 8)

enum {
    RAM_ENC_ZERO = 0,  /* no data: the pages are all zero */
    RAM_ENC_RAW = 1,   /* count * 4096 bytes */
    RAM_ENC_DELTA = 2, /* per page: u16 length, then `length` bytes of delta ops */
};
#define RAM_RUN_HEADER 13 /* u64 first page, u32 count, u8 encoding */
/* A delta longer than this is sent raw (it would not save enough to pay for decoding). */
#define RAM_DELTA_MAX 2048u

bool ram_page_is_zero(const void *page);
/* Encode page `cur` against `old` (both 4096 bytes, 8-aligned): a sequence of ops
 * { u16 word offset, u16 word count, count * 8 bytes of cur XOR old } covering the non-zero
 * words of the XOR. Returns the encoded length (0 when the pages are equal), or SIZE_MAX when
 * it would exceed `max`. */
size_t ram_delta_encode(const uint8_t *old, const uint8_t *cur, uint8_t *out, size_t max);
/* Apply ops to `page` in place; every op is bounds-checked (hostile input). */
int ram_delta_apply(uint8_t *page, const uint8_t *ops, size_t len, FerryError *err);

#endif
