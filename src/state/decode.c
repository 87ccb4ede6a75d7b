/* Decode a device payload into JSON by its description alone (no C struct), for ferry analyze.
 * It reads the wire with the loader's own primitives (codec-int.h), so both agree byte for byte. */
#include "codec-int.h"
#include "ferry/state/schema.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static json_t *decode_desc(CodecCtx *c, const FerryDesc *d, uint32_t version);

static int rd(CodecCtx *c, void *p, size_t n)
{
    int rc = ferry_io__read(c->io, p, n, c->err);
    return rc ? codec_wrap(c, rc) : 0;
}

static int rd_u32(CodecCtx *c, uint32_t *v)
{
    int rc = rd(c, v, 4);
    *v = le32toh(*v);
    return rc;
}

static json_t *hex(const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char *s = malloc(2 * n + 1);
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        s[2 * i] = digits[p[i] >> 4];
        s[2 * i + 1] = digits[p[i] & 15];
    }
    s[2 * n] = '\0';
    json_t *j = json_string(s);
    free(s);
    return j;
}

static json_t *scalar(CodecCtx *c, FerryType t)
{
    uint8_t b[8] = {0};
    if (t == FERRY_TYPE_BOOL) {
        if (codec_read_bool(c, b))
            return NULL;
        return json_boolean(b[0]);
    }
    size_t n = ferry_type_wire_size(t);
    if (rd(c, b, n))
        return NULL;
    uint64_t u;
    memcpy(&u, b, 8);
    u = le64toh(u);
    switch (t) {
    case FERRY_TYPE_I8:
        return json_integer((int8_t)u);
    case FERRY_TYPE_I16:
        return json_integer((int16_t)u);
    case FERRY_TYPE_I32:
        return json_integer((int32_t)u);
    case FERRY_TYPE_I64:
        return json_integer((json_int_t)u);
    case FERRY_TYPE_U64:
        if (u > INT64_MAX) {
            char s[24];
            snprintf(s, sizeof(s), "0x%" PRIx64, u);
            return json_string(s);
        }
        return json_integer((json_int_t)u);
    default:
        return json_integer((json_int_t)u);
    }
}

static json_t *element(CodecCtx *c, const FerryField *f, uint32_t version)
{
    if (f->type == FERRY_TYPE_STRUCT)
        return decode_desc(c, f->desc, version);
    if (f->type == FERRY_TYPE_BUFFER) {
        uint8_t *buf = malloc(f->size ? f->size : 1);
        if (!buf || rd(c, buf, f->size)) {
            free(buf);
            return NULL;
        }
        json_t *j = hex(buf, f->size);
        free(buf);
        return j;
    }
    if (f->type == FERRY_TYPE_STRING) {
        uint32_t len;
        if (rd_u32(c, &len))
            return NULL;
        if (len >= f->size) {
            codec_fail(c, -EBADMSG, "string of %u bytes does not fit in %zu", len, f->size);
            return NULL;
        }
        char *s = malloc(len + 1);
        if (!s || rd(c, s, len)) {
            free(s);
            return NULL;
        }
        json_t *j = json_stringn(s, len);
        if (!j)
            j = hex((uint8_t *)s, len); /* not UTF-8: show the bytes */
        free(s);
        return j;
    }
    return scalar(c, f->type);
}

