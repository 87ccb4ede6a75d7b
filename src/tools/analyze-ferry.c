/* ferry analyze on Ferry streams: every record is verified; device records are decoded by field
 * name with the stream's embedded schema (the codec's own decoder), RAM is totalled per kind. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "analyze-ferry.h"
#include "ferry/stream/stream.h"

typedef struct SecStat {
    char name[300];
    uint64_t bytes;
    uint32_t version;
    bool decoded;
} SecStat;

typedef struct Totals {
    uint64_t records, device_bytes, ram_bytes, ram_records, passes, schema_bytes, skipped;
    uint64_t zero_pages, raw_pages, other_pages;
    SecStat *secs;
    size_t nsecs;
    json_t *blocks; /* RAM block list as decoded */
} Totals;

static void warn_stderr(void *ctx, const char *msg)
{
    fprintf(stderr, "ferry analyze: %s: warning: %s\n", (const char *)ctx, msg);
}

static int add_sec(Totals *t, const FerryRecord *rec, bool decoded)
{
    SecStat *n = realloc(t->secs, (t->nsecs + 1) * sizeof(*n));
    if (!n)
        return -ENOMEM;
    t->secs = n;
    SecStat *s = &t->secs[t->nsecs++];
    snprintf(s->name, sizeof(s->name), "%s (%u)", rec->name, rec->instance);
    s->bytes = rec->length;
    s->version = rec->version;
    s->decoded = decoded;
    return 0;
}

/* ram-blocks payload: u32 n, then n x (str8 name, u64 bytes, u32 page size). */
static int read_blocks(FerryStreamReader *r, const FerryRecord *rec, Totals *t, FerryError *err)
{
    if (rec->length > FERRY_STREAM_MAX_STATE)
        return ferry_stream_skip_payload(r, err);
    uint32_t n;
    int rc = ferry_stream_read_payload(r, &n, 4, err);
    json_t *arr = json_array();
    for (uint32_t i = 0; !rc && i < le32toh(n) && i < 4096; i++) {
        uint8_t len;
        char name[256];
        uint64_t size;
        uint32_t page;
        rc = ferry_stream_read_payload(r, &len, 1, err);
        if (!rc)
            rc = ferry_stream_read_payload(r, name, len, err);
        if (!rc)
            rc = ferry_stream_read_payload(r, &size, 8, err);
        if (!rc)
            rc = ferry_stream_read_payload(r, &page, 4, err);
        if (rc)
            break;
        name[len] = '\0';
        json_t *b = json_object();
        json_object_set_new(b, "name", json_string(name));
        json_object_set_new(b, "size", json_integer((json_int_t)le64toh(size)));
        json_object_set_new(b, "page_size", json_integer(le32toh(page)));
        json_array_append_new(arr, b);
    }
    if (rc) {
        json_decref(arr);
        return rc;
    }
    json_decref(t->blocks);
    t->blocks = arr;
    return ferry_stream_end_payload(r, err);
}

