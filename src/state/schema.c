/* Registries of descriptions, their JSON schema export, and descriptions rebuilt from JSON.
 * The JSON layout is specified in docs/schema-format.md; key order is fixed for stable diffs. */
#include "ferry/state/schema.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct Entry {
    char *section;
    uint32_t instance;
    const FerryDesc *desc;
    void *opaque;
} Entry;

struct FerryRegistry {
    Entry *v;
    size_t n, cap;
};

FerryRegistry *ferry_registry_new(void)
{
    return calloc(1, sizeof(FerryRegistry));
}

void ferry_registry_free(FerryRegistry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->n; i++)
        free(reg->v[i].section);
    free(reg->v);
    free(reg);
}

static int cmp_key(const char *s, uint32_t inst, const Entry *e)
{
    int c = strcmp(s, e->section);
    if (c)
        return c;
    return inst < e->instance ? -1 : inst > e->instance;
}

/* Index of the first entry >= (s, inst). */
static size_t lower_bound(const FerryRegistry *reg, const char *s, uint32_t inst)
{
    size_t lo = 0, hi = reg->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cmp_key(s, inst, &reg->v[mid]) > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int registry_insert(FerryRegistry *reg, const char *section, uint32_t instance,
                           const FerryDesc *d, void *opaque, FerryError *err)
{
    size_t i = lower_bound(reg, section, instance);
    if (i < reg->n && !cmp_key(section, instance, &reg->v[i]))
        return ferry_error_set(err, -EEXIST, "section '%s' instance %u is registered twice",
                               section, instance);
    if (reg->n == reg->cap) {
        size_t cap = reg->cap ? reg->cap * 2 : 16;
        Entry *nv = realloc(reg->v, cap * sizeof(*nv));
        if (!nv)
            return ferry_error_set(err, -ENOMEM, "out of memory");
        reg->v = nv;
        reg->cap = cap;
    }
    char *name = strdup(section);
    if (!name)
        return ferry_error_set(err, -ENOMEM, "out of memory");
    memmove(&reg->v[i + 1], &reg->v[i], (reg->n - i) * sizeof(*reg->v));
    reg->v[i] = (Entry){name, instance, d, opaque};
    reg->n++;
    return 0;
}

int ferry_registry_add(FerryRegistry *reg, const char *section, uint32_t instance,
                       const FerryDesc *d, void *opaque, FerryError *err)
{
    if (!section || !section[0] || strlen(section) > 255)
        return ferry_error_set(err, -EINVAL, "section name must be 1..255 bytes");
    int rc = ferry_desc_check(d, err);
    if (rc)
        return ferry_error_prefix(err, "section '%s': ", section);
    return registry_insert(reg, section, instance, d, opaque, err);
}

int ferry_registry_remove(FerryRegistry *reg, const char *section, uint32_t instance)
{
    size_t i = lower_bound(reg, section, instance);
    if (i >= reg->n || cmp_key(section, instance, &reg->v[i]))
        return -ENOENT;
    free(reg->v[i].section);
    memmove(&reg->v[i], &reg->v[i + 1], (reg->n - i - 1) * sizeof(*reg->v));
    reg->n--;
    return 0;
}

const FerryDesc *ferry_registry_find(const FerryRegistry *reg, const char *section,
                                     uint32_t instance, void **opaque)
{
    size_t i = lower_bound(reg, section, instance);
    if (i >= reg->n || cmp_key(section, instance, &reg->v[i]))
        return NULL;
    if (opaque)
        *opaque = reg->v[i].opaque;
    return reg->v[i].desc;
}

size_t ferry_registry_count(const FerryRegistry *reg)
{
    return reg->n;
}

const FerryDesc *ferry_registry_entry(const FerryRegistry *reg, size_t i, const char **section,
                                      uint32_t *instance, void **opaque)
{
    if (i >= reg->n)
        return NULL;
    if (section)
        *section = reg->v[i].section;
    if (instance)
        *instance = reg->v[i].instance;
    if (opaque)
        *opaque = reg->v[i].opaque;
    return reg->v[i].desc;
}

/* ---- export ---------------------------------------------------------------------------------- */

static const char *const array_names[] = {"none", "fixed", "var", "alloc"};

static json_t *field_json(const FerryField *f)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(f->name));
    json_object_set_new(o, "type", json_string(ferry_type_name(f->type)));
    json_object_set_new(o, "size", json_integer((json_int_t)f->size));
    json_object_set_new(o, "array", json_string(array_names[f->array]));
    json_object_set_new(o, "count", json_integer(f->count));
    json_object_set_new(o, "count_field",
                        f->array == FERRY_ARRAY_VAR || f->array == FERRY_ARRAY_ALLOC
                            ? json_string(f->count_name ? f->count_name : "")
                            : json_null());
    json_object_set_new(o, "max", json_integer(f->max));
    json_object_set_new(o, "since", json_integer(f->since));
    json_object_set_new(o, "exists", json_boolean(f->exists != NULL));
    json_object_set_new(o, "description",
                        f->desc ? ferry_schema_desc_to_json(f->desc) : json_null());
    return o;
}

