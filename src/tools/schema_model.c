/* Builds the checker's model (sections -> descriptions -> fields/subsections) from a QEMU
 * -dump-vmstate file or a Ferry schema file, so one rule engine serves both formats. */
#include "../stream/json-tokens-int.h"
#include "ferry/state/schema.h"
#include "schema_check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct MChunk {
    struct MChunk *next;
    size_t used, cap;
    max_align_t data[];
} MChunk;

struct FerrySchemaDoc {
    FerrySchemaFormat format;
    char *name;
    const char *machine;
    FerryJsonDoc *json; /* Ferry: strings of the model point into it */
    FerrySchemaSection *sections;
    size_t nsections;
    long *index; /* open addressing over (name, instance); -1 empty */
    size_t index_cap;
    MChunk *chunks;
};

/* A JSON path kept on the C stack and formatted only when an error is reported. */
typedef struct PathFrame {
    const struct PathFrame *up;
    const char *key; /* member name, or NULL for an array index */
    size_t index;
} PathFrame;

typedef struct Loader {
    FerrySchemaDoc *doc;
    FerryError *err;
} Loader;

static void *model_alloc_raw(FerrySchemaDoc *doc, size_t bytes);

static void *model_alloc(FerrySchemaDoc *doc, size_t bytes)
{
    void *r = model_alloc_raw(doc, bytes);
    if (r)
        memset(r, 0, bytes);
    return r;
}

