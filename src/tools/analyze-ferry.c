/* ferry analyze on Ferry streams: every record is verified; device records are decoded by field
 * name with the stream's embedded schema (the codec's own decoder), RAM is totalled per kind. */
#include "analyze-ferry.h"

#include "ferry/stream/ram.h"
#include "ferry/stream/stream.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct SecStat {
    char name[300];
    uint64_t bytes;
    uint32_t version;
    bool decoded;
} SecStat;

typedef struct Block {
    char name[256];
    uint64_t pages;
    int fd; /* --extract-ram: the block's file, else -1 */
} Block;

typedef struct Totals {
    uint64_t records, device_bytes, ram_bytes, ram_records, passes, schema_bytes, skipped;
    uint64_t pages[3]; /* by encoding: zero, raw, delta */
    SecStat *secs;
    size_t nsecs;
    json_t *blocks; /* RAM block list as decoded */
    Block *blk;
    size_t nblk;
    json_t *handshake;
    uint8_t page[FERRY_RAM_PAGE_SIZE], ops[FERRY_RAM_PAGE_SIZE];
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

/* ram-blocks payload: u32 n, then n x (str8 name, u64 gpa, u64 bytes, u32 page size). */
static int read_blocks(FerryStreamReader *r, const FerryRecord *rec, Totals *t, const char *extract,
                       FerryError *err)
{
    if (t->blk)
        return ferry_error_set(err, -EBADMSG, "second ram-blocks record at offset 0x%" PRIx64,
                               rec->offset);
    uint32_t n;
    int rc = ferry_stream_read_payload(r, &n, 4, err);
    n = le32toh(n);
    if (!rc && n > 4096)
        rc = ferry_error_set(err, -EBADMSG, "ram-blocks record lists %u blocks", n);
    if (rc)
        return rc;
    t->blk = calloc(n ? n : 1, sizeof(*t->blk));
    json_t *arr = json_array();
    for (uint32_t i = 0; !rc && i < n; i++) {
        Block *b = &t->blk[t->nblk++];
        b->fd = -1;
        uint8_t len;
        uint64_t gpa, size;
        uint32_t page;
        rc = ferry_stream_read_payload(r, &len, 1, err);
        if (!rc)
            rc = ferry_stream_read_payload(r, b->name, len, err);
        if (!rc)
            rc = ferry_stream_read_payload(r, &gpa, 8, err);
        if (!rc)
            rc = ferry_stream_read_payload(r, &size, 8, err);
        if (!rc)
            rc = ferry_stream_read_payload(r, &page, 4, err);
        if (rc)
            break;
        b->name[len] = '\0';
        size = le64toh(size);
        if (le32toh(page) != FERRY_RAM_PAGE_SIZE || size % FERRY_RAM_PAGE_SIZE) {
            rc = ferry_error_set(err, -EBADMSG,
                                 "RAM block '%s': page size %u, size %" PRIu64
                                 " (4096-byte pages expected)",
                                 b->name, le32toh(page), size);
            break;
        }
        b->pages = size / FERRY_RAM_PAGE_SIZE;
        json_t *bj = json_object();
        json_object_set_new(bj, "name", json_string(b->name));
        json_object_set_new(bj, "gpa", json_integer((json_int_t)le64toh(gpa)));
        json_object_set_new(bj, "size", json_integer((json_int_t)size));
        json_array_append_new(arr, bj);
        if (extract) {
            char path[4096], safe[256];
            snprintf(safe, sizeof(safe), "%s", b->name[0] ? b->name : "ram");
            for (char *c = safe; *c; c++)
                if (*c == '/')
                    *c = '_';
            snprintf(path, sizeof(path), "%s/%s", extract, safe);
            b->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (b->fd < 0 || ftruncate(b->fd, (off_t)size) < 0)
                rc = ferry_error_set(err, -errno, "%s: %s", path, strerror(errno));
        }
    }
    if (rc) {
        json_decref(arr);
        return rc;
    }
    json_decref(t->blocks);
    t->blocks = arr;
    return ferry_stream_end_payload(r, err);
}

/* ram-pages payload: runs (u64 first page, u32 count, u8 encoding) until the payload ends.
 * Pages are counted by encoding and, with --extract-ram, applied to the block's file in stream
 * order, so the file ends with each page's final contents. */
static int read_pages(FerryStreamReader *r, const FerryRecord *rec, Totals *t, FerryError *err)
{
    if (rec->instance >= t->nblk)
        return ferry_error_set(err, -EBADMSG,
                               "ram-pages record at offset 0x%" PRIx64 " names block %u of %zu",
                               rec->offset, rec->instance, t->nblk);
    Block *b = &t->blk[rec->instance];
    uint64_t left = rec->length;
    int rc = 0;
    while (!rc && left) {
        uint8_t hdr[FERRY_RAM_RUN_HEADER];
        if (left < sizeof(hdr))
            return ferry_error_set(err, -EBADMSG,
                                   "ram-pages record at offset 0x%" PRIx64 ": %" PRIu64
                                   " trailing bytes",
                                   rec->offset, left);
        if ((rc = ferry_stream_read_payload(r, hdr, sizeof(hdr), err)))
            return rc;
        left -= sizeof(hdr);
        uint64_t first;
        uint32_t count;
        memcpy(&first, hdr, 8);
        memcpy(&count, hdr + 8, 4);
        first = le64toh(first);
        count = le32toh(count);
        uint8_t enc = hdr[12];
        if (enc > FERRY_RAM_ENC_DELTA || first > b->pages || count > b->pages - first)
            return ferry_error_set(err, -EBADMSG,
                                   "ram-pages record at offset 0x%" PRIx64
                                   ": run of %u pages at page %" PRIu64 " (encoding %u) does not "
                                   "fit block '%s' (%" PRIu64 " pages)",
                                   rec->offset, count, first, enc, b->name, b->pages);
        t->pages[enc] += count;
        for (uint32_t i = 0; !rc && i < count && enc != FERRY_RAM_ENC_ZERO; i++) {
            off_t off = (off_t)((first + i) * FERRY_RAM_PAGE_SIZE);
            if (enc == FERRY_RAM_ENC_RAW) {
                if (left < FERRY_RAM_PAGE_SIZE)
                    return ferry_error_set(err, -EBADMSG, "raw page past the record's end");
                rc = ferry_stream_read_payload(r, t->page, FERRY_RAM_PAGE_SIZE, err);
                left -= FERRY_RAM_PAGE_SIZE;
                if (!rc && b->fd >= 0 && pwrite(b->fd, t->page, FERRY_RAM_PAGE_SIZE, off) < 0)
                    rc = ferry_error_set(err, -errno, "writing '%s': %s", b->name, strerror(errno));
                continue;
            }
            uint16_t len;
            if (left < 2 || (rc = ferry_stream_read_payload(r, &len, 2, err)))
                return rc ? rc : ferry_error_set(err, -EBADMSG, "delta past the record's end");
            len = le16toh(len);
            left -= 2;
            if (len > left || len > sizeof(t->ops))
                return ferry_error_set(err, -EBADMSG, "delta of %u bytes past the record's end",
                                       len);
            if ((rc = ferry_stream_read_payload(r, t->ops, len, err)))
                return rc;
            left -= len;
            if (b->fd < 0)
                continue;
            if (pread(b->fd, t->page, FERRY_RAM_PAGE_SIZE, off) != FERRY_RAM_PAGE_SIZE)
                return ferry_error_set(err, -EIO, "reading '%s': %s", b->name, strerror(errno));
            if ((rc = ferry_ram_delta_apply(t->page, t->ops, len, err)))
                return ferry_error_prefix(err, "page %" PRIu64 " of '%s': ", first + i, b->name);
            if (pwrite(b->fd, t->page, FERRY_RAM_PAGE_SIZE, off) < 0)
                rc = ferry_error_set(err, -errno, "writing '%s': %s", b->name, strerror(errno));
        }
        if (!rc && enc == FERRY_RAM_ENC_ZERO && b->fd >= 0 &&
            fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      (off_t)(first * FERRY_RAM_PAGE_SIZE), (off_t)count * FERRY_RAM_PAGE_SIZE) < 0)
            rc =
                ferry_error_set(err, -errno, "zeroing pages of '%s': %s", b->name, strerror(errno));
    }
    return rc ? rc : ferry_stream_end_payload(r, err);
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
    Totals *t = calloc(1, sizeof(Totals)); /* holds page buffers: not on the stack */
    if (!t) {
        ferry_stream_reader_free(r);
        ferry_io_destroy(io);
        return 1;
    }
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
        t->records++;
        switch (rec.kind) {
        case FERRY_REC_END:
            rc = ferry_stream_end_payload(r, &err);
            done = true;
            break;
        case FERRY_REC_SCHEMA: {
            t->schema_bytes += rec.length;
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
            t->device_bytes += rec.length;
            const FerryDesc *d = schema ? ferry_registry_find(ferry_schema_registry(schema),
                                                              rec.name, rec.instance, NULL)
                                        : NULL;
            char key[300];
            snprintf(key, sizeof(key), "%s (%u)", rec.name, rec.instance);
            /* --section takes the name or the JSON key, as for QEMU streams. */
            bool wanted = !o->extract && (!o->section || !strcmp(o->section, rec.name) ||
                                          !strcmp(o->section, key));
            if ((rc = add_sec(t, &rec, d != NULL)))
                break;
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
            t->ram_bytes += rec.length;
            rc = read_blocks(r, &rec, t, o->extract, &err);
            break;
        case FERRY_REC_RAM_PAGES:
            t->ram_records++;
            t->ram_bytes += rec.length;
            rc = read_pages(r, &rec, t, &err);
            break;
        case FERRY_REC_HANDSHAKE: {
            json_t *j = ferry_stream_schema_json(r, &err); /* a bounded JSON payload */
            if (!j) {
                rc = -1;
                break;
            }
            json_decref(t->handshake);
            t->handshake = j;
            break;
        }
        case FERRY_REC_RAM_PASS:
            t->passes++;
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
            t->skipped++;
            fprintf(stderr,
                    "ferry analyze: %s: warning: skipped optional record '%s' kind 0x%02x (%" PRIu64
                    " bytes) at offset 0x%" PRIx64 "\n",
                    name, rec.name, rec.kind, rec.length, rec.offset);
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
                    end, t->records);
            fprintf(out, "schema:       %s\n", schema ? "embedded" : "absent (devices undecoded)");
            fprintf(out,
                    "RAM:          %" PRIu64 " bytes in %" PRIu64 " page records, %" PRIu64
                    " passes; pages: %" PRIu64 " zero, %" PRIu64 " raw, %" PRIu64 " delta\n",
                    t->ram_bytes, t->ram_records, t->passes, t->pages[0], t->pages[1], t->pages[2]);
            fprintf(out, "devices:      %" PRIu64 " bytes in %zu sections\n", t->device_bytes,
                    t->nsecs);
            for (size_t i = 0; i < t->nsecs; i++)
                if (!o->section || !strncmp(t->secs[i].name, o->section, strlen(o->section)))
                    fprintf(out, "  %-40s v%-3u %8" PRIu64 " bytes%s\n", t->secs[i].name,
                            t->secs[i].version, t->secs[i].bytes,
                            t->secs[i].decoded ? "" : "  (not in schema)");
        } else if (o->extract) {
            /* like the QEMU side: extraction prints no JSON */
        } else {
            json_t *ram = json_object();
            json_object_set_new(ram, "blocks", t->blocks ? json_incref(t->blocks) : json_array());
            json_object_set_new(ram, "bytes", json_integer((json_int_t)t->ram_bytes));
            json_object_set_new(ram, "page_records", json_integer((json_int_t)t->ram_records));
            json_object_set_new(ram, "passes", json_integer((json_int_t)t->passes));
            json_object_set_new(ram, "zero_pages", json_integer((json_int_t)t->pages[0]));
            json_object_set_new(ram, "raw_pages", json_integer((json_int_t)t->pages[1]));
            json_object_set_new(ram, "delta_pages", json_integer((json_int_t)t->pages[2]));
            if (t->handshake)
                json_object_set_new(root, "handshake", json_incref(t->handshake));
            json_object_set_new(root, "ram", ram);
            json_object_set_new(root, "sections", json_incref(sections));
            json_object_set_new(root, "records", json_integer((json_int_t)t->records));
            json_object_set_new(root, "checksums", json_string("ok"));
            json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            fputc('\n', out);
        }
    }
    json_decref(sections);
    json_decref(root);
    json_decref(t->blocks);
    json_decref(t->handshake);
    for (size_t i = 0; i < t->nblk; i++)
        if (t->blk[i].fd >= 0)
            close(t->blk[i].fd);
    free(t->blk);
    free(t->secs);
    free(t);
    ferry_schema_free(schema);
    ferry_stream_reader_free(r);
    ferry_io_destroy(io);
    return rc ? 1 : 0;
}
