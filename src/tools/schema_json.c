/* The schema checker's DOM for Ferry schema files, built from jsmn's tokens (through libferry's
 * json-tokens.c): strings are decoded in place in the caller's buffer, nodes live in one array. */
#include "../stream/json-tokens-int.h"
#include "schema_check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct FerryJsonDoc {
    char *buf;
    FerryJson root;
    FerryJson *nodes; /* every container's items, contiguous */
    size_t used;
};

/* Fills *v from the value at token i; children are taken from doc->nodes. Depth is bounded by
 * ferry_jtok_parse's check. */
static void build(FerryJsonDoc *doc, const FerryJtok *j, uint32_t i, FerryJson *v)
{
    int64_t n = 0;
    double r = 0;
    switch (ferry_jtok_kind(j, i, &n, &r)) {
    case FERRY_JTOK_NULL:
        v->type = FERRY_JSON_NULL;
        return;
    case FERRY_JTOK_FALSE:
        v->type = FERRY_JSON_FALSE;
        return;
    case FERRY_JTOK_TRUE:
        v->type = FERRY_JSON_TRUE;
        return;
    case FERRY_JTOK_INT:
        v->type = FERRY_JSON_INT;
        v->u.i = n;
        return;
    case FERRY_JTOK_REAL:
        v->type = FERRY_JSON_REAL;
        v->u.r = r;
        return;
    case FERRY_JTOK_STRING: {
        char *s = doc->buf + j->t[i].start; /* decoded over its own text */
        v->type = FERRY_JSON_STRING;
        v->len = (uint32_t)ferry_jtok_unescape(j, i, s);
        v->u.str = s;
        return;
    }
    case FERRY_JTOK_ARRAY:
    case FERRY_JTOK_OBJECT:
        break;
    }
    bool obj = j->t[i].type == JSMN_OBJECT;
    v->type = obj ? FERRY_JSON_OBJECT : FERRY_JSON_ARRAY;
    v->len = (uint32_t)j->t[i].size;
    v->u.items = doc->nodes + doc->used;
    doc->used += v->len;
    uint32_t k = i + 1;
    for (uint32_t c = 0; c < v->len; c++, k = j->next[k]) {
        FerryJson *item = &v->u.items[c];
        *item = (FerryJson){0};
        if (obj) {
            char *s = doc->buf + j->t[k].start;
            ferry_jtok_unescape(j, k, s);
            item->key = s;
        }
        build(doc, j, obj ? k + 1 : k, item);
    }
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
    FerryJtok j;
    size_t pos, line, col;
    const char *msg;
    int rc = ferry_jtok_parse(&j, buf, len, &pos, &msg);
    if (rc == -EINVAL) {
        ferry_jtok_line_col(buf, len, pos, &line, &col);
        ferry_error_set(err, rc, "line %zu, column %zu: %s", line, col, msg);
    } else if (rc < 0) {
        ferry_error_set(err, rc, rc == -ENOMEM ? "out of memory" : "input too large");
    } else if (!(doc->nodes = malloc(j.n * sizeof(*doc->nodes)))) {
        rc = ferry_error_set(err, -ENOMEM, "out of memory");
    } else {
        build(doc, &j, 0, &doc->root);
    }
    ferry_jtok_free(&j);
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
    free(doc->nodes);
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