int ferry_analyze_ferry_fd(const char *name, int fd, const FerryAnalyzeOpts *o)
{
    FILE *out = o->out ? o->out : stdout;
    FerryError err;
    FerryIO *io = ferry_io_fd_reader(fd, false);
    FerryStreamReader *r = io ? ferry_stream_reader_new(io, &err) : NULL;
    if (!r) {
        fprintf(stderr, "ferry analyze: %s: %s\n", name, io ? err.msg : "out of memory");
        ferry_io_destroy(io);
        return 1;
    }
    FerryLoadOpts lopts = {warn_stderr, (void *)name};
    Totals t = {0};
    FerrySchema *schema = NULL;
    json_t *root = json_object();
    json_t *sections = json_object();
    json_object_set_new(root, "format", json_string("ferry"));
    json_object_set_new(root, "format_version", json_integer(FERRY_STREAM_FORMAT_VERSION));
    json_object_set_new(root, "machine_type", json_string(ferry_stream_machine_type(r)));
    json_object_set_new(root, "producer", json_string(ferry_stream_producer(r)));
    int rc = 0;
    bool done = false;
    while (!rc && !done) {
        FerryRecord rec;
        if ((rc = ferry_stream_next(r, &rec, &err)))
            break;
        t.records++;
        switch (rec.kind) {
        case FERRY_REC_END:
            rc = ferry_stream_end_payload(r, &err);
            done = true;
            break;
        case FERRY_REC_SCHEMA: {
            t.schema_bytes += rec.length;
            json_t *j = ferry_stream_schema_json(r, &err);
            if (!j) {
                rc = -1;
                break;
            }
            ferry_schema_free(schema);
            schema = ferry_schema_import(j, &err);
            json_decref(j);
            if (!schema) {
                ferry_error_prefix(&err, "embedded schema: ");
                rc = -1;
            }
            break;
        }
        case FERRY_REC_DEVICE: {
            t.device_bytes += rec.length;
            const FerryDesc *d =
                schema ? ferry_registry_find(ferry_schema_registry(schema), rec.name, rec.instance,
                                             NULL)
                       : NULL;
            bool wanted = !o->section || !strcmp(o->section, rec.name);
            if ((rc = add_sec(&t, &rec, d != NULL)))
                break;
            char key[300];
            snprintf(key, sizeof(key), "%s (%u)", rec.name, rec.instance);
            if (d && wanted && !o->summary) {
                json_t *j = ferry_stream_payload_json(r, d, &lopts, &err);
                if (!j) {
                    rc = -1;
                    break;
                }
                json_object_set_new(sections, key, j);
            } else {
                rc = ferry_stream_skip_payload(r, &err);
                if (!rc && wanted && !o->summary) {
                    json_t *u = json_object();
                    json_object_set_new(u, "undecoded_bytes", json_integer((json_int_t)rec.length));
                    json_object_set_new(u, "version", json_integer(rec.version));
                    json_object_set_new(sections, key, u);
                }
            }
            break;
        }
        case FERRY_REC_RAM_BLOCKS:
            t.ram_bytes += rec.length;
            rc = read_blocks(r, &rec, &t, &err);
            break;
        case FERRY_REC_RAM_PAGES:
            t.ram_records++;
            t.ram_bytes += rec.length;
            rc = ferry_stream_skip_payload(r, &err);
            break;
        case FERRY_REC_RAM_PASS:
            t.passes++;
            rc = ferry_stream_skip_payload(r, &err);
            break;
        default:
            if (!(rec.flags & FERRY_REC_OPTIONAL)) {
                ferry_error_set(&err, -EBADMSG,
                                "unknown mandatory record kind 0x%02x at offset 0x%" PRIx64,
                                rec.kind, rec.offset);
                rc = -1;
                break;
            }
            t.skipped++;
            fprintf(stderr, "ferry analyze: %s: warning: skipped optional record kind 0x%02x at "
                            "offset 0x%" PRIx64 "\n",
                    name, rec.kind, rec.offset);
            rc = ferry_stream_skip_payload(r, &err);
        }
    }
    uint64_t end = ferry_io_offset(io);
    if (!rc && !ferry_io_at_eof(io)) {
        fprintf(stderr, "ferry analyze: %s: data after the end record at offset 0x%" PRIx64 "\n",
                name, end);
        rc = -1;
    } else if (rc) {
        fprintf(stderr, "ferry analyze: %s: %s\n", name, err.msg);
    }
    if (!rc) {
        if (o->summary) {
            fprintf(out, "format:       Ferry stream v%d\n", FERRY_STREAM_FORMAT_VERSION);
            fprintf(out, "machine type: %s\n", ferry_stream_machine_type(r));
            fprintf(out, "producer:     %s\n", ferry_stream_producer(r));
            fprintf(out, "size:         %" PRIu64 " bytes, %" PRIu64 " records, checksums ok\n",
                    end, t.records);
            fprintf(out, "schema:       %s\n", schema ? "embedded" : "absent (devices undecoded)");
            fprintf(out, "RAM:          %" PRIu64 " bytes in %" PRIu64 " page records, %" PRIu64
                         " passes\n",
                    t.ram_bytes, t.ram_records, t.passes);
            fprintf(out, "devices:      %" PRIu64 " bytes in %zu sections\n", t.device_bytes,
                    t.nsecs);
            for (size_t i = 0; i < t.nsecs; i++)
                if (!o->section || !strncmp(t.secs[i].name, o->section, strlen(o->section)))
                    fprintf(out, "  %-40s v%-3u %8" PRIu64 " bytes%s\n", t.secs[i].name,
                            t.secs[i].version, t.secs[i].bytes,
                            t.secs[i].decoded ? "" : "  (not in schema)");
        } else {
            json_t *ram = json_object();
            json_object_set_new(ram, "blocks", t.blocks ? json_incref(t.blocks) : json_array());
            json_object_set_new(ram, "bytes", json_integer((json_int_t)t.ram_bytes));
            json_object_set_new(ram, "page_records", json_integer((json_int_t)t.ram_records));
            json_object_set_new(ram, "passes", json_integer((json_int_t)t.passes));
            json_object_set_new(root, "ram", ram);
            json_object_set_new(root, "sections", json_incref(sections));
            json_object_set_new(root, "records", json_integer((json_int_t)t.records));
            json_object_set_new(root, "checksums", json_string("ok"));
            json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            fputc('\n', out);
        }
    }
    json_decref(sections);
    json_decref(root);
    json_decref(t.blocks);
    free(t.secs);
    ferry_schema_free(schema);
    ferry_stream_reader_free(r);
    ferry_io_destroy(io);
    return rc ? 1 : 0;
}