json_t *ferry_schema_desc_to_json(const FerryDesc *d)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(d->name));
    json_object_set_new(o, "version", json_integer(d->version));
    json_object_set_new(o, "min_version", json_integer(d->min_version));
    json_t *fields = json_array();
    for (const FerryField *f = d->fields; f && f->name; f++)
        json_array_append_new(fields, field_json(f));
    json_object_set_new(o, "fields", fields);
    json_t *subs = json_array();
    for (size_t i = 0; d->subsections && d->subsections[i].desc; i++) {
        json_t *s = json_object();
        json_object_set_new(s, "optional", json_boolean(d->subsections[i].optional));
        json_object_set_new(s, "description", ferry_schema_desc_to_json(d->subsections[i].desc));
        json_array_append_new(subs, s);
    }
    json_object_set_new(o, "subsections", subs);
    return o;
}

json_t *ferry_schema_export(const FerryRegistry *reg, const char *machine)
{
    json_t *root = json_object();
    json_object_set_new(root, "format", json_string("ferry-schema"));
    json_object_set_new(root, "format_version", json_integer(FERRY_SCHEMA_FORMAT_VERSION));
    json_object_set_new(root, "machine", machine ? json_string(machine) : json_null());
    json_t *secs = json_array();
    for (size_t i = 0; i < reg->n; i++) {
        json_t *s = json_object();
        json_object_set_new(s, "section", json_string(reg->v[i].section));
        json_object_set_new(s, "instance", json_integer(reg->v[i].instance));
        json_object_set_new(s, "description", ferry_schema_desc_to_json(reg->v[i].desc));
        json_array_append_new(secs, s);
    }
    json_object_set_new(root, "sections", secs);
    return root;
}

char *ferry_schema_dumps(const FerryRegistry *reg, const char *machine)
{
    json_t *root = ferry_schema_export(reg, machine);
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!s)
        return NULL;
    size_t n = strlen(s);
    char *out = realloc(s, n + 2);
    if (!out) {
        free(s);
        return NULL;
    }
    out[n] = '\n';
    out[n + 1] = '\0';
    return out;
}

/* ---- import ---------------------------------------------------------------------------------- */

/* Every allocation of an imported schema hangs off one arena list, freed together. */
typedef struct Alloc {
    struct Alloc *next;
    max_align_t data[];
} Alloc;

struct FerrySchema {
    FerryRegistry *reg;
    char *machine;
    Alloc *allocs;
};

static void *arena(FerrySchema *s, size_t n)
{
    Alloc *a = calloc(1, sizeof(Alloc) + n);
    if (!a)
        return NULL;
    a->next = s->allocs;
    s->allocs = a;
    return a->data;
}

static char *arena_str(FerrySchema *s, const char *str)
{
    size_t n = strlen(str) + 1;
    char *p = arena(s, n);
    if (p)
        memcpy(p, str, n);
    return p;
}

