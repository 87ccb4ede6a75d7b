/* JSON over jsmn (see json-tokens-int.h): jsmn is a lenient tokenizer (it does not check commas,
 * colons, literals or numbers), so a walk over its tokens checks the text between them. */
// clang-format off: jsmn.h must come first, with these defines, to compile jsmn's code here
#define JSMN_STATIC
#define JSMN_PARENT_LINKS
#include <jsmn.h>
// clang-format on

#include "json-tokens-int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

typedef struct Walk {
    FerryJtok *j;
    size_t pos;
    const char *msg;
} Walk;

static int fail(Walk *w, size_t pos, const char *msg)
{
    w->pos = pos;
    w->msg = msg;
    return -EINVAL;
}

static size_t raw_start(const jsmntok_t *t)
{
    return (size_t)(t->type == JSMN_STRING ? t->start - 1 : t->start);
}

static size_t raw_end(const jsmntok_t *t)
{
    return (size_t)(t->type == JSMN_STRING ? t->end + 1 : t->end);
}

static size_t ws(const FerryJtok *j, size_t p)
{
    while (p < j->len &&
           (j->text[p] == ' ' || j->text[p] == '\n' || j->text[p] == '\r' || j->text[p] == '\t'))
        p++;
    return p;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c - 'A' + 10;
}

/* jsmn checked the escape letters and the four hex digits after \u. */
static uint32_t hex4(const char *s)
{
    return (uint32_t)(hexval(s[0]) << 12 | hexval(s[1]) << 8 | hexval(s[2]) << 4 | hexval(s[3]));
}

#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* What jsmn leaves out: control characters, \u0000 (strings are handed out NUL-terminated) and
 * surrogates that do not pair. */
static int check_string(Walk *w, uint32_t i)
{
    const char *s = w->j->text;
    size_t end = (size_t)w->j->t[i].end;
    for (size_t p = (size_t)w->j->t[i].start; p < end; p++) {
        uint64_t x;
        while (end - p >= 8) { /* a word at a time while no byte is < 0x20 or a backslash */
            memcpy(&x, s + p, 8);
            uint64_t bs = x ^ '\\' * ONES;
            if (((x - 0x20 * ONES) & ~x & HIGHS) | ((bs - ONES) & ~bs & HIGHS))
                break;
            p += 8;
        }
        if (p >= end)
            break;
        unsigned char c = (unsigned char)s[p];
        if (c >= 0x20 && c != '\\')
            continue;
        if (c < 0x20)
            return fail(w, p, "control character in string");
        if (s[++p] != 'u')
            continue;
        uint32_t cp = hex4(s + p + 1);
        if (cp == 0)
            return fail(w, p - 1, "NUL (\\u0000) in string");
        if (cp >= 0xdc00 && cp < 0xe000)
            return fail(w, p - 1, "unpaired surrogate in string");
        if (cp >= 0xd800 && cp < 0xdc00) {
            if (end - p < 11 || s[p + 5] != '\\' || s[p + 6] != 'u' ||
                (cp = hex4(s + p + 7)) < 0xdc00 || cp >= 0xe000)
                return fail(w, p - 1, "unpaired surrogate in string");
            p += 6;
        }
        p += 4;
    }
    return 0;
}

static bool digit(char c)
{
    return c >= '0' && c <= '9';
}

/* jsmn takes any run of non-separators as a primitive; JSON allows three words and numbers. */
static int check_primitive(Walk *w, uint32_t i)
{
    const char *s = w->j->text + w->j->t[i].start;
    size_t n = (size_t)(w->j->t[i].end - w->j->t[i].start), k = 0;
    size_t at = (size_t)w->j->t[i].start;
    if (*s == 't' || *s == 'f' || *s == 'n') {
        const char *word = *s == 't' ? "true" : *s == 'f' ? "false" : "null";
        return n == strlen(word) && !memcmp(s, word, n) ? 0 : fail(w, at, "unexpected character");
    }
    if (*s == '-')
        k++;
    if (k >= n || !digit(s[k]))
        return fail(w, at, k ? "invalid number" : "unexpected character");
    if (s[k] == '0' && k + 1 < n && digit(s[k + 1]))
        return fail(w, at, "leading zero in a number");
    while (k < n && digit(s[k]))
        k++;
    if (k < n && s[k] == '.') {
        if (++k >= n || !digit(s[k]))
            return fail(w, at, "invalid number");
        while (k < n && digit(s[k]))
            k++;
    }
    if (k < n && (s[k] == 'e' || s[k] == 'E')) {
        if (++k < n && (s[k] == '+' || s[k] == '-'))
            k++;
        if (k >= n || !digit(s[k]))
            return fail(w, at, "invalid number");
        while (k < n && digit(s[k]))
            k++;
    }
    return k == n ? 0 : fail(w, at, "invalid number");
}

