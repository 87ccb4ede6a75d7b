/* Ferry stream format v1: header and framed, XXH3-checksummed records over a FerryIO.
 * Readers verify each record before applying it; errors name the record and the offset. */
#include "ferry/stream/stream.h"

#include "../state/io-int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct FerryStreamWriter {
    FerryIO *io;
    FerryIO *scratch; /* device payloads are encoded here first: the frame needs their length */
    XXH3_state_t *xx;
};

struct FerryStreamReader {
    FerryIO *io;
    XXH3_state_t *xx;
    char machine[256];
    char producer[256];
    FerryRecord cur;
    bool in_payload;
    uint64_t payload_end;
    uint64_t outer_limit;
};

const char *ferry_record_kind_name(uint8_t kind)
{
    switch (kind) {
    case FERRY_REC_DEVICE:
        return "device";
    case FERRY_REC_SCHEMA:
        return "schema";
    case FERRY_REC_RAM_BLOCKS:
        return "ram-blocks";
    case FERRY_REC_RAM_PAGES:
        return "ram-pages";
    case FERRY_REC_RAM_PASS:
        return "ram-pass";
    case FERRY_REC_HANDSHAKE:
        return "handshake";
    case FERRY_REC_CHANNEL:
        return "channel";
    case FERRY_REC_END:
        return "end";
    default:
        return "unknown";
    }
}

/* ---- writer ------------------------------------------------------------------------------------
 */

static int put(FerryStreamWriter *w, const void *p, size_t n, FerryError *err)
{
    XXH3_64bits_update(w->xx, p, n);
    return ferry_io_write(w->io, p, n, err);
}

static int put_u8(FerryStreamWriter *w, uint8_t v, FerryError *err)
{
    return put(w, &v, 1, err);
}

static int put_u32(FerryStreamWriter *w, uint32_t v, FerryError *err)
{
    v = htole32(v);
    return put(w, &v, 4, err);
}

static int put_u64(FerryStreamWriter *w, uint64_t v, FerryError *err)
{
    v = htole64(v);
    return put(w, &v, 8, err);
}

static int put_str8(FerryStreamWriter *w, const char *s, FerryError *err)
{
    size_t n = strlen(s);
    if (n > 255)
        return ferry_error_set(err, -EINVAL, "name '%.40s...' is longer than 255 bytes", s);
    int rc = put_u8(w, (uint8_t)n, err);
    return rc ? rc : put(w, s, n, err);
}