/* Imported fields with an existence test: the presence byte decides, this only marks them. */
static bool imported_exists(const void *opaque, uint32_t version)
{
    (void)opaque;
    (void)version;
    return true;
}

#define IMPORT_FAIL(...) (ferry_error_set(err, -EINVAL, __VA_ARGS__), NULL)

static const FerryDesc *import_desc(FerrySchema *s, json_t *j, const char *path, int depth,
                                    FerryError *err);

static int get_uint_key(json_t *o, const char *key, uint64_t max, uint64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int import_field(FerrySchema *s, json_t *j, FerryField *f, const char *path, int depth,
                        FerryError *err)
{
    const char *name = json_string_value(json_object_get(j, "name"));
    const char *type = json_string_value(json_object_get(j, "type"));
    const char *array = json_string_value(json_object_get(j, "array"));
    uint64_t size, count, max, since;
    if (!name || !type || !array || get_uint_key(j, "size", UINT32_MAX, &size) ||
        get_uint_key(j, "count", UINT32_MAX, &count) || get_uint_key(j, "max", UINT32_MAX, &max) ||
        get_uint_key(j, "since", UINT32_MAX, &since))
        return ferry_error_set(err, -EINVAL,
                               "%s: field needs name, type, array, size, count, max, since", path);
    f->name = arena_str(s, name);
    f->type = FERRY_TYPE__COUNT;
    for (int t = 0; t < FERRY_TYPE__COUNT; t++)
        if (!strcmp(type, ferry_type_name((FerryType)t)))
            f->type = (FerryType)t;
    if (f->type == FERRY_TYPE__COUNT)
        return ferry_error_set(err, -EINVAL, "%s.%s: unknown type '%s'", path, name, type);
    f->array = 4;
    for (int a = 0; a < 4; a++)
        if (!strcmp(array, array_names[a]))
            f->array = (FerryArrayKind)a;
    if ((int)f->array == 4)
        return ferry_error_set(err, -EINVAL, "%s.%s: unknown array kind '%s'", path, name, array);
    f->size = size;
    f->count = (uint32_t)count;
    f->max = (uint32_t)max;
    f->since = (uint32_t)since;
    if (json_is_true(json_object_get(j, "exists")))
        f->exists = imported_exists;
    const char *cf = json_string_value(json_object_get(j, "count_field"));
    f->count_name = cf ? arena_str(s, cf) : NULL;
    json_t *dj = json_object_get(j, "description");
    if (f->type == FERRY_TYPE_STRUCT || f->type == FERRY_TYPE_LIST) {
        char sub[512];
        snprintf(sub, sizeof(sub), "%s.%s", path, name);
        f->desc = import_desc(s, dj, sub, depth + 1, err);
        if (!f->desc)
            return -EINVAL;
    }
    if (!f->name || (cf && !f->count_name))
        return ferry_error_set(err, -ENOMEM, "out of memory");
    if (ferry_type_wire_size(f->type) && f->type != FERRY_TYPE_BOOL &&
        f->size != ferry_type_wire_size(f->type))
        return ferry_error_set(err, -EINVAL, "%s.%s: size %zu does not match type %s", path, name,
                               f->size, type);
    if ((f->type == FERRY_TYPE_BUFFER || f->type == FERRY_TYPE_STRING) && f->size == 0)
        return ferry_error_set(err, -EINVAL, "%s.%s: zero size", path, name);
    return 0;
}

static const FerryDesc *import_desc(FerrySchema *s, json_t *j, const char *path, int depth,
                                    FerryError *err)
{
    if (depth > 16)
        return IMPORT_FAIL("%s: descriptions nest too deeply", path);
    const char *name = json_string_value(json_object_get(j, "name"));
    uint64_t version, min_version;
    json_t *fields = json_object_get(j, "fields");
    json_t *subs = json_object_get(j, "subsections");
    if (!json_is_object(j) || !name || get_uint_key(j, "version", UINT32_MAX, &version) ||
        get_uint_key(j, "min_version", UINT32_MAX, &min_version) || !json_is_array(fields) ||
        !json_is_array(subs))
        return IMPORT_FAIL("%s: description needs name, version, min_version, fields, "
                           "subsections",
                           path);
    FerryDesc *d = arena(s, sizeof(*d));
    FerryField *fv = arena(s, (json_array_size(fields) + 1) * sizeof(*fv));
    FerrySubsection *sv = arena(s, (json_array_size(subs) + 1) * sizeof(*sv));
    if (!d || !fv || !sv || !(d->name = arena_str(s, name)))
        return IMPORT_FAIL("out of memory");
    d->version = (uint32_t)version;
    d->min_version = (uint32_t)min_version;
    d->fields = fv;
    d->subsections = sv;
    char here[512];
    size_t i;
    json_t *v;
    json_array_foreach(fields, i, v)
    {
        snprintf(here, sizeof(here), "%s.fields[%zu]", path, i);
        if (!json_is_object(v) || import_field(s, v, &fv[i], here, depth, err))
            return json_is_object(v) ? NULL : IMPORT_FAIL("%s: not an object", here);
    }
    json_array_foreach(subs, i, v)
    {
        snprintf(here, sizeof(here), "%s.subsections[%zu]", path, i);
        sv[i].optional = json_is_true(json_object_get(v, "optional"));
        sv[i].desc = import_desc(s, json_object_get(v, "description"), here, depth + 1, err);
        if (!sv[i].desc)
            return NULL;
    }
    return d;
}

FerrySchema *ferry_schema_import(json_t *schema, FerryError *err)
{
    const char *fmt = json_string_value(json_object_get(schema, "format"));
    if (!fmt || strcmp(fmt, "ferry-schema")) {
        ferry_error_set(err, -EINVAL, "schema: 'format' is not \"ferry-schema\"");
        return NULL;
    }
    json_t *fv = json_object_get(schema, "format_version");
    if (!json_is_integer(fv) || json_integer_value(fv) != FERRY_SCHEMA_FORMAT_VERSION) {
        ferry_error_set(err, -EPROTONOSUPPORT, "schema: format_version must be %d",
                        FERRY_SCHEMA_FORMAT_VERSION);
        return NULL;
    }
    json_t *secs = json_object_get(schema, "sections");
    if (!json_is_array(secs)) {
        ferry_error_set(err, -EINVAL, "schema: 'sections' must be an array");
        return NULL;
    }
    FerrySchema *s = calloc(1, sizeof(*s));
    if (!s || !(s->reg = ferry_registry_new())) {
        free(s);
        ferry_error_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    const char *machine = json_string_value(json_object_get(schema, "machine"));
    if (machine)
        s->machine = strdup(machine);
    size_t i;
    json_t *v;
    json_array_foreach(secs, i, v)
    {
        char path[64];
        snprintf(path, sizeof(path), "sections[%zu]", i);
        const char *name = json_string_value(json_object_get(v, "section"));
        uint64_t inst;
        if (!name || get_uint_key(v, "instance", UINT32_MAX, &inst)) {
            ferry_error_set(err, -EINVAL, "schema: %s needs 'section' and 'instance'", path);
            goto fail;
        }
        const FerryDesc *d = import_desc(s, json_object_get(v, "description"), path, 0, err);
        if (!d || registry_insert(s->reg, name, (uint32_t)inst, d, NULL, err))
            goto fail;
    }
    return s;
fail:
    ferry_schema_free(s);
    return NULL;
}

void ferry_schema_free(FerrySchema *s)
{
    if (!s)
        return;
    ferry_registry_free(s->reg);
    free(s->machine);
    while (s->allocs) {
        Alloc *n = s->allocs->next;
        free(s->allocs);
        s->allocs = n;
    }
    free(s);
}

const FerryRegistry *ferry_schema_registry(const FerrySchema *s)
{
    return s->reg;
}

const char *ferry_schema_machine(const FerrySchema *s)
{
    return s->machine;
}
