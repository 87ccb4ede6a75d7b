/* The device-state codec: saves and loads C structs described by FerryDesc tables.
 * Wire format: docs/stream-format.md, "Device payload". Little-endian, self-delimiting. */
#include "codec-int.h"

#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- context: paths for error messages ------------------------------------------------------ */

void codec_push(CodecCtx *c, const char *name)
{
    assert(c->depth < CODEC_MAX_DEPTH);
    c->stack[c->depth].name = name;
    c->stack[c->depth].index = -1;
    c->depth++;
}

void codec_pop(CodecCtx *c)
{
    assert(c->depth > 0);
    c->depth--;
}

void codec_path(const CodecCtx *c, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < c->depth && n < len; i++) {
        const CodecFrame *f = &c->stack[i];
        n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? "." : "", f->name);
        if (f->index >= 0 && n < len)
            n += (size_t)snprintf(buf + n, len - n, "[%" PRId64 "]", f->index);
    }
}

int codec_fail(CodecCtx *c, int code, const char *fmt, ...)
{
    char path[256], msg[FERRY_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    codec_path(c, path, sizeof(path));
    return ferry_error_set(c->err, code, "%s: %s (offset 0x%" PRIx64 ")", path, msg,
                           ferry_io_offset(c->io));
}

int codec_wrap(CodecCtx *c, int rc)
{
    char path[256];
    codec_path(c, path, sizeof(path));
    ferry_error_prefix(c->err, "%s: ", path);
    return rc;
}

void codec_warn(CodecCtx *c, const char *fmt, ...)
{
    if (!c->opts || !c->opts->warn)
        return;
    char path[256], msg[FERRY_ERROR_MSG_MAX], line[FERRY_ERROR_MSG_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    codec_path(c, path, sizeof(path));
    snprintf(line, sizeof(line), "%s: %s", path, msg);
    c->opts->warn(c->opts->warn_ctx, line);
}

/* ---- shared wire primitives ------------------------------------------------------------------ */

#define RD(c, p, n)                                                                                \
    do {                                                                                           \
        int rc_ = ferry_io__read((c)->io, (p), (n), (c)->err);                                     \
        if (rc_)                                                                                   \
            return codec_wrap((c), rc_);                                                           \
    } while (0)
#define WR(c, p, n)                                                                                \
    do {                                                                                           \
        int rc_ = ferry_io__write((c)->io, (p), (n), (c)->err);                                    \
        if (rc_)                                                                                   \
            return codec_wrap((c), rc_);                                                           \
    } while (0)

static int rd_u32(CodecCtx *c, uint32_t *v)
{
    RD(c, v, 4);
    *v = le32toh(*v);
    return 0;
}

static int wr_u32(CodecCtx *c, uint32_t v)
{
    v = htole32(v);
    WR(c, &v, 4);
    return 0;
}

static int wr_u8(CodecCtx *c, uint8_t v)
{
    WR(c, &v, 1);
    return 0;
}

int codec_version_check(CodecCtx *c, const FerryDesc *d, uint32_t version)
{
    if (version > d->version)
        return codec_fail(c, -EPROTONOSUPPORT,
                          "stream has version %u, newer than this build's version %u", version,
                          d->version);
    if (version < d->min_version)
        return codec_fail(c, -EPROTONOSUPPORT,
                          "stream has version %u, older than the oldest version %u this build "
                          "loads",
                          version, d->min_version);
    return 0;
}

int codec_read_count(CodecCtx *c, const FerryField *f, uint32_t *n)
{
    int rc = rd_u32(c, n);
    if (rc)
        return rc;
    switch (f->array) {
    case FERRY_ARRAY_FIXED:
        if (*n != f->count)
            return codec_fail(c, -EBADMSG, "stream has %u elements, this build has %u", *n,
                              f->count);
        break;
    case FERRY_ARRAY_VAR:
        if (*n > f->count)
            return codec_fail(c, -EBADMSG, "stream has %u elements, capacity is %u", *n, f->count);
        break;
    case FERRY_ARRAY_ALLOC:
        if (*n > f->max)
            return codec_fail(c, -E2BIG, "stream has %u elements, at most %u are accepted", *n,
                              f->max);
        break;
    case FERRY_ARRAY_NONE:
        assert(!"count of a single field");
    }
    return 0;
}

int codec_read_bool(CodecCtx *c, uint8_t *v)
{
    RD(c, v, 1);
    if (*v > 1)
        return codec_fail(c, -EBADMSG, "invalid bool value 0x%02x", *v);
    return 0;
}

int codec_read_presence(CodecCtx *c, bool *present)
{
    uint8_t v;
    int rc = codec_read_bool(c, &v);
    *present = v;
    return rc;
}

int codec_read_sub_header(CodecCtx *c, uint8_t *tag, char *name, uint32_t *version, uint32_t *len)
{
    RD(c, tag, 1);
    if (*tag == SUB_END)
        return 0;
    if (*tag != SUB_MANDATORY && *tag != SUB_OPTIONAL)
        return codec_fail(c, -EBADMSG, "invalid subsection marker 0x%02x", *tag);
    uint8_t nlen;
    RD(c, &nlen, 1);
    if (nlen == 0)
        return codec_fail(c, -EBADMSG, "subsection with an empty name");
    RD(c, name, nlen);
    name[nlen] = '\0';
    if (memchr(name, '\0', nlen))
        return codec_fail(c, -EBADMSG, "subsection name contains a NUL byte");
    int rc = rd_u32(c, version);
    if (!rc)
        rc = rd_u32(c, len);
    return rc;
}

const FerrySubsection *codec_find_sub(const FerryDesc *d, const char *name, size_t *index)
{
    for (size_t i = 0; d->subsections && d->subsections[i].desc; i++)
        if (!strcmp(d->subsections[i].desc->name, name)) {
            *index = i;
            return &d->subsections[i];
        }
    return NULL;
}

/* ---- helpers on described memory --------------------------------------------------------------
 */

static uint64_t get_uint(const void *p, size_t size)
{
    switch (size) {
    case 1:
        return *(const uint8_t *)p;
    case 2:
        return *(const uint16_t *)p;
    case 4:
        return *(const uint32_t *)p;
    default:
        return *(const uint64_t *)p;
    }
}

static bool is_scalar(FerryType t)
{
    return t <= FERRY_TYPE_BOOL;
}

size_t ferry_type_wire_size(FerryType t)
{
    static const uint8_t sizes[] = {1, 2, 4, 8, 1, 2, 4, 8, 1};
    return is_scalar(t) ? sizes[t] : 0;
}

const char *ferry_type_name(FerryType t)
{
    static const char *const names[] = {"u8",  "u16",  "u32",    "u64",    "i8",     "i16", "i32",
                                        "i64", "bool", "buffer", "string", "struct", "list"};
    return t < FERRY_TYPE__COUNT ? names[t] : "?";
}

/* Elements in memory of an array field (count member for VAR/ALLOC). */
static uint64_t mem_count(const FerryField *f, const uint8_t *base)
{
    switch (f->array) {
    case FERRY_ARRAY_NONE:
        return 1;
    case FERRY_ARRAY_FIXED:
        return f->count;
    default:
        return get_uint(base + f->count_offset, f->count_size);
    }
}

static void set_uint(void *p, size_t size, uint64_t v)
{
    switch (size) {
    case 1:
        *(uint8_t *)p = (uint8_t)v;
        break;
    case 2:
        *(uint16_t *)p = (uint16_t)v;
        break;
    case 4:
        *(uint32_t *)p = (uint32_t)v;
        break;
    default:
        *(uint64_t *)p = v;
        break;
    }
}

/* ---- flat descriptions: the fast path for arrays and lists of small structs -------------------
 */

/* Wire bytes of one element of `d` if it is flat at `version` (scalars only, no arrays, no
 * predicates, hooks or subsections), else 0. Such elements are a fixed run of bytes plus the
 * empty subsection block, so they are copied field by field without the generic walk. */
static size_t flat_size(const FerryDesc *d, uint32_t version)
{
    if (d->pre_save || d->post_save || d->pre_load || d->post_load ||
        (d->subsections && d->subsections[0].desc))
        return 0;
    size_t n = 0;
    for (const FerryField *f = d->fields; f && f->name; f++) {
        if (!is_scalar(f->type) || f->array != FERRY_ARRAY_NONE || f->exists || f->since > version)
            return 0;
        n += f->size;
    }
    return n + 1;
}

static int save_flat(CodecCtx *c, const FerryDesc *d, const uint8_t *p, size_t esize, uint64_t n,
                     size_t wsize)
{
    for (uint64_t i = 0; i < n; i++, p += esize) {
        FerryIO *io = c->io;
        int rc = ferry_io__reserve(io, wsize, c->err);
        if (rc < 0)
            return codec_wrap(c, rc);
        if (rc > 0) { /* no room in this writer's buffer: plain writes */
            for (const FerryField *f = d->fields; f->name; f++)
                WR(c, p + f->offset, f->size);
            WR(c, "", 1);
            continue;
        }
        uint8_t *out = io->buf + io->pos;
        for (const FerryField *f = d->fields; f->name; f++) {
            if (f->type == FERRY_TYPE_BOOL)
                *out = *(const bool *)(p + f->offset) ? 1 : 0;
            else
                memcpy(out, p + f->offset, f->size);
            out += f->size;
        }
        *out = SUB_END;
        io->pos += wsize;
    }
    return 0;
}

static int load_desc(CodecCtx *c, const FerryDesc *d, void *opaque, uint32_t version);

static int load_flat(CodecCtx *c, const FerryDesc *d, uint8_t *p, size_t esize, uint32_t n,
                     uint32_t version, size_t wsize, bool indexed)
{
    for (uint32_t i = 0; i < n; i++, p += esize) {
        FerryIO *io = c->io;
        if (io->end - io->pos < wsize || io->base + io->pos + wsize > io->limit ||
            memchr(io->win + io->pos + wsize - 1, SUB_END, 1) == NULL) {
            /* Short window, frame end or subsections present: the generic walk reports it. */
            if (indexed)
                codec_index(c, i);
            int rc = load_desc(c, d, p, version);
            if (rc)
                return rc;
            continue;
        }
        const uint8_t *in = io->win + io->pos;
        for (const FerryField *f = d->fields; f->name; f++) {
            if (f->type == FERRY_TYPE_BOOL) {
                if (*in > 1) {
                    codec_index(c, i);
                    codec_push(c, f->name);
                    io->pos = (size_t)(in - io->win) + 1;
                    return codec_fail(c, -EBADMSG, "invalid bool value 0x%02x", *in);
                }
                *(bool *)(p + f->offset) = *in;
            } else {
                memcpy(p + f->offset, in, f->size);
            }
            in += f->size;
        }
        io->pos += wsize;
    }
    return 0;
}

/* ---- save -------------------------------------------------------------------------------------
 */

static int save_desc(CodecCtx *c, const FerryDesc *d, void *opaque);

static int save_scalars(CodecCtx *c, const FerryField *f, const uint8_t *p, uint64_t n)
{
    if (f->type == FERRY_TYPE_BOOL) {
        for (uint64_t i = 0; i < n; i++) {
            uint8_t v = *(const bool *)(p + i) ? 1 : 0;
            WR(c, &v, 1);
        }
        return 0;
    }
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* Memory already has the wire layout: one copy for the whole array. */
    WR(c, p, (size_t)n * f->size);
#else
#error "Ferry targets little-endian hosts (x86-64 KVM)"
#endif
    return 0;
}

static int save_field(CodecCtx *c, const FerryField *f, uint8_t *base)
{
    uint8_t *p = base + f->offset;
    uint64_t n = mem_count(f, base);
    if (f->array == FERRY_ARRAY_VAR && n > f->count)
        return codec_fail(c, -EINVAL, "count field '%s' is %" PRIu64 ", capacity is %u",
                          f->count_name, n, f->count);
    if (f->array == FERRY_ARRAY_ALLOC) {
        if (n > f->max)
            return codec_fail(c, -EINVAL, "count field '%s' is %" PRIu64 ", maximum is %u",
                              f->count_name, n, f->max);
        p = *(uint8_t **)p;
        if (n && !p)
            return codec_fail(c, -EINVAL, "%" PRIu64 " elements but a NULL pointer", n);
    }
    int rc = 0;
    if (f->array != FERRY_ARRAY_NONE && (rc = wr_u32(c, (uint32_t)n)))
        return rc;
    switch (f->type) {
    case FERRY_TYPE_BUFFER:
        WR(c, p, (size_t)n * f->size);
        return 0;
    case FERRY_TYPE_STRING:
        for (uint64_t i = 0; i < n; i++) {
            const char *s = (const char *)p + i * f->size;
            size_t len = strnlen(s, f->size);
            if (len == f->size)
                return codec_fail(c, -EINVAL, "string is not NUL-terminated within %zu bytes",
                                  f->size);
            if ((rc = wr_u32(c, (uint32_t)len)))
                return rc;
            WR(c, s, len);
        }
        return 0;
    case FERRY_TYPE_STRUCT:
        if ((rc = wr_u32(c, f->desc->version)))
            return rc;
        size_t flat = n > 1 ? flat_size(f->desc, f->desc->version) : 0;
        if (flat)
            return save_flat(c, f->desc, p, f->size, n, flat);
        for (uint64_t i = 0; i < n; i++) {
            if (f->array != FERRY_ARRAY_NONE)
                codec_index(c, (int64_t)i);
            if ((rc = save_desc(c, f->desc, p + i * f->size)))
                return rc;
        }
        return 0;
    case FERRY_TYPE_LIST: {
        const FerryList *l = (const FerryList *)p;
        if (l->len > f->max)
            return codec_fail(c, -EINVAL, "list has %zu elements, maximum is %u", l->len, f->max);
        if ((rc = wr_u32(c, f->desc->version)) || (rc = wr_u32(c, (uint32_t)l->len)))
            return rc;
        int64_t i = 0;
        FERRY_LIST_FOREACH(l, it)
        {
            codec_index(c, i++);
            if ((rc = save_desc(c, f->desc, (uint8_t *)it - f->link_offset)))
                return rc;
        }
        return 0;
    }
    default:
        return save_scalars(c, f, p, n);
    }
}

static int save_subsections(CodecCtx *c, const FerryDesc *d, void *opaque)
{
    for (size_t i = 0; d->subsections && d->subsections[i].desc; i++) {
        const FerrySubsection *s = &d->subsections[i];
        if (s->needed && !s->needed(opaque))
            continue;
        /* The frame carries the payload length, so encode into a scratch buffer first. */
        FerryIO *outer = c->io;
        FerryIO *tmp = ferry_io_mem_writer();
        if (!tmp)
            return codec_fail(c, -ENOMEM, "out of memory");
        c->io = tmp;
        int rc = save_desc(c, s->desc, opaque);
        c->io = outer;
        size_t len;
        const uint8_t *data = ferry_io_mem_data(tmp, &len);
        size_t nlen = strlen(s->desc->name);
        if (!rc && len > UINT32_MAX)
            rc = codec_fail(c, -E2BIG, "subsection '%s' is larger than 4 GiB", s->desc->name);
        if (!rc)
            rc = wr_u8(c, s->optional ? SUB_OPTIONAL : SUB_MANDATORY);
        if (!rc)
            rc = wr_u8(c, (uint8_t)nlen);
        if (!rc)
            rc = ferry_io__write(c->io, s->desc->name, nlen, c->err);
        if (!rc)
            rc = wr_u32(c, s->desc->version);
        if (!rc)
            rc = wr_u32(c, (uint32_t)len);
        if (!rc)
            rc = ferry_io__write(c->io, data, len, c->err);
        ferry_io_destroy(tmp);
        if (rc)
            return rc;
    }
    return wr_u8(c, SUB_END);
}

static int run_hook(CodecCtx *c, FerryHookFn hook, const char *what, void *opaque, uint32_t v)
{
    if (!hook)
        return 0;
    int rc = hook(opaque, v, c->err);
    if (rc) {
        assert(rc < 0);
        char path[256], msg[FERRY_ERROR_MSG_MAX];
        codec_path(c, path, sizeof(path));
        snprintf(msg, sizeof(msg), "%s", c->err->msg);
        /* Like every other codec error: what (path, hook) and where (stream offset). */
        ferry_error_set(c->err, rc, "%s: %s failed: %s (offset 0x%" PRIx64 ")", path, what, msg,
                        ferry_io_offset(c->io));
    }
    return rc;
}

static int save_desc(CodecCtx *c, const FerryDesc *d, void *opaque)
{
    int rc = run_hook(c, d->pre_save, "pre_save", opaque, d->version);
    if (rc)
        return rc;
    uint8_t *base = opaque;
    for (const FerryField *f = d->fields; f && f->name && !rc; f++) {
        codec_push(c, f->name);
        if (f->exists) {
            bool present = f->exists(opaque, d->version);
            rc = wr_u8(c, present);
            if (!rc && present)
                rc = save_field(c, f, base);
        } else {
            rc = save_field(c, f, base);
        }
        codec_pop(c);
    }
    if (!rc)
        rc = save_subsections(c, d, opaque);
    /* post_save always runs once pre_save succeeded, so it can undo what pre_save prepared. */
    FerryError tmp;
    ferry_error_clear(&tmp);
    if (d->post_save) {
        FerryError *keep = c->err;
        if (rc)
            c->err = &tmp;
        int prc = run_hook(c, d->post_save, "post_save", opaque, d->version);
        c->err = keep;
        if (!rc)
            rc = prc;
    }
    return rc;
}

int ferry_state_save(const FerryDesc *d, void *opaque, FerryIO *io, FerryError *err)
{
    CodecCtx c = {.io = io, .err = err};
    codec_push(&c, d->name);
    return save_desc(&c, d, opaque);
}

/* ---- load -------------------------------------------------------------------------------------
 */

static void release_list(const FerryField *f, FerryList *l)
{
    FerryLink *n;
    while ((n = ferry_list_pop_head(l))) {
        void *elem = (uint8_t *)n - f->link_offset;
        if (f->release) {
            f->release(elem);
        } else {
            ferry_state_release(f->desc, elem);
            free(elem);
        }
    }
}

static int load_scalars(CodecCtx *c, const FerryField *f, uint8_t *p, uint64_t n)
{
    if (f->type == FERRY_TYPE_BOOL) {
        for (uint64_t i = 0; i < n; i++) {
            uint8_t v;
            if (f->array != FERRY_ARRAY_NONE)
                codec_index(c, (int64_t)i);
            int rc = codec_read_bool(c, &v);
            if (rc)
                return rc;
            ((bool *)p)[i] = v;
        }
        return 0;
    }
    RD(c, p, (size_t)n * f->size);
    return 0;
}

static int load_list(CodecCtx *c, const FerryField *f, FerryList *l)
{
    uint32_t version, n;
    int rc = rd_u32(c, &version);
    if (!rc)
        rc = rd_u32(c, &n);
    if (rc)
        return rc;
    if (n > f->max)
        return codec_fail(c, -E2BIG, "stream has %u list elements, at most %u are accepted", n,
                          f->max);
    /* Replace, never append: stale destination elements must not survive (QEMU's QTAILQ
     * loader appended, which kept stale hotplug events; DESIGN §2). */
    release_list(f, l);
    for (uint32_t i = 0; i < n; i++) {
        codec_index(c, i);
        uint8_t *elem = calloc(1, f->size);
        if (!elem)
            return codec_fail(c, -ENOMEM, "out of memory for a %zu-byte element", f->size);
        rc = load_desc(c, f->desc, elem, version);
        if (rc) {
            ferry_state_release(f->desc, elem);
            free(elem);
            return rc;
        }
        ferry_list_push_tail(l, (FerryLink *)(elem + f->link_offset));
    }
    return 0;
}

static int load_field(CodecCtx *c, const FerryField *f, uint8_t *base)
{
    uint8_t *p = base + f->offset;
    uint32_t n = 1;
    int rc = 0;
    if (f->type == FERRY_TYPE_LIST)
        return load_list(c, f, (FerryList *)p);
    if (f->array != FERRY_ARRAY_NONE && (rc = codec_read_count(c, f, &n)))
        return rc;
    if (f->array == FERRY_ARRAY_VAR || f->array == FERRY_ARRAY_ALLOC) {
        uint64_t mine = get_uint(base + f->count_offset, f->count_size);
        if (mine != n)
            return codec_fail(c, -EBADMSG, "stream has %u elements but field '%s' says %" PRIu64, n,
                              f->count_name, mine);
    }
    if (f->array == FERRY_ARRAY_ALLOC) {
        /* Reuse the destination's buffer when it is already there (no page faults on a bulk
         * reload). Elements own no memory (ferry_desc_check), so nothing leaks. */
        uint8_t **slot = (uint8_t **)p;
        if (n == 0) {
            free(*slot);
            *slot = NULL;
        } else {
            uint8_t *nb = realloc(*slot, (size_t)n * f->size);
            if (!nb) {
                free(*slot);
                *slot = NULL;
                set_uint(base + f->count_offset, f->count_size, 0);
                return codec_fail(c, -ENOMEM, "out of memory for %u elements", n);
            }
            *slot = nb;
            /* Struct members the description does not cover start zeroed, as with calloc. */
            if (f->type == FERRY_TYPE_STRUCT)
                memset(nb, 0, (size_t)n * f->size);
        }
        p = *slot;
    }
    uint32_t version = 0;
    switch (f->type) {
    case FERRY_TYPE_BUFFER:
        RD(c, p, (size_t)n * f->size);
        return 0;
    case FERRY_TYPE_STRING:
        for (uint32_t i = 0; i < n; i++) {
            char *s = (char *)p + (size_t)i * f->size;
            uint32_t len;
            if (f->array != FERRY_ARRAY_NONE)
                codec_index(c, i);
            if ((rc = rd_u32(c, &len)))
                return rc;
            if (len >= f->size)
                return codec_fail(c, -EBADMSG, "string of %u bytes does not fit in %zu", len,
                                  f->size);
            RD(c, s, len);
            s[len] = '\0';
        }
        return 0;
    case FERRY_TYPE_STRUCT:
        if ((rc = rd_u32(c, &version)))
            return rc;
        size_t flat = n > 1 ? flat_size(f->desc, version) : 0;
        if (flat) {
            if ((rc = codec_version_check(c, f->desc, version)))
                return rc;
            return load_flat(c, f->desc, p, f->size, n, version, flat, true);
        }
        for (uint32_t i = 0; i < n; i++) {
            if (f->array != FERRY_ARRAY_NONE)
                codec_index(c, i);
            if ((rc = load_desc(c, f->desc, p + (size_t)i * f->size, version)))
                return rc;
        }
        return 0;
    default:
        return load_scalars(c, f, p, n);
    }
}

static int load_subsections(CodecCtx *c, const FerryDesc *d, void *opaque)
{
    uint64_t seen = 0;
    for (;;) {
        uint8_t tag;
        char name[256];
        uint32_t version, len;
        int rc = codec_read_sub_header(c, &tag, name, &version, &len);
        if (rc || tag == SUB_END)
            return rc;
        size_t idx;
        const FerrySubsection *s = codec_find_sub(d, name, &idx);
        if (!s) {
            if (tag == SUB_OPTIONAL) {
                codec_warn(c, "skipped optional subsection '%s' (%u bytes) unknown to this build",
                           name, len);
                rc = ferry_io_skip(c->io, len, c->err);
                if (rc)
                    return codec_wrap(c, rc);
                continue;
            }
            return codec_fail(c, -ENOENT, "unknown subsection '%s' in '%s' (not optional)", name,
                              d->name);
        }
        if (idx < 64 && (seen & (1ull << idx)))
            return codec_fail(c, -EBADMSG, "subsection '%s' appears twice", name);
        if (idx < 64)
            seen |= 1ull << idx;
        uint64_t start = ferry_io_offset(c->io);
        uint64_t end = start + len;
        uint64_t outer = ferry_io_set_limit(c->io, end < c->io->limit ? end : c->io->limit);
        codec_push(c, name);
        rc = load_desc(c, s->desc, opaque, version);
        if (!rc && ferry_io_offset(c->io) != end)
            rc = codec_fail(c, -EBADMSG, "%" PRIu64 " bytes of the subsection left unread",
                            end - ferry_io_offset(c->io));
        codec_pop(c);
        ferry_io_set_limit(c->io, outer);
        if (rc)
            return rc;
    }
}

static int load_desc(CodecCtx *c, const FerryDesc *d, void *opaque, uint32_t version)
{
    int rc = codec_version_check(c, d, version);
    if (rc)
        return rc;
    if ((rc = run_hook(c, d->pre_load, "pre_load", opaque, version)))
        return rc;
    uint8_t *base = opaque;
    for (const FerryField *f = d->fields; f && f->name && !rc; f++) {
        if (f->since > version)
            continue;
        codec_push(c, f->name);
        if (f->exists) {
            bool present;
            rc = codec_read_presence(c, &present);
            if (!rc && present != f->exists(opaque, version))
                rc = codec_fail(c, -EBADMSG,
                                "the stream says the field is %s, this build's exists() says %s",
                                present ? "present" : "absent", present ? "absent" : "present");
            if (!rc && present)
                rc = load_field(c, f, base);
        } else {
            rc = load_field(c, f, base);
        }
        codec_pop(c);
    }
    if (!rc)
        rc = load_subsections(c, d, opaque);
    if (!rc)
        rc = run_hook(c, d->post_load, "post_load", opaque, version);
    return rc;
}

int ferry_state_load(const FerryDesc *d, void *opaque, FerryIO *io, uint32_t version,
                     const FerryLoadOpts *opts, FerryError *err)
{
    CodecCtx c = {.io = io, .err = err, .opts = opts};
    codec_push(&c, d->name);
    return load_desc(&c, d, opaque, version);
}

/* ---- release ----------------------------------------------------------------------------------
 */

static void release_desc(const FerryDesc *d, void *opaque, int depth)
{
    assert(depth < CODEC_MAX_DEPTH);
    uint8_t *base = opaque;
    for (const FerryField *f = d->fields; f && f->name; f++) {
        uint8_t *p = base + f->offset;
        if (f->type == FERRY_TYPE_LIST) {
            release_list(f, (FerryList *)p);
            continue;
        }
        uint64_t n = mem_count(f, base);
        if (f->array == FERRY_ARRAY_ALLOC) {
            uint8_t *arr = *(uint8_t **)p;
            if (f->type == FERRY_TYPE_STRUCT)
                for (uint64_t i = 0; arr && i < n; i++)
                    release_desc(f->desc, arr + i * f->size, depth + 1);
            free(arr);
            *(uint8_t **)p = NULL;
            set_uint(base + f->count_offset, f->count_size, 0);
        } else if (f->type == FERRY_TYPE_STRUCT) {
            if (f->array == FERRY_ARRAY_VAR && n > f->count)
                n = f->count;
            for (uint64_t i = 0; i < n; i++)
                release_desc(f->desc, p + i * f->size, depth + 1);
        }
    }
    for (size_t i = 0; d->subsections && d->subsections[i].desc; i++)
        release_desc(d->subsections[i].desc, opaque, depth + 1);
}

void ferry_state_release(const FerryDesc *d, void *opaque)
{
    release_desc(d, opaque, 0);
}

/* ---- description checks ------------------------------------------------------------------------
 */

static int check_desc(const FerryDesc *d, FerryError *err, int depth);

/* True when loading `d` can allocate (lists, ALLOC arrays), directly or through nesting. */
static bool owns_memory(const FerryDesc *d, int depth)
{
    if (depth >= CODEC_MAX_DEPTH)
        return true;
    for (const FerryField *f = d->fields; f && f->name; f++)
        if (f->type == FERRY_TYPE_LIST || f->array == FERRY_ARRAY_ALLOC ||
            (f->type == FERRY_TYPE_STRUCT && owns_memory(f->desc, depth + 1)))
            return true;
    for (size_t i = 0; d->subsections && d->subsections[i].desc; i++)
        if (owns_memory(d->subsections[i].desc, depth + 1))
            return true;
    return false;
}

static int check_field(const FerryDesc *d, const FerryField *f, FerryError *err, int depth)
{
#define BAD(...) ferry_error_set(err, -EINVAL, "description '%s' field '%s': " __VA_ARGS__)
    if (f->type >= FERRY_TYPE__COUNT)
        return BAD("invalid type %d", d->name, f->name, (int)f->type);
    if (is_scalar(f->type) && f->type != FERRY_TYPE_BOOL &&
        f->size != ferry_type_wire_size(f->type))
        return BAD("size %zu does not match type %s", d->name, f->name, f->size,
                   ferry_type_name(f->type));
    if (f->type == FERRY_TYPE_BOOL && f->size != sizeof(bool))
        return BAD("bool of size %zu", d->name, f->name, f->size);
    if ((f->type == FERRY_TYPE_BUFFER || f->type == FERRY_TYPE_STRING) && f->size == 0)
        return BAD("zero-sized %s", d->name, f->name, ferry_type_name(f->type));
    if (f->since > d->version)
        return BAD("since %u is newer than the description's version %u", d->name, f->name,
                   f->since, d->version);
    if (f->type == FERRY_TYPE_STRUCT || f->type == FERRY_TYPE_LIST) {
        if (!f->desc)
            return BAD("%s without a description (unsupported member type?)", d->name, f->name,
                       ferry_type_name(f->type));
        if (f->desc->size && f->desc->size != f->size)
            return BAD("element size %zu but description '%s' has size %zu", d->name, f->name,
                       f->size, f->desc->name, f->desc->size);
        int rc = check_desc(f->desc, err, depth + 1);
        if (rc)
            return rc;
    } else if (f->desc) {
        return BAD("a description on a %s field", d->name, f->name, ferry_type_name(f->type));
    }
    if (f->type == FERRY_TYPE_LIST && (f->array != FERRY_ARRAY_NONE || f->max == 0))
        return BAD("lists cannot be arrays and need a maximum", d->name, f->name);
    if (f->array == FERRY_ARRAY_FIXED && f->count == 0)
        return BAD("fixed array of length 0", d->name, f->name);
    if (f->array == FERRY_ARRAY_ALLOC && f->max == 0)
        return BAD("allocated array needs a maximum count", d->name, f->name);
    /* A reload cannot know how many old elements to release once the count field has been
     * overwritten, so allocated arrays hold plain elements; use a FERRY_LIST otherwise. */
    if (f->array == FERRY_ARRAY_ALLOC && f->desc && owns_memory(f->desc, depth + 1))
        return BAD("allocated array of '%s', which owns memory: use a list", d->name, f->name,
                   f->desc->name);
    if (f->array == FERRY_ARRAY_VAR || f->array == FERRY_ARRAY_ALLOC) {
        const FerryField *cf = NULL;
        for (const FerryField *g = d->fields; g != f; g++)
            if (g->offset == f->count_offset && g->array == FERRY_ARRAY_NONE &&
                g->type <= FERRY_TYPE_U64)
                cf = g;
        if (!cf)
            return BAD("count field '%s' must be an earlier unsigned field", d->name, f->name,
                       f->count_name ? f->count_name : "?");
        if (cf->since > f->since || cf->exists)
            return BAD("count field '%s' may be absent when the array is present", d->name, f->name,
                       cf->name);
    }
    return 0;
#undef BAD
}

static int check_desc(const FerryDesc *d, FerryError *err, int depth)
{
    if (depth >= CODEC_MAX_DEPTH)
        return ferry_error_set(err, -ELOOP, "description '%s' nests deeper than %d",
                               d->name ? d->name : "?", CODEC_MAX_DEPTH);
    if (!d->name || !d->name[0] || strlen(d->name) > 255)
        return ferry_error_set(err, -EINVAL, "description without a valid name");
    if (d->min_version > d->version)
        return ferry_error_set(err, -EINVAL, "description '%s': min_version %u > version %u",
                               d->name, d->min_version, d->version);
    for (const FerryField *f = d->fields; f && f->name; f++) {
        for (const FerryField *g = d->fields; g != f; g++)
            if (!strcmp(g->name, f->name))
                return ferry_error_set(err, -EINVAL, "description '%s': field '%s' twice", d->name,
                                       f->name);
        int rc = check_field(d, f, err, depth);
        if (rc)
            return rc;
    }
    for (size_t i = 0; d->subsections && d->subsections[i].desc; i++) {
        const FerryDesc *s = d->subsections[i].desc;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(d->subsections[j].desc->name, s->name))
                return ferry_error_set(err, -EINVAL, "description '%s': subsection '%s' twice",
                                       d->name, s->name);
        int rc = check_desc(s, err, depth + 1);
        if (rc)
            return rc;
    }
    return 0;
}

int ferry_desc_check(const FerryDesc *d, FerryError *err)
{
    return check_desc(d, err, 0);
}
