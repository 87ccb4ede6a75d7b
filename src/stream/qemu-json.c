/* The vmdesc trailer as a node array (see qemu-json-int.h), built from jsmn's tokens by
 * json-tokens.c: strings unescaped once, numbers converted once, siblings linked. */
#include "json-tokens-int.h"
#include "qemu-json-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Appends the value at token i (and its subtree) as node *out. Depth is bounded by the check. */
static int build(QjDoc *d, const FerryJtok *j, uint32_t i, uint32_t *out)
{
    uint32_t self = (uint32_t)d->nn++;
    QjNode *n = &d->n[self];
    *n = (QjNode){QJ_NULL, QJ_NONE, QJ_NONE, QJ_NONE, QJ_NONE, 0, 0};
    *out = self;
    int64_t v = 0;
    switch (ferry_jtok_kind(j, i, &v, NULL)) {
    case FERRY_JTOK_NULL:
        return 0;
    case FERRY_JTOK_FALSE:
        n->type = QJ_FALSE;
        return 0;
    case FERRY_JTOK_TRUE:
        n->type = QJ_TRUE;
        return 0;
    case FERRY_JTOK_INT:
        n->type = QJ_INT;
        n->num = v;
        return 0;
    case FERRY_JTOK_REAL:
        n->type = QJ_NUM;
        return 0;
    case FERRY_JTOK_STRING:
        n->type = QJ_STR;
        n->str = (uint32_t)d->ns;
        d->ns += ferry_jtok_unescape(j, i, d->s + d->ns) + 1;
        return 0;
    case FERRY_JTOK_ARRAY:
    case FERRY_JTOK_OBJECT:
        break;
    }
    bool obj = j->t[i].type == JSMN_OBJECT;
    n->type = obj ? QJ_OBJ : QJ_ARR;
    uint32_t last = QJ_NONE, k = i + 1;
    for (int c = 0; c < j->t[i].size; c++, k = j->next[k]) {
        uint32_t key = QJ_NONE, child;
        if (obj) {
            key = (uint32_t)d->ns;
            d->ns += ferry_jtok_unescape(j, k, d->s + d->ns) + 1;
        }
        int rc = build(d, j, obj ? k + 1 : k, &child);
        if (rc < 0)
            return rc;
        d->n[child].key = key;
        if (last == QJ_NONE)
            d->n[self].first = child;
        else
            d->n[last].next = child;
        last = child;
        d->n[self].count++;
    }
    return 0;
}

int qj_parse(QjDoc *d, const char *text, size_t len, size_t *err_pos, const char **err_msg)
{
    FerryJtok j;
    int rc = ferry_jtok_parse(&j, text, len, err_pos, err_msg);
    if (rc == -ENOMEM || rc == -EFBIG) {
        *err_pos = 0;
        *err_msg = rc == -ENOMEM ? "out of memory" : "too large";
    }
    if (rc < 0) {
        ferry_jtok_free(&j);
        return rc;
    }
    /* Unescaped strings are never longer than the text; there is at most a node per token. */
    d->n = malloc(j.n * sizeof(*d->n));
    d->s = malloc(len + 1);
    if (!d->n || !d->s) {
        ferry_jtok_free(&j);
        *err_pos = 0;
        *err_msg = "out of memory";
        return -ENOMEM;
    }
    d->ncap = j.n;
    d->scap = len + 1;
    uint32_t root;
    rc = build(d, &j, 0, &root);
    ferry_jtok_free(&j);
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
