/* Page-level encodings of ram-pages records: word-wise zero detection and the XOR+RLE delta
 * (the idea of QEMU's XBZRLE, on 64-bit words) used when a dirty page is sent again. */
#include "ferry/stream/ram.h"

#include <errno.h>
#include <string.h>

bool ferry_ram_page_is_zero(const void *page)
{
    const uint64_t *w = page;
    /* Eight independent accumulators per step: the loop runs at memory bandwidth and still
     * exits early on the first non-zero cache line, which is where data pages usually differ. */
    for (unsigned i = 0; i < FERRY_RAM_PAGE_WORDS; i += 8) {
        if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7])
            return false;
    }
    return true;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

size_t ferry_ram_delta_encode(const uint8_t *old, const uint8_t *cur, uint8_t *out, size_t max)
{
    const uint64_t *o = (const uint64_t *)old, *c = (const uint64_t *)cur;
    size_t len = 0;
    unsigned i = 0;
    while (i < FERRY_RAM_PAGE_WORDS) {
        if (o[i] == c[i]) {
            i++;
            continue;
        }
        unsigned start = i;
        /* A literal run absorbs single equal words: an op header costs 4 bytes, half a word. */
        while (i < FERRY_RAM_PAGE_WORDS &&
               (o[i] != c[i] || (i + 1 < FERRY_RAM_PAGE_WORDS && o[i + 1] != c[i + 1])))
            i++;
        unsigned n = i - start;
        if (len + 4 + (size_t)n * 8 > max)
            return SIZE_MAX;
        put16(out + len, (uint16_t)start);
        put16(out + len + 2, (uint16_t)n);
        len += 4;
        for (unsigned k = 0; k < n; k++) {
            uint64_t x = o[start + k] ^ c[start + k];
            memcpy(out + len, &x, 8);
            len += 8;
        }
    }
    return len;
}

int ferry_ram_delta_apply(uint8_t *page, const uint8_t *ops, size_t len, FerryError *err)
{
    uint64_t *w = (uint64_t *)page;
    size_t pos = 0;
    while (pos < len) {
        if (len - pos < 4)
            return ferry_error_set(err, -EBADMSG, "delta op header cut at byte %zu of %zu", pos,
                                   len);
        unsigned start = ops[pos] | (unsigned)ops[pos + 1] << 8;
        unsigned n = ops[pos + 2] | (unsigned)ops[pos + 3] << 8;
        pos += 4;
        if (n == 0 || start + n > FERRY_RAM_PAGE_WORDS || (size_t)n * 8 > len - pos)
            return ferry_error_set(err, -EBADMSG,
                                   "delta op (word %u, %u words) out of bounds at "
                                   "byte %zu",
                                   start, n, pos - 4);
        for (unsigned k = 0; k < n; k++) {
            uint64_t x;
            memcpy(&x, ops + pos, 8);
            w[start + k] ^= x;
            pos += 8;
        }
    }
    return 0;
}