/* High bit of each byte of v that is zero (exact, no false positives). */
static uint64_t zero_bytes(uint64_t v)
{
    const uint64_t low7 = 0x7f7f7f7f7f7f7f7full;
    return ~(((v & low7) + low7) | v | low7);
}

/* Number of bytes flagged in a zero_bytes() mask. */
static unsigned flagged(uint64_t m)
{
    return (unsigned)(((m >> 7) * ONES) >> 56);
}

/* Whether text[a, b) is whitespace around exactly one `sep` (or only whitespace when sep is 0).
 * Most of a pretty-printed file is such gaps, so they are classified eight bytes at a time;
 * check() re-scans a gap that fails, to say what is wrong. */
static bool gap_ok(const char *s, size_t a, size_t b, char sep)
{
    unsigned other = 0, seps = 0;
    size_t q = a;
    for (; b - q >= 8; q += 8) {
        uint64_t x;
        memcpy(&x, s + q, 8);
        if (x == ' ' * ONES)
            continue; /* indentation */
        uint64_t ws = zero_bytes(x ^ ' ' * ONES) | zero_bytes(x ^ '\n' * ONES) |
                      zero_bytes(x ^ '\r' * ONES) | zero_bytes(x ^ '\t' * ONES);
        other += 8 - flagged(ws);
        seps += flagged(zero_bytes(x ^ (uint8_t)sep * ONES)); /* sep 0: NULs are `other` too */
    }
    for (; q < b; q++) {
        char c = s[q];
        other += c != ' ' && c != '\n' && c != '\r' && c != '\t';
        seps += c == sep;
    }
    return sep ? other == 1 && seps == 1 : other == 0;
}

