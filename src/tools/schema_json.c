/* In-place JSON DOM parser for schema dumps (QEMU -dump-vmstate files are ~800 KB each).
 * Strings are unescaped inside the caller's buffer, nodes come from an arena: one pass, no copies. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "schema_check.h"

typedef struct Chunk {
    struct Chunk *next;
    size_t used, cap;
    max_align_t data[];
} Chunk;

struct FerryJsonDoc {
    char *buf;
    FerryJson root;
    Chunk *chunks;
};

typedef struct Parser {
    char *buf, *p, *end;
    FerryJsonDoc *doc;
    FerryJson *stack; /* children of open arrays/objects, copied to the arena on close */
    size_t depth_stack, stack_cap;
    FerryError *err;
} Parser;

static void *arena_alloc(FerryJsonDoc *doc, size_t bytes)
{
    bytes = (bytes + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    Chunk *c = doc->chunks;
    if (!c || c->cap - c->used < bytes) {
        size_t cap = bytes > 256 * 1024 ? bytes : 256 * 1024;
        c = malloc(sizeof(*c) + cap);
        if (!c)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = doc->chunks;
        doc->chunks = c;
    }
    void *r = (char *)c->data + c->used;
    c->used += bytes;
    return r;
}

static int fail(Parser *ps, const char *what)
{
    size_t line = 1, col = 1;
    for (const char *q = ps->buf; q < ps->p && q < ps->end; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    return ferry_error_set(ps->err, -EINVAL, "line %zu, column %zu: %s", line, col, what);
}

/* Pretty-printed dumps are half indentation: skip runs of spaces a word at a time. The buffer
 * carries FERRY_JSON_PADDING bytes after its NUL, so the word loads stay inside it. */
static inline char *skip_spaces(char *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (;;) {
        uint64_t w;
        memcpy(&w, p, sizeof(w));
        uint64_t x = w ^ 0x2020202020202020ull;
        if (x)
            return p + (__builtin_ctzll(x) >> 3);
        p += 8;
    }
#else
    while (*p == ' ')
        p++;
    return p;
#endif
}

static inline void skip_ws(Parser *ps)
{
    char *p = ps->p;
    for (;;) {
        char c = *p;
        if (c == ' ')
            p = skip_spaces(p);
        else if (c == '\n' || c == '\t' || c == '\r')
            p++;
        else
            break;
    }
    ps->p = p;
}

static int push(Parser *ps, FerryJson **out)
{
    if (ps->depth_stack == ps->stack_cap) {
        size_t cap = ps->stack_cap ? ps->stack_cap * 2 : 1024;
        FerryJson *s = realloc(ps->stack, cap * sizeof(*s));
        if (!s)
            return ferry_error_set(ps->err, -ENOMEM, "out of memory");
        ps->stack = s;
        ps->stack_cap = cap;
    }
    *out = &ps->stack[ps->depth_stack++];
    memset(*out, 0, sizeof(**out));
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int read_hex4(Parser *ps, const char *q, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = q + i < ps->end ? hexval(q[i]) : -1;
        if (h < 0)
            return fail(ps, "invalid \\u escape");
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return 0;
}

/* ps->p is on the opening quote. Decodes in place and NUL-terminates (over the closing quote). */
static int parse_string(Parser *ps, const char **out, uint32_t *len)
{
    char *start = ++ps->p, *r = start, *w;
    unsigned char c;
    while ((c = (unsigned char)*r) != '"' && c != '\\' && c >= 0x20)
        r++;
    w = r;
    for (;;) {
        c = (unsigned char)*r;
        if (c == '"')
            break;
        if (r >= ps->end) {
            ps->p = r;
            return fail(ps, "unterminated string");
        }
        if (c < 0x20) {
            ps->p = r;
            return fail(ps, "control character in string");
        }
        if (c != '\\') {
            *w++ = (char)c;
            r++;
            continue;
        }
        ps->p = r;
        switch (r + 1 < ps->end ? r[1] : 0) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            int rc = read_hex4(ps, r + 2, &cp);
            if (rc < 0)
                return rc;
            r += 4;
            if (cp >= 0xd800 && cp < 0xdc00) {
                if (r + 2 >= ps->end || r[2] != '\\' || r[3] != 'u' ||
                    read_hex4(ps, r + 4, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
                    return fail(ps, "unpaired UTF-16 surrogate in \\u escape");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                r += 6;
            } else if (cp >= 0xdc00 && cp < 0xe000) {
                return fail(ps, "unpaired UTF-16 surrogate in \\u escape");
            }
            if (cp == 0)
                return fail(ps, "NUL character (\\u0000) in string");
            if (cp < 0x80) {
                *w++ = (char)cp;
            } else if (cp < 0x800) {
                *w++ = (char)(0xc0 | cp >> 6);
                *w++ = (char)(0x80 | (cp & 0x3f));
            } else if (cp < 0x10000) {
                *w++ = (char)(0xe0 | cp >> 12);
                *w++ = (char)(0x80 | (cp >> 6 & 0x3f));
                *w++ = (char)(0x80 | (cp & 0x3f));
            } else {
                *w++ = (char)(0xf0 | cp >> 18);
                *w++ = (char)(0x80 | (cp >> 12 & 0x3f));
                *w++ = (char)(0x80 | (cp >> 6 & 0x3f));
                *w++ = (char)(0x80 | (cp & 0x3f));
            }
            break;
        }
        default:
            return fail(ps, "invalid escape in string");
        }
        r += 2;
    }
    if ((size_t)(w - start) > UINT32_MAX)
        return fail(ps, "string too long");
    *len = (uint32_t)(w - start);
    *w = '\0';
    ps->p = r + 1;
    *out = start;
    return 0;
}

static int parse_number(Parser *ps, FerryJson *v)
{
    char *s = ps->p, *q = s;
    bool neg = false, real = false;
    if (*q == '-') {
        neg = true;
        q++;
    }
    if (!(*q >= '0' && *q <= '9'))
        return fail(ps, "invalid number");
    if (*q == '0' && q[1] >= '0' && q[1] <= '9')
        return fail(ps, "invalid number (leading zero)");
    uint64_t acc = 0;
    bool overflow = false;
    while (*q >= '0' && *q <= '9') {
        unsigned d = (unsigned)(*q - '0');
        if (acc > (UINT64_MAX - d) / 10)
            overflow = true;
        else
            acc = acc * 10 + d;
        q++;
    }
    if (*q == '.') {
        real = true;
        q++;
        if (!(*q >= '0' && *q <= '9'))
            return fail(ps, "invalid number (digit expected after '.')");
        while (*q >= '0' && *q <= '9')
            q++;
    }
    if (*q == 'e' || *q == 'E') {
        real = true;
        q++;
        if (*q == '+' || *q == '-')
            q++;
        if (!(*q >= '0' && *q <= '9'))
            return fail(ps, "invalid number (digit expected in exponent)");
        while (*q >= '0' && *q <= '9')
            q++;
    }
    if (!real && !overflow && acc <= (uint64_t)INT64_MAX + neg) {
        v->type = FERRY_JSON_INT;
        v->u.i = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    } else {
        v->type = FERRY_JSON_REAL;
        v->u.r = strtod(s, NULL); /* the buffer is NUL-terminated past its end */
    }
    ps->p = q;
    return 0;
}

static int parse_value(Parser *ps, size_t slot, unsigned depth);

/* Children are parsed onto ps->stack, then moved to the arena when the container closes. */
static int parse_container(Parser *ps, size_t slot, unsigned depth, bool object)
{
    char close = object ? '}' : ']';
    size_t base = ps->depth_stack;
    int rc;
    ps->p++;
    skip_ws(ps);
    if (*ps->p != close) {
        for (;;) {
            FerryJson *child;
            if ((rc = push(ps, &child)) < 0)
                return rc;
            size_t cslot = ps->depth_stack - 1;
            if (object) {
                const char *key;
                uint32_t klen;
                if (*ps->p != '"')
                    return fail(ps, "expected a string (object key)");
                if ((rc = parse_string(ps, &key, &klen)) < 0)
                    return rc;
                ps->stack[cslot].key = key;
                skip_ws(ps);
                if (*ps->p != ':')
                    return fail(ps, "expected ':' after an object key");
                ps->p++;
                skip_ws(ps);
            }
            if ((rc = parse_value(ps, cslot, depth + 1)) < 0)
                return rc;
            skip_ws(ps);
            if (*ps->p == ',') {
                ps->p++;
                skip_ws(ps);
                continue;
            }
            if (*ps->p == close)
                break;
            return fail(ps, object ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    ps->p++;
    size_t n = ps->depth_stack - base;
    if (n > UINT32_MAX)
        return fail(ps, "too many items");
    FerryJson *items = NULL;
    if (n) {
        items = arena_alloc(ps->doc, n * sizeof(*items));
        if (!items)
            return ferry_error_set(ps->err, -ENOMEM, "out of memory");
        memcpy(items, &ps->stack[base], n * sizeof(*items));
    }
    ps->depth_stack = base;
    FerryJson *v = &ps->stack[slot];
    v->type = object ? FERRY_JSON_OBJECT : FERRY_JSON_ARRAY;
    v->u.items = items;
    v->len = (uint32_t)n;
    return 0;
}

static int parse_value(Parser *ps, size_t slot, unsigned depth)
{
    if (depth > FERRY_JSON_MAX_DEPTH)
        return fail(ps, "nesting too deep");
    char c = *ps->p;
    FerryJson *v = &ps->stack[slot];
    switch (c) {
    case '{':
    case '[':
        return parse_container(ps, slot, depth, c == '{');
    case '"': {
        const char *s;
        uint32_t len;
        int rc = parse_string(ps, &s, &len);
        if (rc < 0)
            return rc;
        v = &ps->stack[slot];
        v->type = FERRY_JSON_STRING;
        v->u.str = s;
        v->len = len;
        return 0;
    }
    case 't':
        if (ps->end - ps->p >= 4 && !memcmp(ps->p, "true", 4)) {
            v->type = FERRY_JSON_TRUE;
            ps->p += 4;
            return 0;
        }
        break;
    case 'f':
        if (ps->end - ps->p >= 5 && !memcmp(ps->p, "false", 5)) {
            v->type = FERRY_JSON_FALSE;
            ps->p += 5;
            return 0;
        }
        break;
    case 'n':
        if (ps->end - ps->p >= 4 && !memcmp(ps->p, "null", 4)) {
            v->type = FERRY_JSON_NULL;
            ps->p += 4;
            return 0;
        }
        break;
    default:
        if (c == '-' || (c >= '0' && c <= '9'))
            return parse_number(ps, v);
    }
    return fail(ps, ps->p >= ps->end ? "unexpected end of input" : "unexpected character");
}

FerryJsonDoc *ferry_json_parse(char *buf, size_t len, FerryError *err)
{
    FerryJsonDoc *doc = calloc(1, sizeof(*doc));
    if (!doc) {
        free(buf);
        ferry_error_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    doc->buf = buf;
    /* The scanners stop on NUL (never valid JSON outside strings); the padding after it only
     * has to be readable. */
    memset(buf + len, 0, FERRY_JSON_PADDING);
    Parser ps = {.buf = buf, .p = buf, .end = buf + len, .doc = doc, .err = err};
    FerryJson *root;
    int rc = push(&ps, &root);
    if (rc == 0) {
        skip_ws(&ps);
        rc = parse_value(&ps, 0, 0);
    }
    if (rc == 0) {
        skip_ws(&ps);
        if (ps.p != ps.end)
            rc = fail(&ps, "unexpected data after the JSON value");
    }
    if (rc == 0)
        doc->root = ps.stack[0];
    free(ps.stack);
    if (rc < 0) {
        ferry_json_free(doc);
        return NULL;
    }
    return doc;
}

void ferry_json_free(FerryJsonDoc *doc)
{
    if (!doc)
        return;
    for (Chunk *c = doc->chunks, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    free(doc->buf);
    free(doc);
}

const FerryJson *ferry_json_root(const FerryJsonDoc *doc)
{
    return &doc->root;
}

const FerryJson *ferry_json_get(const FerryJson *obj, const char *key)
{
    if (!obj || obj->type != FERRY_JSON_OBJECT)
        return NULL;
    for (uint32_t i = 0; i < obj->len; i++)
        if (!strcmp(obj->u.items[i].key, key))
            return &obj->u.items[i];
    return NULL;
}