static json_t *decode_field(CodecCtx *c, const FerryField *f, json_t *obj)
{
    uint32_t n = 1, version = 0;
    if (f->type == FERRY_TYPE_LIST) {
        if (rd_u32(c, &version) || rd_u32(c, &n))
            return NULL;
        if (n > f->max) {
            codec_fail(c, -E2BIG, "stream has %u list elements, at most %u are accepted", n,
                       f->max);
            return NULL;
        }
        json_t *arr = json_array();
        for (uint32_t i = 0; i < n; i++) {
            codec_index(c, i);
            json_t *e = decode_desc(c, f->desc, version);
            if (!e) {
                json_decref(arr);
                return NULL;
            }
            json_array_append_new(arr, e);
        }
        return arr;
    }
    if (f->array != FERRY_ARRAY_NONE && codec_read_count(c, f, &n))
        return NULL;
    if (f->array == FERRY_ARRAY_VAR || f->array == FERRY_ARRAY_ALLOC) {
        json_t *cj = f->count_name ? json_object_get(obj, f->count_name) : NULL;
        if (json_is_integer(cj) && (uint64_t)json_integer_value(cj) != n) {
            codec_fail(c, -EBADMSG,
                       "stream has %u elements but field '%s' says %" JSON_INTEGER_FORMAT, n,
                       f->count_name, json_integer_value(cj));
            return NULL;
        }
    }
    if (f->type == FERRY_TYPE_STRUCT && rd_u32(c, &version))
        return NULL;
    if (f->array == FERRY_ARRAY_NONE)
        return element(c, f, version);
    json_t *arr = json_array();
    for (uint32_t i = 0; i < n; i++) {
        codec_index(c, i);
        json_t *e = element(c, f, version);
        if (!e) {
            json_decref(arr);
            return NULL;
        }
        json_array_append_new(arr, e);
    }
    return arr;
}

static json_t *decode_desc(CodecCtx *c, const FerryDesc *d, uint32_t version)
{
    if (codec_version_check(c, d, version))
        return NULL;
    json_t *obj = json_object();
    for (const FerryField *f = d->fields; f && f->name; f++) {
        if (f->since > version)
            continue;
        codec_push(c, f->name);
        bool present = true;
        json_t *v = NULL;
        if (f->exists && codec_read_presence(c, &present))
            goto fail;
        if (present && !(v = decode_field(c, f, obj)))
            goto fail;
        codec_pop(c);
        if (present)
            json_object_set_new(obj, f->name, v);
        continue;
    fail:
        codec_pop(c);
        json_decref(obj);
        return NULL;
    }
    json_t *subs = NULL;
    for (;;) {
        uint8_t tag;
        char name[256];
        uint32_t sver, len;
        if (codec_read_sub_header(c, &tag, name, &sver, &len))
            goto fail_subs;
        if (tag == SUB_END)
            break;
        if (!subs)
            subs = json_object();
        size_t idx;
        const FerrySubsection *s = codec_find_sub(d, name, &idx);
        if (!s) {
            if (tag != SUB_OPTIONAL) {
                codec_fail(c, -ENOENT, "unknown subsection '%s' in '%s' (not optional)", name,
                           d->name);
                goto fail_subs;
            }
            codec_warn(c, "skipped optional subsection '%s' (%u bytes) not in the schema", name,
                       len);
            if (ferry_io_skip(c->io, len, c->err)) {
                codec_wrap(c, -EBADMSG);
                goto fail_subs;
            }
            json_t *sk = json_object();
            json_object_set_new(sk, "skipped_bytes", json_integer(len));
            json_object_set_new(subs, name, sk);
            continue;
        }
        uint64_t end = ferry_io_offset(c->io) + len;
        uint64_t outer = ferry_io_set_limit(c->io, end < c->io->limit ? end : c->io->limit);
        codec_push(c, name);
        json_t *sj = decode_desc(c, s->desc, sver);
        if (sj && ferry_io_offset(c->io) != end) {
            codec_fail(c, -EBADMSG, "%" PRIu64 " bytes of the subsection left unread",
                       end - ferry_io_offset(c->io));
            json_decref(sj);
            sj = NULL;
        }
        codec_pop(c);
        ferry_io_set_limit(c->io, outer);
        if (!sj)
            goto fail_subs;
        json_object_set_new(subs, name, sj);
    }
    if (subs)
        json_object_set_new(obj, "subsections", subs);
    return obj;
fail_subs:
    json_decref(subs);
    json_decref(obj);
    return NULL;
}

json_t *ferry_state_decode_json(const FerryDesc *d, FerryIO *io, uint32_t version,
                                const FerryLoadOpts *opts, FerryError *err)
{
    CodecCtx c = {.io = io, .err = err, .opts = opts};
    codec_push(&c, d->name);
    return decode_desc(&c, d, version);
}