/* Checks the value at token i and the text between its tokens; fills next[]. */
static int check(Walk *w, uint32_t i, unsigned depth)
{
    FerryJtok *j = w->j;
    const jsmntok_t *t = &j->t[i];
    int rc;
    if (t->type == JSMN_STRING || t->type == JSMN_PRIMITIVE) {
        j->next[i] = i + 1;
        return t->type == JSMN_STRING ? check_string(w, i) : check_primitive(w, i);
    }
    if (depth >= FERRY_JTOK_MAX_DEPTH)
        return fail(w, (size_t)t->start, "nesting too deep");
    bool obj = t->type == JSMN_OBJECT;
    const char *after_item = obj ? "expected ',' or '}'" : "expected ',' or ']'";
    const char *want_item = obj ? "expected a string (object key)" : "expected a value";
    size_t p = (size_t)t->start + 1;
    uint32_t k = i + 1;
    for (int c = 0; c < t->size; c++) {
        if (k >= j->n || j->t[k].start >= t->end)
            break; /* in broken text jsmn can attach what follows the bracket: see below */
        if (raw_start(&j->t[k]) < p || !gap_ok(j->text, p, raw_start(&j->t[k]), c ? ',' : 0))
            goto slow;
        p = raw_start(&j->t[k]);
        if (obj && j->t[k].type == JSMN_STRING && k + 1 < j->n &&
            raw_start(&j->t[k + 1]) >= raw_end(&j->t[k]) &&
            gap_ok(j->text, raw_end(&j->t[k]), raw_start(&j->t[k + 1]), ':')) {
            if ((rc = check_string(w, k)) < 0)
                return rc;
            uint32_t key = k++;
            if ((rc = check(w, k, depth + 1)) < 0)
                return rc;
            p = raw_end(&j->t[k]);
            k = j->next[key] = j->next[k];
            continue;
        }
        if (!obj) {
            if ((rc = check(w, k, depth + 1)) < 0)
                return rc;
            p = raw_end(&j->t[k]);
            k = j->next[k];
            continue;
        }
    slow:
        p = ws(j, p);
        if (c > 0) {
            if (p >= j->len || j->text[p] != ',')
                return fail(w, p, after_item);
            p = ws(j, p + 1);
        }
        if (k >= j->n || raw_start(&j->t[k]) != p)
            return fail(w, p, want_item);
        uint32_t key = FERRY_JTOK_NONE;
        if (obj) {
            if (j->t[k].type != JSMN_STRING)
                return fail(w, p, want_item);
            if ((rc = check_string(w, k)) < 0)
                return rc;
            key = k++;
            p = ws(j, raw_end(&j->t[key]));
            if (p >= j->len || j->text[p] != ':')
                return fail(w, p, "expected ':' after an object key");
            p = ws(j, p + 1);
            if (k >= j->n || raw_start(&j->t[k]) != p)
                return fail(w, p, "expected a value");
        }
        if ((rc = check(w, k, depth + 1)) < 0)
            return rc;
        p = raw_end(&j->t[k]);
        k = j->next[k];
        if (key != FERRY_JTOK_NONE)
            j->next[key] = k;
    }
    if (p < (size_t)t->end && gap_ok(j->text, p, (size_t)t->end - 1, 0)) {
        j->next[i] = k;
        return 0;
    }
    p = ws(j, p);
    if (p < j->len && j->text[p] == ',')
        return fail(w, ws(j, p + 1), want_item); /* a trailing comma */
    if (p >= j->len || p + 1 != (size_t)t->end)
        return fail(w, p, p >= j->len ? "unexpected end of input" : after_item);
    j->next[i] = k;
    return 0;
}

/* jsmn stopped: say what is wrong where it stopped. */
static int diagnose(Walk *w, const jsmn_parser *ps, int rc)
{
    const FerryJtok *j = w->j;
    const char *nul = memchr(j->text, '\0', j->len);
    if (nul) /* jsmn ends its input at a NUL byte */
        return fail(w, (size_t)(nul - j->text), "NUL byte in the input");
    int open = 0; /* containers still open: too many is the first problem, as in check() */
    for (int s = ps->toksuper; s >= 0; s = j->t[s].parent)
        open += j->t[s].type == JSMN_OBJECT || j->t[s].type == JSMN_ARRAY;
    if (open > FERRY_JTOK_MAX_DEPTH) {
        int s = ps->toksuper;
        for (int up = open - FERRY_JTOK_MAX_DEPTH - 1; s >= 0; s = j->t[s].parent)
            if ((j->t[s].type == JSMN_OBJECT || j->t[s].type == JSMN_ARRAY) && up-- == 0)
                break;
        return fail(w, s >= 0 ? (size_t)j->t[s].start : 0, "nesting too deep");
    }
    size_t pos = ps->pos < j->len ? ps->pos : j->len;
    char c = pos < j->len ? j->text[pos] : '\0';
    if (rc == JSMN_ERROR_PART)
        return c == '"' ? fail(w, pos, "unterminated string")
                        : fail(w, j->len, "unexpected end of input");
    if (c == '"')
        return fail(w, pos, "invalid escape in string");
    if (c == '}' || c == ']') {
        int s = ps->toksuper; /* the innermost open container says what was expected */
        while (s >= 0 && j->t[s].type != JSMN_OBJECT && j->t[s].type != JSMN_ARRAY)
            s = j->t[s].parent;
        if (s >= 0)
            return fail(w, pos,
                        j->t[s].type == JSMN_OBJECT ? "expected ',' or '}'"
                                                    : "expected ',' or ']'");
    }
    return fail(w, pos, "unexpected character");
}

/* Tokens and next[] share one allocation. An 800 KB dump has ~46k tokens, ~1.1 MB: faulting that
 * in 4 KiB pages costs more than jsmn's whole parse (measured ~0.45 ms on the development VM),
 * one transparent huge page ~0.05 ms, so big arrays are 2 MiB-aligned and advised as huge. */
