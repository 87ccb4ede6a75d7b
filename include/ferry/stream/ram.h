/* Page encodings of ram-pages records (docs/stream-format.md, "RAM and migration records"):
 * word-wise zero detection and the XOR+RLE delta of a re-sent page against the copy the reader
 * holds. Shared by the migration engine (writer and applier) and ferry analyze (reader). */
#ifndef FERRY_STREAM_RAM_H
#define FERRY_STREAM_RAM_H

#include "ferry/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FERRY_RAM_PAGE_SIZE  4096u
#define FERRY_RAM_PAGE_WORDS (FERRY_RAM_PAGE_SIZE / 8)

enum {
    FERRY_RAM_ENC_ZERO = 0,  /* no data: the pages are all zero */
    FERRY_RAM_ENC_RAW = 1,   /* count * 4096 bytes */
    FERRY_RAM_ENC_DELTA = 2, /* per page: u16 length, then `length` bytes of delta ops */
};
#define FERRY_RAM_RUN_HEADER 13 /* u64 first page, u32 count, u8 encoding */
/* A delta longer than this is sent raw (it would not save enough to pay for decoding). */
#define FERRY_RAM_DELTA_MAX 2048u

/* True when the 4096-byte, 8-aligned page holds only zero bytes. */
bool ferry_ram_page_is_zero(const void *page);
/* Encode page `cur` against `old` (both 4096 bytes, 8-aligned): a sequence of ops
 * { u16 word offset, u16 word count, count * 8 bytes of cur XOR old } covering the non-zero
 * words of the XOR. Returns the encoded length (0 when the pages are equal), or SIZE_MAX when
 * it would exceed `max`. */
size_t ferry_ram_delta_encode(const uint8_t *old, const uint8_t *cur, uint8_t *out, size_t max);
/* Apply ops to `page` in place; every op is bounds-checked (hostile input). */
int ferry_ram_delta_apply(uint8_t *page, const uint8_t *ops, size_t len, FerryError *err);

#endif
