/* Canonical byte encoding used for equality and hashing of model states (machine, guest).
 * Little-endian, field by field, so results do not depend on padding or addresses. */
#ifndef FERRY_MODEL_INT_H
#define FERRY_MODEL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct FerryCanon {
    uint8_t *buf;
    size_t len, cap;
    bool oom;
    uint8_t small[2048];
} FerryCanon;

void ferry_canon_init(FerryCanon *c);
void ferry_canon_fini(FerryCanon *c);
void ferry_canon_put(FerryCanon *c, const void *p, size_t n);
void ferry_canon_u32(FerryCanon *c, uint32_t v);
void ferry_canon_u64(FerryCanon *c, uint64_t v);
void ferry_canon_str(FerryCanon *c, const char *s);

#endif