#define SLOT (sizeof(jsmntok_t) + sizeof(uint32_t))
#define HUGE ((size_t)2 << 20)

static int grow(FerryJtok *j, size_t cap)
{
    size_t bytes = cap * SLOT;
    if (bytes < HUGE / 4 && !j->map) { /* small: the heap (and ASan's checks, when fuzzing) */
        void *t = realloc(j->t, bytes);
        if (!t)
            return -ENOMEM;
        j->t = t;
        return 0;
    }
    size_t map_len = (bytes + HUGE - 1) / HUGE * HUGE + HUGE; /* room to align */
    char *m = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return -ENOMEM;
    char *use = (char *)(((uintptr_t)m + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
    /* Advice only: without transparent huge pages this is plain memory. */
    madvise(use, (map_len - (size_t)(use - m)) / HUGE * HUGE, MADV_HUGEPAGE);
    if (j->t) { /* jsmn resumes: keep what it filled */
        memcpy(use, j->t, j->n * sizeof(jsmntok_t));
        if (j->map)
            munmap(j->map, j->map_len);
        else
            free(j->t);
    }
    j->map = m;
    j->map_len = map_len;
    j->t = (jsmntok_t *)use;
    return 0;
}

int ferry_jtok_parse(FerryJtok *j, const char *text, size_t len, size_t *err_pos,
                     const char **err_msg)
{
    Walk w = {j, 0, NULL};
    *j = (FerryJtok){.text = text, .len = len};
    if (len >= INT_MAX)
        return -EFBIG;
    jsmn_parser ps;
    jsmn_init(&ps);
    size_t cap = len / 16 + 16; /* pretty-printed dumps have about one token per 20 bytes */
    int rc;
    for (;;) {
        if (grow(j, cap) < 0)
            return -ENOMEM;
        rc = jsmn_parse(&ps, text, len, j->t, (unsigned)cap);
        j->n = ps.toknext;
        if (rc != JSMN_ERROR_NOMEM)
            break;
        if (cap > UINT32_MAX / 4)
            return -ENOMEM;
        cap *= 2; /* jsmn resumes where it stopped */
    }
    j->n = ps.toknext;
    if (rc < 0)
        goto bad;
    j->next = (uint32_t *)(j->t + cap);
    size_t p = ws(j, 0);
    if (j->n == 0 || raw_start(&j->t[0]) != p) {
        rc = fail(&w, p, p >= len ? "unexpected end of input" : "unexpected character");
        goto bad;
    }
    if ((rc = check(&w, 0, 0)) < 0)
        goto bad;
    p = ws(j, raw_end(&j->t[0]));
    if (p != len || j->next[0] != j->n) { /* every token is a checked part of the one value */
        rc = fail(&w, p, "unexpected data after the JSON value");
        goto bad;
    }
    return 0;
bad:
    if (!w.msg)
        diagnose(&w, &ps, rc);
    *err_pos = w.pos;
    *err_msg = w.msg;
    return -EINVAL;
}

void ferry_jtok_free(FerryJtok *j)
{
    if (j->map)
        munmap(j->map, j->map_len);
    else
        free(j->t);
    *j = (FerryJtok){0};
}

void ferry_jtok_line_col(const char *text, size_t len, size_t pos, size_t *line, size_t *col)
{
    size_t l = 1, bol = 0;
    if (pos > len)
        pos = len;
    for (const char *p = text; (p = memchr(p, '\n', pos - (size_t)(p - text))); p++)
        l++, bol = (size_t)(p - text) + 1;
    *line = l;
    *col = pos - bol + 1;
}

bool ferry_jtok_eq_escaped(const FerryJtok *j, uint32_t i, const char *s, size_t n)
{
    const char *raw = j->text + j->t[i].start;
    size_t rl = ferry_jtok_raw_len(j, i);
    if (!memchr(raw, '\\', rl))
        return false;
    char small[256], *d = rl < sizeof(small) ? small : malloc(rl + 1);
    if (!d)
        return false;
    bool eq = ferry_jtok_unescape(j, i, d) == n && !memcmp(d, s, n);
    if (d != small)
        free(d);
    return eq;
}

uint32_t ferry_jtok_get(const FerryJtok *j, uint32_t obj, const char *key)
{
    if (obj == FERRY_JTOK_NONE || j->t[obj].type != JSMN_OBJECT)
        return FERRY_JTOK_NONE;
    size_t n = strlen(key);
    uint32_t found = FERRY_JTOK_NONE, k = obj + 1;
    for (int c = 0; c < j->t[obj].size; c++, k = j->next[k])
        if (ferry_jtok_eq(j, k, key, n))
            found = k + 1; /* keep going: a repeated key's last value wins */
    return found;
}

static size_t utf8(uint32_t cp, char *u)
{
    if (cp < 0x80)
        return u[0] = (char)cp, 1;
    if (cp < 0x800)
        return u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3f)), 2;
    if (cp < 0x10000)
        return u[0] = (char)(0xe0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3f)),
               u[2] = (char)(0x80 | (cp & 0x3f)), 3;
    return u[0] = (char)(0xf0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 0x3f)),
           u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[3] = (char)(0x80 | (cp & 0x3f)), 4;
}