FerryStreamWriter *ferry_stream_writer_new(FerryIO *io, const char *machine_type, FerryError *err)
{
    FerryStreamWriter *w = calloc(1, sizeof(*w));
    if (!w || !(w->xx = XXH3_createState()) || !(w->scratch = ferry_io_mem_writer())) {
        ferry_stream_writer_free(w);
        ferry_error_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    w->io = io;
    XXH3_64bits_reset(w->xx);
    int rc = put(w, FERRY_STREAM_MAGIC, FERRY_STREAM_MAGIC_LEN, err);
    if (!rc)
        rc = put_u32(w, FERRY_STREAM_FORMAT_VERSION, err);
    if (!rc)
        rc = put_u32(w, 0 /* flags: checksum algorithm 0 = XXH3-64 */, err);
    if (!rc)
        rc = put_str8(w, machine_type ? machine_type : "", err);
    if (!rc)
        rc = put_str8(w, "ferry " FERRY_VERSION, err);
    if (!rc) {
        uint64_t sum = htole64(XXH3_64bits_digest(w->xx));
        rc = ferry_io_write(io, &sum, 8, err);
    }
    if (rc) {
        ferry_error_prefix(err, "stream header: ");
        ferry_stream_writer_free(w);
        return NULL;
    }
    return w;
}

void ferry_stream_writer_free(FerryStreamWriter *w)
{
    if (!w)
        return;
    XXH3_freeState(w->xx);
    ferry_io_destroy(w->scratch);
    free(w);
}

int ferry_stream_write_record(FerryStreamWriter *w, uint8_t kind, uint8_t flags, const char *name,
                              uint32_t instance, uint32_t version, const struct iovec *iov,
                              int iovcnt, FerryError *err)
{
    uint64_t len = 0;
    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    XXH3_64bits_reset(w->xx);
    int rc = put_u8(w, kind, err);
    if (!rc)
        rc = put_u8(w, flags, err);
    if (!rc)
        rc = put_str8(w, name, err);
    if (!rc)
        rc = put_u32(w, instance, err);
    if (!rc)
        rc = put_u32(w, version, err);
    if (!rc)
        rc = put_u64(w, len, err);
    for (int i = 0; !rc && i < iovcnt; i++)
        rc = put(w, iov[i].iov_base, iov[i].iov_len, err);
    if (!rc) {
        uint64_t sum = htole64(XXH3_64bits_digest(w->xx));
        rc = ferry_io_write(w->io, &sum, 8, err);
    }
    if (rc && name[0])
        ferry_error_prefix(err, "writing %s record '%s': ", ferry_record_kind_name(kind), name);
    else if (rc) /* RAM records carry no name: the caller says which block */
        ferry_error_prefix(err, "writing %s record: ", ferry_record_kind_name(kind));
    return rc;
}

int ferry_stream_write_state(FerryStreamWriter *w, const char *section, uint32_t instance,
                             const FerryDesc *d, void *opaque, FerryError *err)
{
    ferry_io_mem_reset(w->scratch);
    int rc = ferry_state_save(d, opaque, w->scratch, err);
    if (rc)
        return ferry_error_prefix(err, "section '%s' instance %u: ", section, instance);
    size_t len;
    const uint8_t *data = ferry_io_mem_data(w->scratch, &len);
    if (len > FERRY_STREAM_MAX_STATE)
        return ferry_error_set(err, -E2BIG,
                               "section '%s' instance %u: %zu bytes of state exceed the %u-byte "
                               "limit of a device record",
                               section, instance, len, FERRY_STREAM_MAX_STATE);
    struct iovec iov = {(void *)data, len};
    return ferry_stream_write_record(w, FERRY_REC_DEVICE, 0, section, instance, d->version, &iov, 1,
                                     err);
}

int ferry_stream_write_registry(FerryStreamWriter *w, const FerryRegistry *reg, FerryError *err)
{
    for (size_t i = 0; i < ferry_registry_count(reg); i++) {
        const char *section;
        uint32_t instance;
        void *opaque;
        const FerryDesc *d = ferry_registry_entry(reg, i, &section, &instance, &opaque);
        if (!opaque)
            return ferry_error_set(err, -EINVAL, "section '%s' instance %u has no object to save",
                                   section, instance);
        int rc = ferry_stream_write_state(w, section, instance, d, opaque, err);
        if (rc)
            return rc;
    }
    return 0;
}

int ferry_stream_write_schema(FerryStreamWriter *w, const FerryRegistry *reg, FerryError *err)
{
    char *text = ferry_schema_dumps(reg, NULL);
    if (!text)
        return ferry_error_set(err, -ENOMEM, "out of memory dumping the schema");
    struct iovec iov = {text, strlen(text)};
    int rc = ferry_stream_write_record(w, FERRY_REC_SCHEMA, FERRY_REC_OPTIONAL, "schema", 0,
                                       FERRY_SCHEMA_FORMAT_VERSION, &iov, 1, err);
    free(text);
    return rc;
}

int ferry_stream_write_end(FerryStreamWriter *w, FerryError *err)
{
    int rc = ferry_stream_write_record(w, FERRY_REC_END, 0, "", 0, 0, NULL, 0, err);
    return rc ? rc : ferry_io_flush(w->io, err);
}

/* ---- reader ------------------------------------------------------------------------------------
 */

static void xx_update(void *ctx, const void *data, size_t len)
{
    XXH3_64bits_update(ctx, data, len);
}

static int get_str8(FerryIO *io, char *out, FerryError *err)
{
    uint8_t n;
    int rc = ferry_io_read_u8(io, &n, err);
    if (!rc)
        rc = ferry_io_read(io, out, n, err);
    if (rc)
        return rc;
    out[n] = '\0';
    if (memchr(out, '\0', n))
        return ferry_error_set(err, -EBADMSG, "name contains a NUL byte at offset 0x%" PRIx64,
                               ferry_io_offset(io));
    return 0;
}

FerryStreamReader *ferry_stream_reader_new(FerryIO *io, FerryError *err)
{
    FerryStreamReader *r = calloc(1, sizeof(*r));
    if (!r || !(r->xx = XXH3_createState())) {
        free(r);
        ferry_error_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    r->io = io;
    XXH3_64bits_reset(r->xx);
    ferry_io_set_checksum(io, xx_update, r->xx);
    char magic[FERRY_STREAM_MAGIC_LEN];
    uint32_t version, flags;
    uint64_t stored;
    int rc = ferry_io_read(io, magic, sizeof(magic), err);
    if (!rc && memcmp(magic, FERRY_STREAM_MAGIC, sizeof(magic)))
        rc = ferry_error_set(err, -EBADMSG, "not a Ferry stream (bad magic at offset 0x0)");
    if (!rc)
        rc = ferry_io_read_u32(io, &version, err);
    if (!rc && version != FERRY_STREAM_FORMAT_VERSION)
        rc = ferry_error_set(err, -EPROTONOSUPPORT,
                             "Ferry stream format version %u is not supported (this build reads "
                             "version %u)",
                             version, FERRY_STREAM_FORMAT_VERSION);
    if (!rc)
        rc = ferry_io_read_u32(io, &flags, err);
    if (!rc && flags != 0)
        rc = ferry_error_set(err, -EPROTONOSUPPORT, "unknown header flags 0x%x at offset 0xc",
                             flags);
    if (!rc)
        rc = get_str8(io, r->machine, err);
    if (!rc)
        rc = get_str8(io, r->producer, err);
    ferry_io_set_checksum(io, NULL, NULL);
    if (!rc)
        rc = ferry_io_read_u64(io, &stored, err);
    if (!rc && stored != XXH3_64bits_digest(r->xx))
        rc = ferry_error_set(err, -EBADMSG, "stream header checksum mismatch at offset 0x%" PRIx64,
                             ferry_io_offset(io) - 8);
    if (rc) {
        ferry_error_prefix(err, "stream header: ");
        ferry_stream_reader_free(r);
        return NULL;
    }
    return r;
}

void ferry_stream_reader_free(FerryStreamReader *r)
{
    if (!r)
        return;
    if (r->in_payload) {
        ferry_io_set_checksum(r->io, NULL, NULL);
        ferry_io_set_limit(r->io, r->outer_limit);
    }
    XXH3_freeState(r->xx);
    free(r);
}

const char *ferry_stream_machine_type(const FerryStreamReader *r)
{
    return r->machine;
}

const char *ferry_stream_producer(const FerryStreamReader *r)
{
    return r->producer;
}

static int rec_fail(FerryStreamReader *r, FerryError *err)
{
    const FerryRecord *c = &r->cur;
    if (c->kind == FERRY_REC_DEVICE)
        return ferry_error_prefix(
            err, "record '%s' instance %u (device, at offset 0x%" PRIx64 "): ", c->name,
            c->instance, c->offset);
    return ferry_error_prefix(err, "%s record at offset 0x%" PRIx64 ": ",
                              ferry_record_kind_name(c->kind), c->offset);
}

int ferry_stream_next(FerryStreamReader *r, FerryRecord *rec, FerryError *err)
{
    if (r->in_payload)
        return ferry_error_set(err, -EINVAL, "previous record's payload was not consumed");
    FerryIO *io = r->io;
    memset(&r->cur, 0, sizeof(r->cur));
    r->cur.offset = ferry_io_offset(io);
    if (ferry_io_at_eof(io))
        return ferry_error_set(err, -ENODATA,
                               "stream ended at offset 0x%" PRIx64 " without an end record",
                               r->cur.offset);
    XXH3_64bits_reset(r->xx);
    ferry_io_set_checksum(io, xx_update, r->xx);
    FerryRecord *c = &r->cur;
    int rc = ferry_io_read_u8(io, &c->kind, err);
    if (!rc)
        rc = ferry_io_read_u8(io, &c->flags, err);
    if (!rc)
        rc = get_str8(io, c->name, err);
    if (!rc)
        rc = ferry_io_read_u32(io, &c->instance, err);
    if (!rc)
        rc = ferry_io_read_u32(io, &c->version, err);
    if (!rc)
        rc = ferry_io_read_u64(io, &c->length, err);
    if (!rc && (c->flags & ~FERRY_REC_OPTIONAL))
        rc = ferry_error_set(err, -EBADMSG, "unknown record flags 0x%02x", c->flags);
    if (!rc && c->length > (UINT64_MAX >> 2))
        rc = ferry_error_set(err, -EBADMSG, "record length %" PRIu64 " is implausible", c->length);
    if (rc) {
        ferry_io_set_checksum(io, NULL, NULL);
        return rec_fail(r, err);
    }
    r->in_payload = true;
    r->payload_end = ferry_io_offset(io) + c->length;
    r->outer_limit = ferry_io_set_limit(io, r->payload_end);
    *rec = *c;
    return 0;
}

int ferry_stream_read_payload(FerryStreamReader *r, void *buf, size_t len, FerryError *err)
{
    int rc = ferry_io_read(r->io, buf, len, err);
    return rc ? rec_fail(r, err) : 0;
}

int ferry_stream_end_payload(FerryStreamReader *r, FerryError *err)
{
    FerryIO *io = r->io;
    uint64_t off = ferry_io_offset(io);
    int rc = 0;
    if (off != r->payload_end)
        rc = ferry_error_set(err, -EBADMSG, "%" PRIu64 " payload bytes left unread",
                             r->payload_end - off);
    ferry_io_set_checksum(io, NULL, NULL);
    ferry_io_set_limit(io, r->outer_limit);
    r->in_payload = false;
    uint64_t stored = 0;
    if (!rc)
        rc = ferry_io_read_u64(io, &stored, err);
    if (!rc) {
        uint64_t sum = XXH3_64bits_digest(r->xx);
        if (sum != stored)
            rc = ferry_error_set(err, -EBADMSG,
                                 "checksum mismatch (stored 0x%016" PRIx64
                                 ", computed 0x%016" PRIx64 ") at offset 0x%" PRIx64,
                                 stored, sum, off);
    }
    return rc ? rec_fail(r, err) : 0;
}

int ferry_stream_skip_payload(FerryStreamReader *r, FerryError *err)
{
    int rc = ferry_io_skip(r->io, r->payload_end - ferry_io_offset(r->io), err);
    if (rc)
        return rec_fail(r, err);
    return ferry_stream_end_payload(r, err);
}

/* Read and verify a whole bounded payload into memory. Caller frees *out. */
static int slurp(FerryStreamReader *r, uint8_t **out, size_t *len, FerryError *err)
{
    uint64_t n = r->payload_end - ferry_io_offset(r->io);
    if (n > FERRY_STREAM_MAX_STATE) {
        ferry_error_set(err, -E2BIG, "payload of %" PRIu64 " bytes exceeds the %u-byte limit", n,
                        FERRY_STREAM_MAX_STATE);
        return rec_fail(r, err);
    }
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        ferry_error_set(err, -ENOMEM, "out of memory for %" PRIu64 " bytes", n);
        return rec_fail(r, err);
    }
    int rc = ferry_stream_read_payload(r, buf, n, err);
    if (!rc)
        rc = ferry_stream_end_payload(r, err);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* A memory reader whose offsets are the stream's, so codec errors point into the stream. */
static FerryIO *payload_reader(FerryStreamReader *r, const uint8_t *buf, size_t len)
{
    FerryIO *io = ferry_io_mem_reader(buf, len);
    if (io)
        io->base = r->payload_end - len; /* the payload ends where the record says */
    return io;
}

int ferry_stream_load_state(FerryStreamReader *r, const FerryDesc *d, void *opaque,
                            const FerryLoadOpts *opts, FerryError *err)
{
    uint8_t *buf;
    size_t len;
    int rc = slurp(r, &buf, &len, err);
    if (rc)
        return rc;
    FerryIO *io = payload_reader(r, buf, len);
    rc = io ? ferry_state_load(d, opaque, io, r->cur.version, opts, err)
            : ferry_error_set(err, -ENOMEM, "out of memory");
    if (!rc && ferry_io_offset(io) != r->payload_end)
        rc = ferry_error_set(err, -EBADMSG, "%s: %" PRIu64 " bytes after the state", d->name,
                             r->payload_end - ferry_io_offset(io));
    ferry_io_destroy(io);
    free(buf);
    if (rc)
        ferry_error_prefix(err, "section '%s' instance %u: ", r->cur.name, r->cur.instance);
    return rc;
}

json_t *ferry_stream_payload_json(FerryStreamReader *r, const FerryDesc *d,
                                  const FerryLoadOpts *opts, FerryError *err)
{
    uint8_t *buf;
    size_t len;
    if (slurp(r, &buf, &len, err))
        return NULL;
    FerryIO *io = payload_reader(r, buf, len);
    json_t *j = io ? ferry_state_decode_json(d, io, r->cur.version, opts, err) : NULL;
    if (j && ferry_io_offset(io) != r->payload_end) {
        ferry_error_set(err, -EBADMSG, "%s: %" PRIu64 " bytes after the state", d->name,
                        r->payload_end - ferry_io_offset(io));
        json_decref(j);
        j = NULL;
    }
    if (!j)
        ferry_error_prefix(err, "section '%s' instance %u: ", r->cur.name, r->cur.instance);
    ferry_io_destroy(io);
    free(buf);
    return j;
}

json_t *ferry_stream_schema_json(FerryStreamReader *r, FerryError *err)
{
    uint8_t *buf;
    size_t len;
    if (slurp(r, &buf, &len, err))
        return NULL;
    json_error_t jerr;
    json_t *j = json_loadb((const char *)buf, len, 0, &jerr);
    free(buf);
    if (!j)
        ferry_error_set(err, -EBADMSG, "schema record at offset 0x%" PRIx64 ": %s (line %d)",
                        r->cur.offset, jerr.text, jerr.line);
    return j;
}

static void warn(const FerryLoadOpts *opts, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void warn(const FerryLoadOpts *opts, const char *fmt, ...)
{
    if (!opts || !opts->warn)
        return;
    char msg[FERRY_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    opts->warn(opts->warn_ctx, msg);
}

int ferry_stream_read_registry(FerryStreamReader *r, FerryRegistry *reg, const FerryLoadOpts *opts,
                               FerryError *err)
{
    for (;;) {
        FerryRecord rec;
        int rc = ferry_stream_next(r, &rec, err);
        if (rc)
            return rc;
        switch (rec.kind) {
        case FERRY_REC_END:
            return ferry_stream_end_payload(r, err);
        case FERRY_REC_DEVICE: {
            void *opaque;
            const FerryDesc *d = ferry_registry_find(reg, rec.name, rec.instance, &opaque);
            if (!d || !opaque) {
                ferry_stream_skip_payload(r, NULL);
                return ferry_error_set(err, -ENOENT,
                                       "record '%s' instance %u (device, at offset 0x%" PRIx64
                                       "): this machine has no such section",
                                       rec.name, rec.instance, rec.offset);
            }
            rc = ferry_stream_load_state(r, d, opaque, opts, err);
            break;
        }
        default:
            if (!(rec.flags & FERRY_REC_OPTIONAL) && rec.kind != FERRY_REC_SCHEMA) {
                ferry_stream_skip_payload(r, NULL);
                return ferry_error_set(err, -EBADMSG,
                                       "%s record (kind 0x%02x) at offset 0x%" PRIx64
                                       " is not expected in a device-state stream",
                                       ferry_record_kind_name(rec.kind), rec.kind, rec.offset);
            }
            if (rec.kind != FERRY_REC_SCHEMA)
                warn(opts,
                     "skipped optional %s record '%s' (kind 0x%02x, %" PRIu64
                     " bytes) at offset 0x%" PRIx64,
                     ferry_record_kind_name(rec.kind), rec.name, rec.kind, rec.length, rec.offset);
            rc = ferry_stream_skip_payload(r, err);
        }
        if (rc)
            return rc;
    }
}
