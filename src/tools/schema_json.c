/* JSON scanner (cursor) and an in-place DOM parser on top of it, for schema files: strings are
 * unescaped inside the caller's buffer, nodes come from an arena. QEMU dumps skip the DOM. */
#include "schema_check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
    FerryJsonCursor c;
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

int ferry_json_cursor_fail(FerryJsonCursor *ps, const char *what)
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

static int push(Parser *ps, FerryJson **out)
{
    if (ps->depth_stack == ps->stack_cap) {
        size_t cap = ps->stack_cap ? ps->stack_cap * 2 : 1024;
        FerryJson *s = realloc(ps->stack, cap * sizeof(*s));
        if (!s)
            return ferry_error_set(ps->c.err, -ENOMEM, "out of memory");
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

static int read_hex4(FerryJsonCursor *ps, const char *q, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = q + i < ps->end ? hexval(q[i]) : -1;
        if (h < 0)
            return ferry_json_cursor_fail(ps, "invalid \\u escape");
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return 0;
}

/* ps->p is on the opening quote. Decodes in place and NUL-terminates (over the closing quote). */
/* Decodes the string at ps->p (its opening quote) into `dst`, or in place when `dst` is NULL
 * (decoded text is never longer than its encoding). `dst` holds at least the raw length + 1. */
static int decode_string(FerryJsonCursor *ps, char *dst, const char **out, uint32_t *len)
{
    char *start = ++ps->p, *r = start, *w;
    unsigned char c;
    while ((c = (unsigned char)*r) != '"' && c != '\\' && c >= 0x20)
        r++;
    if (dst) {
        memcpy(dst, start, (size_t)(r - start));
        w = dst + (r - start);
        start = dst;
    } else {
        w = r;
    }
    for (;;) {
        c = (unsigned char)*r;
        if (c == '"')
            break;
        if (r >= ps->end) {
            ps->p = r;
            return ferry_json_cursor_fail(ps, "unterminated string");
        }
        if (c < 0x20) {
            ps->p = r;
            return ferry_json_cursor_fail(ps, "control character in string");
        }
        if (c != '\\') {
            *w++ = (char)c;
            r++;
            continue;
        }
        ps->p = r;
        switch (r + 1 < ps->end ? r[1] : 0) {
        case '"':
            *w++ = '"';
            break;
        case '\\':
            *w++ = '\\';
            break;
        case '/':
            *w++ = '/';
            break;
        case 'b':
            *w++ = '\b';
            break;
        case 'f':
            *w++ = '\f';
            break;
        case 'n':
            *w++ = '\n';
            break;
        case 'r':
            *w++ = '\r';
            break;
        case 't':
            *w++ = '\t';
            break;
        case 'u': {
            unsigned cp, lo;
            int rc = read_hex4(ps, r + 2, &cp);
            if (rc < 0)
                return rc;
            r += 4;
            if (cp >= 0xd800 && cp < 0xdc00) {
                if (r + 2 >= ps->end || r[2] != '\\' || r[3] != 'u' ||
                    read_hex4(ps, r + 4, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
                    return ferry_json_cursor_fail(ps, "unpaired UTF-16 surrogate in \\u escape");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                r += 6;
            } else if (cp >= 0xdc00 && cp < 0xe000) {
                return ferry_json_cursor_fail(ps, "unpaired UTF-16 surrogate in \\u escape");
            }
            if (cp == 0)
                return ferry_json_cursor_fail(ps, "NUL character (\\u0000) in string");
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
            return ferry_json_cursor_fail(ps, "invalid escape in string");
        }
        r += 2;
    }
    if ((size_t)(w - start) > UINT32_MAX)
        return ferry_json_cursor_fail(ps, "string too long");
    *len = (uint32_t)(w - start);
    *w = '\0';
    ps->p = r + 1;
    *out = start;
    return 0;
}

int ferry_json_cursor_string(FerryJsonCursor *ps, const char **out, uint32_t *len)
{
    return decode_string(ps, NULL, out, len);
}

int ferry_json_cursor_span(FerryJsonCursor *ps, size_t *raw_len, bool *escaped)
{
    const char *start = ps->p + 1, *r = start;
    unsigned char c0;
    while ((c0 = (unsigned char)*r) != '"' && c0 != '\\' && c0 >= 0x20)
        r++;
    *escaped = c0 == '\\';
    for (;;) {
        unsigned char c = (unsigned char)*r;
        if (c == '"')
            break;
        if (r >= ps->end) {
            ps->p = (char *)r;
            return ferry_json_cursor_fail(ps, "unterminated string");
        }
        if (c < 0x20) {
            ps->p = (char *)r;
            return ferry_json_cursor_fail(ps, "control character in string");
        }
        r += c == '\\' && r + 1 < ps->end ? 2 : 1;
    }
    *raw_len = (size_t)(r - start);
    return 0;
}

int ferry_json_cursor_string_to(FerryJsonCursor *ps, char *dst, const char **out, uint32_t *len)
{
    return decode_string(ps, dst, out, len);
}

int ferry_json_cursor_number(FerryJsonCursor *ps, FerryJson *v)
{
    char *s = ps->p, *q = s;
    bool neg = false, real = false;
    if (*q == '-') {
        neg = true;
        q++;
    }
    if (!(*q >= '0' && *q <= '9'))
        return ferry_json_cursor_fail(ps, "invalid number");
    if (*q == '0' && q[1] >= '0' && q[1] <= '9')
        return ferry_json_cursor_fail(ps, "invalid number (leading zero)");
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
            return ferry_json_cursor_fail(ps, "invalid number (digit expected after '.')");
        while (*q >= '0' && *q <= '9')
            q++;
    }
    if (*q == 'e' || *q == 'E') {
        real = true;
        q++;
        if (*q == '+' || *q == '-')
            q++;
        if (!(*q >= '0' && *q <= '9'))
            return ferry_json_cursor_fail(ps, "invalid number (digit expected in exponent)");
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
    ps->c.p++;
    ferry_json_skip_ws(&ps->c);
    if (*ps->c.p != close) {
        for (;;) {
            FerryJson *child;
            if ((rc = push(ps, &child)) < 0)
                return rc;
            size_t cslot = ps->depth_stack - 1;
            if (object) {
                const char *key;
                uint32_t klen;
                if (*ps->c.p != '"')
                    return ferry_json_cursor_fail(&ps->c, "expected a string (object key)");
                if ((rc = ferry_json_cursor_string(&ps->c, &key, &klen)) < 0)
                    return rc;
                ps->stack[cslot].key = key;
                ferry_json_skip_ws(&ps->c);
                if (*ps->c.p != ':')
                    return ferry_json_cursor_fail(&ps->c, "expected ':' after an object key");
                ps->c.p++;
                ferry_json_skip_ws(&ps->c);
            }
            if ((rc = parse_value(ps, cslot, depth + 1)) < 0)
                return rc;
            ferry_json_skip_ws(&ps->c);
            if (*ps->c.p == ',') {
                ps->c.p++;
                ferry_json_skip_ws(&ps->c);
                continue;
            }
            if (*ps->c.p == close)
                break;
            return ferry_json_cursor_fail(&ps->c,
                                          object ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    ps->c.p++;
    size_t n = ps->depth_stack - base;
    if (n > UINT32_MAX)
        return ferry_json_cursor_fail(&ps->c, "too many items");
    FerryJson *items = NULL;
    if (n) {
        items = arena_alloc(ps->doc, n * sizeof(*items));
        if (!items)
            return ferry_error_set(ps->c.err, -ENOMEM, "out of memory");
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
        return ferry_json_cursor_fail(&ps->c, "nesting too deep");
    char c = *ps->c.p;
    FerryJson *v = &ps->stack[slot];
    switch (c) {
    case '{':
    case '[':
        return parse_container(ps, slot, depth, c == '{');
    case '"': {
        const char *s;
        uint32_t len;
        int rc = ferry_json_cursor_string(&ps->c, &s, &len);
        if (rc < 0)
            return rc;
        v = &ps->stack[slot];
        v->type = FERRY_JSON_STRING;
        v->u.str = s;
        v->len = len;
        return 0;
    }
    case 't':
        if (ps->c.end - ps->c.p >= 4 && !memcmp(ps->c.p, "true", 4)) {
            v->type = FERRY_JSON_TRUE;
            ps->c.p += 4;
            return 0;
        }
        break;
    case 'f':
        if (ps->c.end - ps->c.p >= 5 && !memcmp(ps->c.p, "false", 5)) {
            v->type = FERRY_JSON_FALSE;
            ps->c.p += 5;
            return 0;
        }
        break;
    case 'n':
        if (ps->c.end - ps->c.p >= 4 && !memcmp(ps->c.p, "null", 4)) {
            v->type = FERRY_JSON_NULL;
            ps->c.p += 4;
            return 0;
        }
        break;
    default:
        if (c == '-' || (c >= '0' && c <= '9'))
            return ferry_json_cursor_number(&ps->c, v);
    }
    return ferry_json_cursor_fail(&ps->c, ps->c.p >= ps->c.end ? "unexpected end of input"
                                                               : "unexpected character");
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
    Parser ps = {.c = {.buf = buf, .p = buf, .end = buf + len, .err = err}, .doc = doc};
    FerryJson *root;
    int rc = push(&ps, &root);
    if (rc == 0) {
        ferry_json_skip_ws(&ps.c);
        rc = parse_value(&ps, 0, 0);
    }
    if (rc == 0) {
        ferry_json_skip_ws(&ps.c);
        if (ps.c.p != ps.c.end)
            rc = ferry_json_cursor_fail(&ps.c, "unexpected data after the JSON value");
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