size_t ferry_jtok_unescape(const FerryJtok *j, uint32_t i, char *dst)
{
    const char *s = j->text + j->t[i].start, *end = j->text + j->t[i].end;
    char *d = dst;
    while (s < end) {
        const char *bs = memchr(s, '\\', (size_t)(end - s));
        size_t run = (size_t)((bs ? bs : end) - s);
        memmove(d, s, run); /* d <= s: decoding in place is allowed */
        d += run;
        s += run;
        if (!bs)
            break;
        char e = s[1];
        s += 2;
        switch (e) {
        case 'b':
            *d++ = '\b';
            break;
        case 'f':
            *d++ = '\f';
            break;
        case 'n':
            *d++ = '\n';
            break;
        case 'r':
            *d++ = '\r';
            break;
        case 't':
            *d++ = '\t';
            break;
        case 'u': {
            uint32_t cp = hex4(s);
            s += 4;
            if (cp >= 0xd800 && cp < 0xdc00) { /* checked: a low surrogate follows */
                cp = 0x10000 + ((cp - 0xd800) << 10) + (hex4(s + 2) - 0xdc00);
                s += 6;
            }
            d += utf8(cp, d);
            break;
        }
        default:
            *d++ = e; /* " \ / */
        }
    }
    *d = '\0';
    return (size_t)(d - dst);
}

FerryJtokKind ferry_jtok_kind(const FerryJtok *j, uint32_t i, int64_t *i64, double *real)
{
    const jsmntok_t *t = &j->t[i];
    if (t->type == JSMN_STRING)
        return FERRY_JTOK_STRING;
    if (t->type == JSMN_ARRAY)
        return FERRY_JTOK_ARRAY;
    if (t->type == JSMN_OBJECT)
        return FERRY_JTOK_OBJECT;
    const char *s = j->text + t->start;
    size_t n = (size_t)(t->end - t->start);
    if (*s == 't')
        return FERRY_JTOK_TRUE;
    if (*s == 'f')
        return FERRY_JTOK_FALSE;
    if (*s == 'n')
        return FERRY_JTOK_NULL;
    bool neg = *s == '-', overflow = false;
    uint64_t v = 0;
    size_t k = neg;
    for (; k < n && digit(s[k]); k++) {
        unsigned dg = (unsigned)(s[k] - '0');
        overflow |= v > (UINT64_MAX - dg) / 10;
        v = v * 10 + dg;
    }
    if (k == n && !overflow && v <= (uint64_t)INT64_MAX + neg) {
        if (i64)
            *i64 = neg ? (int64_t)(0 - v) : (int64_t)v;
        return FERRY_JTOK_INT;
    }
    if (real) { /* strtod needs a terminated copy; the token is checked JSON number syntax */
        char small[64], *c = n < sizeof(small) ? small : malloc(n + 1);
        *real = 0;
        if (c) {
            memcpy(c, s, n);
            c[n] = '\0';
            *real = strtod(c, NULL);
            if (c != small)
                free(c);
        }
    }
    return FERRY_JTOK_REAL;
}
