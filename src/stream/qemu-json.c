/* Minimal JSON reader for the vmdesc trailer (see qemu-json-int.h). QEMU's analyzer decodes
 * every device through this description, so parsing it is most of the per-stream fixed cost. */
#include "qemu-json-int.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define QJ_MAX_DEPTH 64

typedef struct P {
    QjDoc *d;
    const char *t;
    size_t len, i;
    const char *msg;
} P;

static int bad(P *p, const char *msg)
{
    p->msg = msg;
    return -EINVAL;
}

static void ws(P *p)
{
    while (p->i < p->len &&
           (p->t[p->i] == ' ' || p->t[p->i] == '\n' || p->t[p->i] == '\r' || p->t[p->i] == '\t'))
        p->i++;
}

static int new_node(P *p, uint8_t type, uint32_t *out)
{
    QjDoc *d = p->d;
    if (d->nn == d->ncap) {
        size_t cap = d->ncap ? d->ncap * 2 : 256;
        QjNode *n = realloc(d->n, cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        d->n = n;
        d->ncap = cap;
    }
    *out = (uint32_t)d->nn;
    d->n[d->nn++] = (QjNode){type, QJ_NONE, QJ_NONE, QJ_NONE, QJ_NONE, 0, 0};
    return 0;
}

static int put(P *p, const void *b, size_t n)
{
    QjDoc *d = p->d;
    if (d->scap - d->ns < n) {
        size_t cap = d->scap ? d->scap : 1024;
        while (cap - d->ns < n)
            cap *= 2;
        char *s = realloc(d->s, cap);
        if (!s)
            return -ENOMEM;
        d->s = s;
        d->scap = cap;
    }
    memcpy(d->s + d->ns, b, n);
    d->ns += n;
    return 0;
}

static int hex4(P *p, uint32_t *v)
{
    if (p->len - p->i < 4)
        return bad(p, "truncated \\u escape");
    *v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p->t[p->i++];
        int h = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (h < 0)
            return bad(p, "invalid \\u escape");
        *v = *v << 4 | (uint32_t)h;
    }
    return 0;
}

/* String at p->i (after the quote) into d->s; *off = its offset. */
static int string(P *p, uint32_t *off)
{
    int rc;
    if (p->d->ns > UINT32_MAX / 2)
        return bad(p, "too much text");
    *off = (uint32_t)p->d->ns;
    for (;;) {
        size_t start = p->i;
        while (p->i < p->len && p->t[p->i] != '"' && p->t[p->i] != '\\' &&
               (unsigned char)p->t[p->i] >= 0x20)
            p->i++;
        if ((rc = put(p, p->t + start, p->i - start)) < 0)
            return rc;
        if (p->i >= p->len)
            return bad(p, "unterminated string");
        char c = p->t[p->i++];
        if (c == '"')
            return put(p, "", 1);
        if (c != '\\')
            return bad(p, "control character in string");
        if (p->i >= p->len)
            return bad(p, "unterminated string");
        char e = p->t[p->i++];
        const char *map = strchr("\"\"\\\\//b\bf\fn\nr\rt\t", e);
        if (e && map && ((map - "\"\"\\\\//b\bf\fn\nr\rt\t") % 2) == 0) {
            if ((rc = put(p, map + 1, 1)) < 0)
                return rc;
            continue;
        }
        if (e != 'u')
            return bad(p, "invalid escape");
        uint32_t cp, lo;
        if ((rc = hex4(p, &cp)) < 0)
            return rc;
        if (cp >= 0xd800 && cp < 0xdc00 && p->len - p->i >= 6 && p->t[p->i] == '\\' &&
            p->t[p->i + 1] == 'u') {
            p->i += 2;
            if ((rc = hex4(p, &lo)) < 0)
                return rc;
            if (lo >= 0xdc00 && lo < 0xe000)
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            else
                return bad(p, "invalid surrogate pair");
        }
        if (cp == 0)
            return bad(p, "NUL in string");
        char u[4];
        size_t n;
        if (cp < 0x80)
            u[0] = (char)cp, n = 1;
        else if (cp < 0x800)
            u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
        else if (cp < 0x10000)
            u[0] = (char)(0xe0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3f)),
            u[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
        else
            u[0] = (char)(0xf0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 0x3f)),
            u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
        if ((rc = put(p, u, n)) < 0)
            return rc;
    }
}

static int value(P *p, uint32_t *out, int depth);