/* Uninitialised: strings are copied in whole. */
static void *model_alloc_raw(FerrySchemaDoc *doc, size_t bytes)
{
    bytes = (bytes + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    if (bytes == 0)
        bytes = sizeof(max_align_t);
    MChunk *c = doc->chunks;
    if (!c || c->cap - c->used < bytes) {
        size_t cap = bytes > 128 * 1024 ? bytes : 128 * 1024;
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

static bool simple_key(const char *k)
{
    if (!*k || (*k >= '0' && *k <= '9'))
        return false;
    for (; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') ||
              *k == '_'))
            return false;
    return true;
}

static void format_path(const PathFrame *f, char *out, size_t cap)
{
    const PathFrame *chain[64];
    size_t n = 0;
    for (; f && n < 64; f = f->up)
        chain[n++] = f;
    size_t len = (size_t)snprintf(out, cap, "$");
    while (n-- > 0 && len < cap) {
        const PathFrame *p = chain[n];
        if (!p->key)
            len += (size_t)snprintf(out + len, cap - len, "[%zu]", p->index);
        else if (simple_key(p->key))
            len += (size_t)snprintf(out + len, cap - len, ".%s", p->key);
        else
            len += (size_t)snprintf(out + len, cap - len, "[\"%s\"]", p->key);
    }
}

__attribute__((format(printf, 3, 4))) static int bad(Loader *ld, const PathFrame *at,
                                                     const char *fmt, ...)
{
    char path[512], msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    format_path(at, path, sizeof(path));
    return ferry_error_set(ld->err, -EINVAL, "%s: %s: %s", ld->doc->name, path, msg);
}

static const char *json_type_name(const FerryJson *v)
{
    static const char *const names[] = {"null",   "false",    "true",     "an integer",
                                        "a real", "a string", "an array", "an object"};
    return names[v->type];
}

/* Typed member readers: `required` members that are absent are errors; present members of the
 * wrong type always are. Return 1 if the value was read, 0 if absent, negative on error. */
static int get_uint(Loader *ld, const PathFrame *at, const FerryJson *obj, const char *key,
                    bool required, uint64_t max, uint64_t *out)
{
    const FerryJson *v = ferry_json_get(obj, key);
    PathFrame here = {at, key, 0};
    if (!v)
        return required ? bad(ld, at, "missing member \"%s\"", key) : 0;
    if (v->type != FERRY_JSON_INT)
        return bad(ld, &here, "expected an integer, got %s", json_type_name(v));
    if (v->u.i < 0 || (uint64_t)v->u.i > max)
        return bad(ld, &here, "integer %lld out of range 0..%llu", (long long)v->u.i,
                   (unsigned long long)max);
    *out = (uint64_t)v->u.i;
    return 1;
}

static int get_u32(Loader *ld, const PathFrame *at, const FerryJson *obj, const char *key,
                   bool required, uint32_t *out)
{
    uint64_t v = 0;
    int rc = get_uint(ld, at, obj, key, required, UINT32_MAX, &v);
    if (rc > 0)
        *out = (uint32_t)v;
    return rc;
}

static int get_string(Loader *ld, const PathFrame *at, const FerryJson *obj, const char *key,
                      bool required, bool nullable, const char **out)
{
    const FerryJson *v = ferry_json_get(obj, key);
    PathFrame here = {at, key, 0};
    if (!v)
        return required ? bad(ld, at, "missing member \"%s\"", key) : 0;
    if (nullable && v->type == FERRY_JSON_NULL) {
        *out = NULL;
        return 1;
    }
    if (v->type != FERRY_JSON_STRING)
        return bad(ld, &here, "expected a string, got %s", json_type_name(v));
    *out = v->u.str;
    return 1;
}

static int get_bool(Loader *ld, const PathFrame *at, const FerryJson *obj, const char *key,
                    bool required, bool *out)
{
    const FerryJson *v = ferry_json_get(obj, key);
    PathFrame here = {at, key, 0};
    if (!v)
        return required ? bad(ld, at, "missing member \"%s\"", key) : 0;
    if (v->type != FERRY_JSON_TRUE && v->type != FERRY_JSON_FALSE)
        return bad(ld, &here, "expected true or false, got %s", json_type_name(v));
    *out = v->type == FERRY_JSON_TRUE;
    return 1;
}

static int get_container(Loader *ld, const PathFrame *at, const FerryJson *obj, const char *key,
                         FerryJsonType type, bool required, const FerryJson **out)
{
    const FerryJson *v = ferry_json_get(obj, key);
    PathFrame here = {at, key, 0};
    *out = NULL;
    if (!v)
        return required ? bad(ld, at, "missing member \"%s\"", key) : 0;
    if (v->type != type)
        return bad(ld, &here, "expected %s, got %s",
                   type == FERRY_JSON_ARRAY ? "an array" : "an object", json_type_name(v));
    *out = v;
    return 1;
}

/* ---- shape: a structural hash for "same layout" candidates (renamed or moved sections) ---- */
static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

static uint64_t hash_str(uint64_t h, const char *s)
{
    uint64_t x = 0xcbf29ce484222325ull;
    for (; *s; s++)
        x = (x ^ (unsigned char)*s) * 0x100000001b3ull;
    return mix(h, x);
}

uint64_t ferry_schema_desc_shape(const FerrySchemaDesc *d)
{
    uint64_t h = mix(mix(mix(0, d->version), d->min_version), d->nfields);
    for (size_t i = 0; i < d->nfields; i++) {
        const FerrySchemaField *f = &d->fields[i];
        h = hash_str(h, f->name);
        h = mix(h, f->since);
        h = mix(h, f->exists);
        h = mix(h, f->typed ? (uint64_t)f->type << 8 | f->array : 0xffff);
        h = mix(h, f->count);
        h = mix(h, f->desc ? ferry_schema_desc_shape(f->desc) : f->size);
    }
    h = mix(h, d->nsubsections);
    for (size_t i = 0; i < d->nsubsections; i++) {
        h = hash_str(h, d->subsections[i].desc->name);
        h = mix(h, d->subsections[i].optional);
        h = mix(h, ferry_schema_desc_shape(d->subsections[i].desc));
    }
    return h;
}

/* ---- QEMU -dump-vmstate, read straight from jsmn's tokens into the model (no DOM: these files
 * are ~800 KB, and the checker's speed is mostly this walk) ---- */
typedef struct QLoad {
    Loader *ld;
    FerryJtok j; /* over the input, which is never written: it may be a read-only mapping */
} QLoad;

/* What the value at token i is, for "expected X, got Y". */
static const char *q_type_name(const QLoad *q, uint32_t i)
{
    static const char *const names[] = {"null",   "false",    "true",     "an integer",
                                        "a real", "a string", "an array", "an object"};
    return names[ferry_jtok_kind(&q->j, i, NULL, NULL)];
}

/* String token i, NUL-terminated, copied into the model arena. */
static int q_copy_string(QLoad *q, uint32_t i, const char **out)
{
    char *dst = model_alloc_raw(q->ld->doc, ferry_jtok_raw_len(&q->j, i) + 1);
    if (!dst)
        return ferry_error_set(q->ld->err, -ENOMEM, "out of memory");
    ferry_jtok_unescape(&q->j, i, dst);
    *out = dst;
    return 0;
}

static bool q_is(const QLoad *q, uint32_t i, FerryJtokKind kind)
{
    return q->j.t[i].type == (kind == FERRY_JTOK_OBJECT  ? JSMN_OBJECT
                              : kind == FERRY_JTOK_ARRAY ? JSMN_ARRAY
                                                         : JSMN_STRING);
}

static int q_uint(QLoad *q, const PathFrame *at, const char *key, uint32_t i, uint64_t max,
                  uint64_t *out)
{
    PathFrame here = {at, key, 0};
    int64_t v;
    FerryJtokKind k = ferry_jtok_kind(&q->j, i, &v, NULL);
    if (k != FERRY_JTOK_INT)
        return bad(q->ld, &here, "expected an integer, got %s", q_type_name(q, i));
    if (v < 0 || (uint64_t)v > max)
        return bad(q->ld, &here, "integer %lld out of range 0..%llu", (long long)v,
                   (unsigned long long)max);
    *out = (uint64_t)v;
    return 0;
}

static int q_u32(QLoad *q, const PathFrame *at, const char *key, uint32_t i, uint32_t *out)
{
    uint64_t v = 0;
    int rc = q_uint(q, at, key, i, UINT32_MAX, &v);
    *out = (uint32_t)v;
    return rc;
}

static int q_string(QLoad *q, const PathFrame *at, const char *key, uint32_t i, const char **out)
{
    PathFrame here = {at, key, 0};
    if (!q_is(q, i, FERRY_JTOK_STRING))
        return bad(q->ld, &here, "expected a string, got %s", q_type_name(q, i));
    return q_copy_string(q, i, out);
}

static int q_bool(QLoad *q, const PathFrame *at, const char *key, uint32_t i, bool *out)
{
    PathFrame here = {at, key, 0};
    FerryJtokKind k = ferry_jtok_kind(&q->j, i, NULL, NULL);
    if (k != FERRY_JTOK_TRUE && k != FERRY_JTOK_FALSE)
        return bad(q->ld, &here, "expected true or false, got %s", q_type_name(q, i));
    *out = k == FERRY_JTOK_TRUE;
    return 0;
}

/* Members of object token `o`: `key` is each key's token, its value is key + 1. */
#define FOR_MEMBERS(q, o, key)                                                                     \
    for (uint32_t key = (o) + 1, key##_n = 0; key##_n < (uint32_t)(q)->j.t[o].size;                \
         key##_n++, key = (q)->j.next[key])
#define KEY_IS(lit) ferry_jtok_eq(&q->j, key, lit, sizeof(lit) - 1)

/* A growable array on the C stack first (most descriptions have a handful of fields). */
typedef struct Grow {
    void *v;
    size_t n, cap, elem;
    bool heap;
} Grow;

static void *grow_next(Grow *g)
{
    if (g->n == g->cap) {
        size_t cap = g->cap * 2;
        void *v = g->heap ? realloc(g->v, cap * g->elem) : malloc(cap * g->elem);
        if (!v)
            return NULL;
        if (!g->heap)
            memcpy(v, g->v, g->n * g->elem);
        g->v = v;
        g->cap = cap;
        g->heap = true;
    }
    void *slot = (char *)g->v + g->n++ * g->elem;
    memset(slot, 0, g->elem);
    return slot;
}

static void grow_release(Grow *g)
{
    if (g->heap)
        free(g->v);
}

/* Moves the items into the model arena. */
static void *grow_finish(QLoad *q, Grow *g)
{
    if (!g->n)
        return NULL;
    void *out = model_alloc(q->ld->doc, g->n * g->elem);
    if (out)
        memcpy(out, g->v, g->n * g->elem);
    return out;
}

static int q_desc(QLoad *q, const PathFrame *at, uint32_t i, unsigned depth,
                  const FerrySchemaDesc **out);

static int q_field(QLoad *q, const PathFrame *at, uint32_t o, unsigned depth, FerrySchemaField *f)
{
    int rc = 0;
    bool has_name = false, has_version = false, has_size = false;
    if (!q_is(q, o, FERRY_JTOK_OBJECT))
        return bad(q->ld, at, "expected a field object, got %s", q_type_name(q, o));
    FOR_MEMBERS(q, o, key)
    {
        uint32_t v = key + 1;
        if (KEY_IS("field")) {
            rc = q_string(q, at, "field", v, &f->name);
            has_name = true;
        } else if (KEY_IS("version_id")) {
            rc = q_u32(q, at, "version_id", v, &f->since);
            has_version = true;
        } else if (KEY_IS("field_exists")) {
            rc = q_bool(q, at, "field_exists", v, &f->exists);
        } else if (KEY_IS("size")) {
            rc = q_uint(q, at, "size", v, UINT64_MAX >> 1, &f->size);
            has_size = true;
        } else if (KEY_IS("num")) { /* QEMU >= 8.1 */
            rc = q_uint(q, at, "num", v, UINT32_MAX, &f->count);
            f->count_known = true;
        } else if (KEY_IS("Description")) {
            PathFrame here = {at, "Description", 0};
            rc = q_desc(q, &here, v, depth + 1, &f->desc);
        }
        if (rc < 0)
            return rc;
    }
    if (!has_name || !has_version || !has_size)
        return bad(q->ld, at, "missing member \"%s\"",
                   !has_name      ? "field"
                   : !has_version ? "version_id"
                                  : "size");
    return 0;
}

static int q_fields(QLoad *q, const PathFrame *at, uint32_t a, unsigned depth, FerrySchemaDesc *d)
{
    FerrySchemaField inl[16];
    Grow g = {.v = inl, .cap = 16, .elem = sizeof(FerrySchemaField)};
    PathFrame fa = {at, "Fields", 0};
    int rc = 0;
    if (!q_is(q, a, FERRY_JTOK_ARRAY))
        return bad(q->ld, &fa, "expected an array, got %s", q_type_name(q, a));
    uint32_t it = a + 1;
    for (int c = 0; c < q->j.t[a].size; c++, it = q->j.next[it]) {
        PathFrame fi = {&fa, NULL, g.n};
        FerrySchemaField *f = grow_next(&g);
        if (!f) {
            rc = ferry_error_set(q->ld->err, -ENOMEM, "out of memory");
            break;
        }
        if ((rc = q_field(q, &fi, it, depth, f)) < 0)
            break;
    }
    if (rc == 0) {
        d->nfields = g.n;
        d->fields = grow_finish(q, &g);
        if (g.n && !d->fields)
            rc = ferry_error_set(q->ld->err, -ENOMEM, "out of memory");
    }
    grow_release(&g);
    return rc;
}

static int q_subsections(QLoad *q, const PathFrame *at, uint32_t a, unsigned depth,
                         FerrySchemaDesc *d)
{
    FerrySchemaSubsection inl[8];
    Grow g = {.v = inl, .cap = 8, .elem = sizeof(FerrySchemaSubsection)};
    PathFrame sa = {at, "Subsections", 0};
    int rc = 0;
    if (!q_is(q, a, FERRY_JTOK_ARRAY))
        return bad(q->ld, &sa, "expected an array, got %s", q_type_name(q, a));
    uint32_t it = a + 1;
    for (int c = 0; c < q->j.t[a].size; c++, it = q->j.next[it]) {
        PathFrame si = {&sa, NULL, g.n};
        FerrySchemaSubsection *s = grow_next(&g);
        if (!s) {
            rc = ferry_error_set(q->ld->err, -ENOMEM, "out of memory");
            break;
        }
        if ((rc = q_desc(q, &si, it, depth + 1, &s->desc)) < 0)
            break;
    }
    if (rc == 0) {
        d->nsubsections = g.n;
        d->subsections = grow_finish(q, &g);
        if (g.n && !d->subsections)
            rc = ferry_error_set(q->ld->err, -ENOMEM, "out of memory");
    }
    grow_release(&g);
    return rc;
}

static int q_desc(QLoad *q, const PathFrame *at, uint32_t o, unsigned depth,
                  const FerrySchemaDesc **out)
{
    int rc = 0;
    bool has_name = false, has_version = false;
    if (depth > 32)
        return bad(q->ld, at, "descriptions nested too deeply");
    FerrySchemaDesc *d = model_alloc(q->ld->doc, sizeof(*d));
    if (!d)
        return ferry_error_set(q->ld->err, -ENOMEM, "out of memory");
    if (!q_is(q, o, FERRY_JTOK_OBJECT))
        return bad(q->ld, at, "expected a description object, got %s", q_type_name(q, o));
    FOR_MEMBERS(q, o, key)
    {
        uint32_t v = key + 1;
        if (KEY_IS("name")) {
            rc = q_string(q, at, "name", v, &d->name);
            has_name = true;
        } else if (KEY_IS("version_id")) {
            rc = q_u32(q, at, "version_id", v, &d->version);
            has_version = true;
        } else if (KEY_IS("minimum_version_id")) {
            rc = q_u32(q, at, "minimum_version_id", v, &d->min_version);
            d->has_min_version = true;
        } else if (KEY_IS("Fields")) {
            rc = q_fields(q, at, v, depth, d);
            d->has_fields = true;
        } else if (KEY_IS("Subsections")) {
            rc = q_subsections(q, at, v, depth, d);
            d->has_subsections = true;
        }
        if (rc < 0)
            return rc;
    }
    if (!has_name || !has_version)
        return bad(q->ld, at, "missing member \"%s\"", !has_name ? "name" : "version_id");
    *out = d;
    return 0;
}

static int q_section(QLoad *q, const PathFrame *at, uint32_t o, FerrySchemaSection *s)
{
    int rc = 0;
    const char *qname;
    if (!q_is(q, o, FERRY_JTOK_OBJECT))
        return bad(q->ld, at, "expected an object, got %s", q_type_name(q, o));
    FOR_MEMBERS(q, o, key)
    {
        uint32_t v = key + 1;
        if (KEY_IS("Name")) {
            rc = q_string(q, at, "Name", v, &qname);
            s->has_name = true;
        } else if (KEY_IS("version_id")) {
            rc = q_u32(q, at, "version_id", v, &s->version);
            s->has_version = true;
        } else if (KEY_IS("minimum_version_id")) {
            rc = q_u32(q, at, "minimum_version_id", v, &s->min_version);
            s->has_min_version = true;
        } else if (KEY_IS("Description")) {
            PathFrame here = {at, "Description", 0};
            rc = q_desc(q, &here, v, 0, &s->desc);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int load_qemu_tokens(QLoad *q)
{
    Loader *ld = q->ld;
    FerrySchemaDoc *doc = ld->doc;
    size_t cap = 256;
    int rc;
    doc->format = FERRY_SCHEMA_FORMAT_QEMU;
    if (!q_is(q, 0, FERRY_JTOK_OBJECT))
        return bad(ld, NULL,
                   "expected an object (a QEMU -dump-vmstate dump or a Ferry schema), got %s",
                   q_type_name(q, 0));
    if (!(doc->sections = calloc(cap, sizeof(*doc->sections))))
        return ferry_error_set(ld->err, -ENOMEM, "out of memory");
    FOR_MEMBERS(q, 0, key)
    {
        const char *name;
        if ((rc = q_copy_string(q, key, &name)) < 0)
            return rc;
        PathFrame at = {NULL, name, 0};
        if (KEY_IS("vmschkmachine")) {
            uint32_t o = key + 1;
            if (!q_is(q, o, FERRY_JTOK_OBJECT))
                return bad(ld, &at, "expected an object, got %s", q_type_name(q, o));
            uint32_t nm = ferry_jtok_get(&q->j, o, "Name");
            if (nm == FERRY_JTOK_NONE)
                return bad(ld, &at, "missing member \"Name\"");
            if ((rc = q_string(q, &at, "Name", nm, &doc->machine)) < 0)
                return rc;
            continue;
        }
        if (doc->nsections == cap) {
            FerrySchemaSection *s = realloc(doc->sections, 2 * cap * sizeof(*s));
            if (!s)
                return ferry_error_set(ld->err, -ENOMEM, "out of memory");
            memset(s + cap, 0, cap * sizeof(*s));
            doc->sections = s;
            cap *= 2;
        }
        FerrySchemaSection *s = &doc->sections[doc->nsections];
        s->name = name;
        if ((rc = q_section(q, &at, key + 1, s)) < 0)
            return rc;
        doc->nsections++;
    }
    return 0;
}

/* Tokenises the whole input first: a syntax error anywhere is reported with its line and column
 * before any member is read. */
static int load_qemu(Loader *ld, const char *buf, size_t len)
{
    QLoad q = {.ld = ld};
    size_t pos, line, col;
    const char *msg;
    int rc = ferry_jtok_parse(&q.j, buf, len, &pos, &msg);
    if (rc == -EINVAL) {
        ferry_jtok_line_col(buf, len, pos, &line, &col);
        ferry_error_set(ld->err, rc, "%s: line %zu, column %zu: %s", ld->doc->name, line, col, msg);
    } else if (rc < 0) {
        ferry_error_set(ld->err, rc, "%s: %s", ld->doc->name,
                        rc == -ENOMEM ? "out of memory" : "input too large");
    } else {
        rc = load_qemu_tokens(&q);
    }
    ferry_jtok_free(&q.j);
    return rc;
}

/* ---- Ferry schema JSON ---- */
static const char *const type_names[FERRY_TYPE__COUNT] = {
    [FERRY_TYPE_U8] = "u8",         [FERRY_TYPE_U16] = "u16",       [FERRY_TYPE_U32] = "u32",
    [FERRY_TYPE_U64] = "u64",       [FERRY_TYPE_I8] = "i8",         [FERRY_TYPE_I16] = "i16",
    [FERRY_TYPE_I32] = "i32",       [FERRY_TYPE_I64] = "i64",       [FERRY_TYPE_BOOL] = "bool",
    [FERRY_TYPE_BUFFER] = "buffer", [FERRY_TYPE_STRING] = "string", [FERRY_TYPE_STRUCT] = "struct",
    [FERRY_TYPE_LIST] = "list",
};
static const char *const array_names[] = {"none", "fixed", "var", "alloc"};

static int ferry_desc(Loader *ld, const PathFrame *at, const FerryJson *j, unsigned depth,
                      const FerrySchemaDesc **out);

static int ferry_field(Loader *ld, const PathFrame *at, const FerryJson *j, unsigned depth,
                       FerrySchemaField *f)
{
    int rc;
    const char *type = NULL, *array = "none";
    const FerryJson *dj;
    if (j->type != FERRY_JSON_OBJECT)
        return bad(ld, at, "expected a field object, got %s", json_type_name(j));
    if ((rc = get_string(ld, at, j, "name", true, false, &f->name)) < 0 ||
        (rc = get_string(ld, at, j, "type", true, false, &type)) < 0 ||
        (rc = get_string(ld, at, j, "array", false, false, &array)) < 0 ||
        (rc = get_uint(ld, at, j, "size", false, UINT64_MAX >> 1, &f->size)) < 0 ||
        (rc = get_uint(ld, at, j, "count", false, UINT32_MAX, &f->count)) < 0 ||
        (rc = get_string(ld, at, j, "count_field", false, true, &f->count_field)) < 0 ||
        (rc = get_uint(ld, at, j, "max", false, UINT32_MAX, &f->max)) < 0 ||
        (rc = get_u32(ld, at, j, "since", false, &f->since)) < 0 ||
        (rc = get_bool(ld, at, j, "exists", false, &f->exists)) < 0)
        return rc;
    f->typed = true;
    f->count_known = true;
    size_t t;
    for (t = 0; t < FERRY_TYPE__COUNT; t++)
        if (!strcmp(type, type_names[t]))
            break;
    PathFrame tat = {at, "type", 0}, aat = {at, "array", 0}, dat = {at, "description", 0};
    if (t == FERRY_TYPE__COUNT)
        return bad(ld, &tat, "unknown type \"%s\"", type);
    f->type = (FerryType)t;
    size_t a;
    for (a = 0; a < 4; a++)
        if (!strcmp(array, array_names[a]))
            break;
    if (a == 4)
        return bad(ld, &aat, "unknown array kind \"%s\"", array);
    f->array = (FerryArrayKind)a;
    dj = ferry_json_get(j, "description");
    bool nested = f->type == FERRY_TYPE_STRUCT || f->type == FERRY_TYPE_LIST;
    if (dj && dj->type != FERRY_JSON_NULL) {
        if (dj->type != FERRY_JSON_OBJECT)
            return bad(ld, &dat, "expected an object or null, got %s", json_type_name(dj));
        if (!nested)
            return bad(ld, &dat, "a %s field has no description", type);
        if ((rc = ferry_desc(ld, &dat, dj, depth + 1, &f->desc)) < 0)
            return rc;
    } else if (nested) {
        return bad(ld, at, "a %s field needs a description", type);
    }
    return 0;
}

static int ferry_desc(Loader *ld, const PathFrame *at, const FerryJson *j, unsigned depth,
                      const FerrySchemaDesc **out)
{
    int rc;
    const FerryJson *fields, *subs;
    if (depth > 32)
        return bad(ld, at, "descriptions nested too deeply");
    FerrySchemaDesc *d = model_alloc(ld->doc, sizeof(*d));
    if (!d)
        return ferry_error_set(ld->err, -ENOMEM, "out of memory");
    if ((rc = get_string(ld, at, j, "name", true, false, &d->name)) < 0 ||
        (rc = get_u32(ld, at, j, "version", true, &d->version)) < 0 ||
        (rc = get_u32(ld, at, j, "min_version", false, &d->min_version)) < 0 ||
        (rc = get_container(ld, at, j, "fields", FERRY_JSON_ARRAY, false, &fields)) < 0 ||
        (rc = get_container(ld, at, j, "subsections", FERRY_JSON_ARRAY, false, &subs)) < 0)
        return rc;
    d->has_min_version = d->has_fields = d->has_subsections = true;
    if (fields && fields->len) {
        PathFrame fa = {at, "fields", 0};
        FerrySchemaField *fs = model_alloc(ld->doc, fields->len * sizeof(*fs));
        if (!fs)
            return ferry_error_set(ld->err, -ENOMEM, "out of memory");
        for (uint32_t i = 0; i < fields->len; i++) {
            PathFrame fi = {&fa, NULL, i};
            if ((rc = ferry_field(ld, &fi, &fields->u.items[i], depth, &fs[i])) < 0)
                return rc;
        }
        d->fields = fs;
        d->nfields = fields->len;
    }
    if (subs && subs->len) {
        PathFrame sa = {at, "subsections", 0};
        FerrySchemaSubsection *ss = model_alloc(ld->doc, subs->len * sizeof(*ss));
        if (!ss)
            return ferry_error_set(ld->err, -ENOMEM, "out of memory");
        for (uint32_t i = 0; i < subs->len; i++) {
            PathFrame si = {&sa, NULL, i};
            const FerryJson *sj = &subs->u.items[i], *dj;
            if (sj->type != FERRY_JSON_OBJECT)
                return bad(ld, &si, "expected a subsection object, got %s", json_type_name(sj));
            if ((rc = get_bool(ld, &si, sj, "optional", false, &ss[i].optional)) < 0 ||
                (rc = get_container(ld, &si, sj, "description", FERRY_JSON_OBJECT, true, &dj)) < 0)
                return rc;
            PathFrame sd = {&si, "description", 0};
            if ((rc = ferry_desc(ld, &sd, dj, depth + 1, &ss[i].desc)) < 0)
                return rc;
        }
        d->subsections = ss;
        d->nsubsections = subs->len;
    }
    *out = d;
    return 0;
}

static int load_ferry(Loader *ld, const FerryJson *root)
{
    FerrySchemaDoc *doc = ld->doc;
    const char *format = NULL;
    uint64_t fv = 0;
    const FerryJson *sections;
    int rc;
    doc->format = FERRY_SCHEMA_FORMAT_FERRY;
    if ((rc = get_string(ld, NULL, root, "format", true, false, &format)) < 0)
        return rc;
    PathFrame fat = {NULL, "format", 0}, vat = {NULL, "format_version", 0};
    if (strcmp(format, "ferry-schema") != 0)
        return bad(ld, &fat, "unknown format \"%s\" (expected \"ferry-schema\")", format);
    if ((rc = get_uint(ld, NULL, root, "format_version", true, UINT32_MAX, &fv)) < 0)
        return rc;
    if (fv != FERRY_SCHEMA_FORMAT_VERSION)
        return bad(ld, &vat, "unsupported format_version %llu (this ferry reads %d)",
                   (unsigned long long)fv, FERRY_SCHEMA_FORMAT_VERSION);
    if ((rc = get_string(ld, NULL, root, "machine", false, true, &doc->machine)) < 0 ||
        (rc = get_container(ld, NULL, root, "sections", FERRY_JSON_ARRAY, true, &sections)) < 0)
        return rc;
    doc->sections = calloc(sections->len ? sections->len : 1, sizeof(*doc->sections));
    if (!doc->sections)
        return ferry_error_set(ld->err, -ENOMEM, "out of memory");
    PathFrame sa = {NULL, "sections", 0};
    for (uint32_t i = 0; i < sections->len; i++) {
        const FerryJson *e = &sections->u.items[i], *dj;
        PathFrame at = {&sa, NULL, i};
        FerrySchemaSection *s = &doc->sections[doc->nsections];
        if (e->type != FERRY_JSON_OBJECT)
            return bad(ld, &at, "expected a section object, got %s", json_type_name(e));
        if ((rc = get_string(ld, &at, e, "section", true, false, &s->name)) < 0 ||
            (rc = get_u32(ld, &at, e, "instance", false, &s->instance)) < 0 ||
            (rc = get_container(ld, &at, e, "description", FERRY_JSON_OBJECT, true, &dj)) < 0)
            return rc;
        PathFrame dat = {&at, "description", 0};
        if ((rc = ferry_desc(ld, &dat, dj, 0, &s->desc)) < 0)
            return rc;
        s->has_name = true;
        s->version = s->desc->version;
        s->min_version = s->desc->min_version;
        doc->nsections++;
    }
    return 0;
}

/* ---- index ---- */
static size_t slot_of(const char *name, uint32_t instance, size_t cap)
{
    uint64_t h = hash_str(instance, name);
    return (size_t)(h & (cap - 1));
}

static int build_index(Loader *ld)
{
    FerrySchemaDoc *doc = ld->doc;
    size_t cap = 16;
    while (cap < doc->nsections * 2)
        cap *= 2;
    doc->index = malloc(cap * sizeof(*doc->index));
    if (!doc->index)
        return ferry_error_set(ld->err, -ENOMEM, "out of memory");
    doc->index_cap = cap;
    for (size_t i = 0; i < cap; i++)
        doc->index[i] = -1;
    for (size_t i = 0; i < doc->nsections; i++) {
        const FerrySchemaSection *s = &doc->sections[i];
        size_t k = slot_of(s->name, s->instance, cap);
        while (doc->index[k] >= 0) {
            const FerrySchemaSection *o = &doc->sections[doc->index[k]];
            if (o->instance == s->instance && !strcmp(o->name, s->name)) {
                if (doc->format == FERRY_SCHEMA_FORMAT_QEMU) {
                    PathFrame at = {NULL, s->name, 0};
                    return bad(ld, &at, "duplicate section");
                }
                PathFrame sa = {NULL, "sections", 0}, at = {&sa, NULL, i};
                return bad(ld, &at, "duplicate section \"%s\" instance %u", s->name, s->instance);
            }
            k = (k + 1) & (cap - 1);
        }
        doc->index[k] = (long)i;
    }
    return 0;
}

long ferry_schema_doc_find(const FerrySchemaDoc *doc, const char *name, uint32_t instance)
{
    size_t k = slot_of(name, instance, doc->index_cap);
    while (doc->index[k] >= 0) {
        const FerrySchemaSection *o = &doc->sections[doc->index[k]];
        if (o->instance == instance && !strcmp(o->name, name))
            return doc->index[k];
        k = (k + 1) & (doc->index_cap - 1);
    }
    return -1;
}

/* Read-only mapping when the page holding the end of the file leaves room for the scanner's
 * padding (the kernel zero-fills it: that is the NUL sentinel); otherwise a heap copy. */
int ferry_schema_input_open(const char *path, FerrySchemaInput *in, FerryError *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = 0;
    *in = (FerrySchemaInput){0};
    if (fd < 0)
        return ferry_error_set(err, -errno, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        rc = ferry_error_set(err, -EINVAL, "%s: not a regular file", path);
        goto err_close;
    }
    in->len = (size_t)st.st_size;
    size_t page = (size_t)sysconf(_SC_PAGESIZE), tail = in->len % page;
    if (tail && tail <= page - FERRY_JSON_PADDING) {
        void *m = mmap(NULL, in->len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        if (m != MAP_FAILED) {
            in->buf = m;
            in->map_len = in->len;
            goto out_close;
        }
    }
    if (!(in->buf = malloc(in->len + FERRY_JSON_PADDING))) {
        rc = ferry_error_set(err, -ENOMEM, "%s: out of memory", path);
        goto err_close;
    }
    for (size_t got = 0; got < in->len;) {
        ssize_t n = read(fd, in->buf + got, in->len - got);
        if (n <= 0) {
            rc = ferry_error_set(err, n < 0 ? -errno : -EIO, "%s: read error", path);
            free(in->buf);
            in->buf = NULL;
            goto err_close;
        }
        got += (size_t)n;
    }
    memset(in->buf + in->len, 0, FERRY_JSON_PADDING);
out_close:
err_close:
    close(fd);
    return rc;
}

void ferry_schema_input_release(FerrySchemaInput *in)
{
    if (in->map_len)
        munmap(in->buf, in->map_len);
    else
        free(in->buf);
    *in = (FerrySchemaInput){0};
}

FerrySchemaDoc *ferry_schema_doc_load_input(const char *name, FerrySchemaInput *in, FerryError *err)
{
    FerrySchemaDoc *doc = calloc(1, sizeof(*doc));
    if (!doc || !(doc->name = strdup(name))) {
        free(doc);
        ferry_schema_input_release(in);
        ferry_error_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    Loader ld = {doc, err};
    char *buf = in->buf;
    size_t len = in->len;
    /* Ferry schemas open with "format" (schema-format.md's fixed key order); anything else is
     * read as a QEMU dump, streamed into the model without writing to the input. */
    const char *p = buf, *end = buf + len;
    p += strspn(p, " \t\r\n"); /* the buffer has its NUL after `len` bytes */
    bool ferry = false;
    if (p < end && *p == '{') {
        p++;
        p += strspn(p, " \t\r\n");
        for (const char *const *k = (const char *const[]){"\"format\"", "\"format_version\"",
                                                          "\"machine\"", "\"sections\"", NULL};
             *k && !ferry; k++)
            ferry = (size_t)(end - p) >= strlen(*k) && !memcmp(p, *k, strlen(*k));
    }
    if (!ferry) {
        int rc = load_qemu(&ld, buf, len);
        ferry_schema_input_release(in); /* the model holds copies of every string */
        if (rc < 0)
            goto err_free_doc;
    } else {
        /* The DOM parser decodes in place: it needs a private, writable copy. */
        if (in->map_len) {
            char *copy = malloc(len + FERRY_JSON_PADDING);
            if (!copy) {
                ferry_schema_input_release(in);
                ferry_error_set(err, -ENOMEM, "%s: out of memory", name);
                goto err_free_doc;
            }
            memcpy(copy, buf, len);
            ferry_schema_input_release(in);
            buf = copy;
        }
        *in = (FerrySchemaInput){0};
        doc->json = ferry_json_parse(buf, len, err); /* takes buf */
        if (!doc->json) {
            ferry_error_prefix(err, "%s: ", name);
            goto err_free_doc;
        }
        if (load_ferry(&ld, ferry_json_root(doc->json)) < 0)
            goto err_free_doc;
    }
    if (build_index(&ld) < 0)
        goto err_free_doc;
    return doc;

err_free_doc:
    ferry_schema_doc_free(doc);
    return NULL;
}

FerrySchemaDoc *ferry_schema_doc_load_buffer(const char *name, char *buf, size_t len,
                                             FerryError *err)
{
    memset(buf + len, 0, FERRY_JSON_PADDING);
    FerrySchemaInput in = {.buf = buf, .len = len};
    return ferry_schema_doc_load_input(name, &in, err);
}

FerrySchemaDoc *ferry_schema_doc_load_file(const char *path, FerryError *err)
{
    FerrySchemaInput in;
    if (ferry_schema_input_open(path, &in, err) < 0)
        return NULL;
    return ferry_schema_doc_load_input(path, &in, err);
}

void ferry_schema_doc_free(FerrySchemaDoc *doc)
{
    if (!doc)
        return;
    for (MChunk *c = doc->chunks, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    ferry_json_free(doc->json);
    free(doc->sections);
    free(doc->index);
    free(doc->name);
    free(doc);
}

FerrySchemaFormat ferry_schema_doc_format(const FerrySchemaDoc *doc)
{
    return doc->format;
}

const char *ferry_schema_doc_name(const FerrySchemaDoc *doc)
{
    return doc->name;
}

const char *ferry_schema_doc_machine(const FerrySchemaDoc *doc)
{
    return doc->machine;
}

size_t ferry_schema_doc_count(const FerrySchemaDoc *doc)
{
    return doc->nsections;
}

const FerrySchemaSection *ferry_schema_doc_section(const FerrySchemaDoc *doc, size_t i)
{
    return i < doc->nsections ? &doc->sections[i] : NULL;
}
