/* The QEMU vmdesc trailer as one flat node array (parsed by jsmn through json-tokens.c).
 * Private to src/stream/qemu.c; duplicate object keys resolve to the last one (like Python). */
#ifndef FERRY_STREAM_QEMU_JSON_INT_H
#define FERRY_STREAM_QEMU_JSON_INT_H

#include <stddef.h>
#include <stdint.h>

#define QJ_NONE UINT32_MAX

typedef enum QjType { QJ_NULL, QJ_FALSE, QJ_TRUE, QJ_INT, QJ_NUM, QJ_STR, QJ_ARR, QJ_OBJ } QjType;

typedef struct QjNode {
    uint8_t type;
    uint32_t key;   /* object member: offset of its key in QjDoc.s, else QJ_NONE */
    uint32_t str;   /* QJ_STR: offset of the NUL-terminated value in QjDoc.s */
    uint32_t first; /* QJ_ARR/QJ_OBJ: first child */
    uint32_t next;  /* next sibling */
    uint32_t count; /* QJ_ARR/QJ_OBJ: number of children */
    int64_t num;    /* QJ_INT */
} QjNode;

typedef struct QjDoc {
    QjNode *n; /* n[0] is the root */
    size_t nn, ncap;
    char *s; /* unescaped strings, NUL-terminated */
    size_t ns, scap;
} QjDoc;

/* Parse `len` bytes. Returns 0, or -EINVAL with err_pos and err_msg set (-ENOMEM on allocation).
 * The caller frees with qj_free (also after a failure). */
int qj_parse(QjDoc *d, const char *text, size_t len, size_t *err_pos, const char **err_msg);
void qj_free(QjDoc *d);

/* The last member of object `obj` named `key`, or QJ_NONE. */
uint32_t qj_get(const QjDoc *d, uint32_t obj, const char *key);

static inline const char *qj_str(const QjDoc *d, uint32_t node)
{
    return node != QJ_NONE && d->n[node].type == QJ_STR ? d->s + d->n[node].str : NULL;
}

#endif
