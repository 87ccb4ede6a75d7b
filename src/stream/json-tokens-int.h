/* JSON over jsmn (Debian libjsmn-dev): jsmn tokenises, this adds what jsmn leaves to its caller
 * (grammar checks with located messages, subtree skips, string unescaping, numbers). Internal
 * to libferry; used by the QEMU vmdesc reader and by `ferry schema check`. */
#ifndef FERRY_STREAM_JSON_TOKENS_INT_H
#define FERRY_STREAM_JSON_TOKENS_INT_H

/* Every includer must see the same token layout; jsmn's code is compiled in json-tokens.c. */
#ifndef JSMN_PARENT_LINKS
#define JSMN_PARENT_LINKS
#endif
#ifndef JSMN_H
#define JSMN_HEADER
#include <jsmn.h>
#undef JSMN_HEADER
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FERRY_JTOK_MAX_DEPTH 128
#define FERRY_JTOK_NONE      UINT32_MAX

typedef struct FerryJtok {
    const char *text; /* borrowed; need not be NUL-terminated */
    size_t len;
    jsmntok_t *t;   /* preorder; an object's children are its keys, each key's child its value */
    uint32_t *next; /* index of the token after each token's subtree (its next sibling) */
    uint32_t n;
    void *map; /* t and next share one mapping */
    size_t map_len;
} FerryJtok;

/* Tokenise and check `len` bytes as one JSON value (RFC 8259: separators, literals, numbers,
 * escapes, no control characters or lone surrogates in strings; nesting up to
 * FERRY_JTOK_MAX_DEPTH). Returns 0, -EINVAL with *err_pos (byte offset) and *err_msg set, or
 * -ENOMEM / -EFBIG. The caller frees with ferry_jtok_free, also after a failure. */
int ferry_jtok_parse(FerryJtok *j, const char *text, size_t len, size_t *err_pos,
                     const char **err_msg);
void ferry_jtok_free(FerryJtok *j);

/* 1-based line and column of a byte offset, for messages. */
void ferry_jtok_line_col(const char *text, size_t len, size_t pos, size_t *line, size_t *col);

/* The value of member `key` of object token `obj` (the last one when repeated, like Python's
 * json) or FERRY_JTOK_NONE. */
uint32_t ferry_jtok_get(const FerryJtok *j, uint32_t obj, const char *key);
/* Whether string token `i` equals `s` (`n` bytes). Inline: loaders compare every member name
 * with a few literals, and with a constant `n` the compiler reduces each to a word compare. */
bool ferry_jtok_eq_escaped(const FerryJtok *j, uint32_t i, const char *s, size_t n);
static inline bool ferry_jtok_eq(const FerryJtok *j, uint32_t i, const char *s, size_t n)
{
    size_t rl = (size_t)(j->t[i].end - j->t[i].start);
    if (rl == n)
        return !__builtin_memcmp(j->text + j->t[i].start, s, n);
    return rl > n && ferry_jtok_eq_escaped(j, i, s, n); /* escapes only lengthen the text */
}

/* String token `i` unescaped into `dst` (at least raw length + 1 bytes, or the token's own text
 * when the text is writable: decoding never grows; the raw length is
 * t[i].end - t[i].start), NUL-terminated; returns the decoded length. Never fails on a checked
 * token set. */
size_t ferry_jtok_unescape(const FerryJtok *j, uint32_t i, char *dst);
static inline size_t ferry_jtok_raw_len(const FerryJtok *j, uint32_t i)
{
    return (size_t)(j->t[i].end - j->t[i].start);
}

typedef enum FerryJtokKind {
    FERRY_JTOK_NULL,
    FERRY_JTOK_FALSE,
    FERRY_JTOK_TRUE,
    FERRY_JTOK_INT,  /* an integer that fits int64_t */
    FERRY_JTOK_REAL, /* fractional, exponent, or out of int64_t range */
    FERRY_JTOK_STRING,
    FERRY_JTOK_ARRAY,
    FERRY_JTOK_OBJECT,
} FerryJtokKind;

/* Kind of token `i`; for numbers *i64 or *real is filled when non-NULL. */
FerryJtokKind ferry_jtok_kind(const FerryJtok *j, uint32_t i, int64_t *i64, double *real);

#endif