/* Array or object at p->i (after the bracket). */
static int container(P *p, uint32_t self, bool obj, int depth)
{
    int rc;
    uint32_t last = QJ_NONE;
    ws(p);
    if (p->i < p->len && p->t[p->i] == (obj ? '}' : ']')) {
        p->i++;
        return 0;
    }
    for (;;) {
        uint32_t key = QJ_NONE, child;
        ws(p);
        if (obj) {
            if (p->i >= p->len || p->t[p->i] != '"')
                return bad(p, "expected a member name");
            p->i++;
            if ((rc = string(p, &key)) < 0)
                return rc;
            ws(p);
            if (p->i >= p->len || p->t[p->i] != ':')
                return bad(p, "expected ':'");
            p->i++;
        }
        if ((rc = value(p, &child, depth + 1)) < 0)
            return rc;
        QjNode *n = p->d->n;
        n[child].key = key;
        if (last == QJ_NONE)
            n[self].first = child;
        else
            n[last].next = child;
        last = child;
        n[self].count++;
        ws(p);
        if (p->i >= p->len)
            return bad(p, "unterminated array or object");
        char c = p->t[p->i++];
        if (c == ',')
            continue;
        if (c == (obj ? '}' : ']'))
            return 0;
        return bad(p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int value(P *p, uint32_t *out, int depth)
{
    int rc;
    if (depth > QJ_MAX_DEPTH)
        return bad(p, "nesting too deep");
    ws(p);
    if (p->i >= p->len)
        return bad(p, "expected a value");
    char c = p->t[p->i];
    if (c == '{' || c == '[') {
        p->i++;
        if ((rc = new_node(p, c == '{' ? QJ_OBJ : QJ_ARR, out)) < 0)
            return rc;
        return container(p, *out, c == '{', depth);
    }
    if (c == '"') {
        p->i++;
        uint32_t off;
        if ((rc = string(p, &off)) < 0 || (rc = new_node(p, QJ_STR, out)) < 0)
            return rc;
        p->d->n[*out].str = off;
        return 0;
    }
    static const struct {
        const char *word;
        uint8_t type;
    } words[] = {{"true", QJ_TRUE}, {"false", QJ_FALSE}, {"null", QJ_NULL}};
    for (size_t k = 0; k < 3; k++) {
        size_t n = strlen(words[k].word);
        if (p->len - p->i >= n && !memcmp(p->t + p->i, words[k].word, n)) {
            p->i += n;
            return new_node(p, words[k].type, out);
        }
    }
    if (c != '-' && (c < '0' || c > '9'))
        return bad(p, "invalid value");
    bool neg = c == '-', overflow = false, frac = false;
    size_t i = p->i + neg, digits = 0;
    uint64_t v = 0;
    while (i < p->len && p->t[i] >= '0' && p->t[i] <= '9') {
        unsigned dgt = (unsigned)(p->t[i++] - '0');
        overflow |= v > (UINT64_MAX - dgt) / 10;
        v = v * 10 + dgt;
        digits++;
    }
    if (!digits)
        return bad(p, "invalid number");
    if (i < p->len && p->t[i] == '.') {
        frac = true;
        for (i++; i < p->len && p->t[i] >= '0' && p->t[i] <= '9'; i++)
            ;
    }
    if (i < p->len && (p->t[i] == 'e' || p->t[i] == 'E')) {
        frac = true;
        i++;
        if (i < p->len && (p->t[i] == '+' || p->t[i] == '-'))
            i++;
        for (; i < p->len && p->t[i] >= '0' && p->t[i] <= '9'; i++)
            ;
    }
    p->i = i;
    overflow |= v > (uint64_t)INT64_MAX + neg;
    if ((rc = new_node(p, frac || overflow ? QJ_NUM : QJ_INT, out)) < 0)
        return rc;
    p->d->n[*out].num = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

int qj_parse(QjDoc *d, const char *text, size_t len, size_t *err_pos, const char **err_msg)
{
    P p = {d, text, len, 0, NULL};
    uint32_t root;
    int rc = value(&p, &root, 0);
    if (rc == 0) {
        ws(&p);
        if (p.i != len)
            rc = bad(&p, "text after the JSON value");
    }
    if (rc < 0) {
        *err_pos = p.i;
        *err_msg = rc == -ENOMEM ? "out of memory" : p.msg;
    }
    return rc;
}

void qj_free(QjDoc *d)
{
    free(d->n);
    free(d->s);
    *d = (QjDoc){0};
}

uint32_t qj_get(const QjDoc *d, uint32_t obj, const char *key)
{
    if (obj == QJ_NONE || d->n[obj].type != QJ_OBJ)
        return QJ_NONE;
    uint32_t found = QJ_NONE;
    for (uint32_t c = d->n[obj].first; c != QJ_NONE; c = d->n[c].next)
        if (!strcmp(d->s + d->n[c].key, key))
            found = c; /* keep going: a repeated key's last value wins */
    return found;
}
