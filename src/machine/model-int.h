/* Canonical byte encoding used for equality and hashing of model states (machine, guest).
 * Little-endian, field by field, so results do not depend on padding or addresses. */
#ifndef FERRY_MODEL_INT_H
#define FERRY_MODEL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct FerryCanon {
    uint8_t *buf;
    size_t len, cap;
    bool oom;
    uint8_t small[2048];
} FerryCanon;

void ferry_canon_init(FerryCanon *c);
void ferry_canon_fini(FerryCanon *c);
void ferry_canon_grow(FerryCanon *c, size_t n); /* slow path of put */
void ferry_canon_str(FerryCanon *c, const char *s);

static inline void ferry_canon_put(FerryCanon *c, const void *p, size_t n)
{
    if (c->len + n > c->cap)
        ferry_canon_grow(c, n);
    if (c->oom)
        return;
    memcpy(c->buf + c->len, p, n);
    c->len += n;
}

static inline void ferry_canon_u32(FerryCanon *c, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    ferry_canon_put(c, b, 4);
}

static inline void ferry_canon_u64(FerryCanon *c, uint64_t v)
{
    ferry_canon_u32(c, (uint32_t)v);
    ferry_canon_u32(c, (uint32_t)(v >> 32));
}

#endif
