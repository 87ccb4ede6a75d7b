/* Unit tests of the Ferry stream format: round trips, truncation at every byte, corruption of
 * every byte, unknown records, sections the destination lacks, streamed RAM payloads. */
#include "ferry/stream/stream.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

typedef struct Ev {
    uint32_t id;
    FerryLink link;
} Ev;

typedef struct Dev {
    uint32_t a;
    char name[16];
    FerryList q;
} Dev;

static const FerryDesc ev_desc = {
    .name = "ev",
    .version = 1,
    .size = sizeof(Ev),
    .fields = (const FerryField[]){FERRY_FIELD(Ev, id), FERRY_END},
};
static const FerryDesc dev_desc = {
    .name = "dev",
    .version = 1,
    .size = sizeof(Dev),
    .fields = (const FerryField[]){FERRY_FIELD(Dev, a), FERRY_STRING(Dev, name),
                                   FERRY_LIST(Dev, q, Ev, link, &ev_desc), FERRY_END},
};

static void dev_init(Dev *d, uint32_t a, const char *name, int events)
{
    memset(d, 0, sizeof(*d));
    d->a = a;
    strcpy(d->name, name);
    ferry_list_init(&d->q);
    for (int i = 0; i < events; i++) {
        Ev *e = calloc(1, sizeof(*e));
        e->id = a * 10 + (uint32_t)i;
        ferry_list_push_tail(&d->q, &e->link);
    }
}

/* A stream with a schema record and two device records. Caller frees. */
static uint8_t *make_stream(size_t *len)
{
    Dev d0, d1;
    dev_init(&d0, 1, "cpu0", 2);
    dev_init(&d1, 2, "mem0", 0);
    FerryRegistry *reg = ferry_registry_new();
    FerryError err;
    assert_int_equal(ferry_registry_add(reg, "dev", 0, &dev_desc, &d0, &err), 0);
    assert_int_equal(ferry_registry_add(reg, "dev", 1, &dev_desc, &d1, &err), 0);
    FerryIO *io = ferry_io_mem_writer();
    FerryStreamWriter *w = ferry_stream_writer_new(io, "ferry-2.0", &err);
    assert_non_null(w);
    assert_int_equal(ferry_stream_write_schema(w, reg, &err), 0);
    assert_int_equal(ferry_stream_write_registry(w, reg, &err), 0);
    assert_int_equal(ferry_stream_write_end(w, &err), 0);
    const uint8_t *data = ferry_io_mem_data(io, len);
    uint8_t *copy = malloc(*len);
    memcpy(copy, data, *len);
    ferry_stream_writer_free(w);
    ferry_io_destroy(io);
    ferry_registry_free(reg);
    ferry_state_release(&dev_desc, &d0);
    ferry_state_release(&dev_desc, &d1);
    return copy;
}

/* Read `data` into a fresh pair of devices; returns the result, fills err. */
static int read_stream(const uint8_t *data, size_t len, Dev *d0, Dev *d1, FerryError *err)
{
    FerryRegistry *reg = ferry_registry_new();
    ferry_registry_add(reg, "dev", 0, &dev_desc, d0, err);
    ferry_registry_add(reg, "dev", 1, &dev_desc, d1, err);
    FerryIO *io = ferry_io_mem_reader(data, len);
    FerryStreamReader *r = ferry_stream_reader_new(io, err);
    int rc = r ? ferry_stream_read_registry(r, reg, NULL, err) : err->code;
    ferry_stream_reader_free(r);
    ferry_io_destroy(io);
    ferry_registry_free(reg);
    return rc;
}

static void test_round_trip(void **state)
{
    (void)state;
    size_t len;
    uint8_t *s = make_stream(&len);
    Dev d0, d1;
    dev_init(&d0, 0, "", 3); /* stale events: replaced */
    dev_init(&d1, 0, "", 0);
    FerryError err;
    assert_int_equal(read_stream(s, len, &d0, &d1, &err), 0);
    assert_int_equal(d0.a, 1);
    assert_string_equal(d0.name, "cpu0");
    assert_int_equal(d0.q.len, 2);
    assert_int_equal(ferry_container_of(d0.q.head, Ev, link)->id, 10);
    assert_int_equal(d1.a, 2);
    assert_string_equal(d1.name, "mem0");
    ferry_state_release(&dev_desc, &d0);
    ferry_state_release(&dev_desc, &d1);
    free(s);
}

static void test_header_fields(void **state)
{
    (void)state;
    size_t len;
    uint8_t *s = make_stream(&len);
    assert_memory_equal(s, FERRY_STREAM_MAGIC, 8);
    FerryIO *io = ferry_io_mem_reader(s, len);
    FerryError err;
    FerryStreamReader *r = ferry_stream_reader_new(io, &err);
    assert_non_null(r);
    assert_string_equal(ferry_stream_machine_type(r), "ferry-2.0");
    assert_non_null(strstr(ferry_stream_producer(r), "ferry "));
    ferry_stream_reader_free(r);
    ferry_io_destroy(io);
    free(s);
}

static void test_truncation_every_byte(void **state)
{
    (void)state;
    size_t len;
    uint8_t *s = make_stream(&len);
    for (size_t cut = 0; cut < len; cut++) {
        Dev d0, d1;
        dev_init(&d0, 0, "", 0);
        dev_init(&d1, 0, "", 0);
        FerryError err;
        ferry_error_clear(&err);
        int rc = read_stream(s, cut, &d0, &d1, &err);
        if (rc == 0)
            fail_msg("a stream cut at %zu of %zu loaded", cut, len);
        /* Every message says where it stopped. */
        if (!strstr(err.msg, "offset 0x"))
            fail_msg("cut %zu: no offset in '%s'", cut, err.msg);
        ferry_state_release(&dev_desc, &d0);
        ferry_state_release(&dev_desc, &d1);
    }
    free(s);
}

static void test_corruption_every_byte(void **state)
{
    (void)state;
    size_t len;
    uint8_t *s = make_stream(&len);
    for (size_t i = 0; i < len; i++) {
        s[i] ^= 0x20;
        Dev d0, d1;
        dev_init(&d0, 0, "", 0);
        dev_init(&d1, 0, "", 0);
        FerryError err;
        if (read_stream(s, len, &d0, &d1, &err) == 0)
            fail_msg("flipping byte %zu went unnoticed", i);
        s[i] ^= 0x20;
        ferry_state_release(&dev_desc, &d0);
        ferry_state_release(&dev_desc, &d1);
    }
    free(s);
}

static void test_checksum_error_names_section(void **state)
{
    (void)state;
    size_t len;
    uint8_t *s = make_stream(&len);
    /* Flip a byte of the second device's name ("mem0") inside its payload. */
    uint8_t *p = memmem(s, len, "mem0", 4);
    assert_non_null(p);
    p[0] = 'n';
    Dev d0, d1;
    dev_init(&d0, 0, "", 0);
    dev_init(&d1, 0, "", 0);
    FerryError err;
    assert_int_equal(read_stream(s, len, &d0, &d1, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "record 'dev' instance 1 (device, at offset 0x"));
    assert_non_null(strstr(err.msg, "checksum mismatch"));
    /* Verified before applied: the corrupt record changed nothing. */
    assert_string_equal(d1.name, "");
    ferry_state_release(&dev_desc, &d0);
    ferry_state_release(&dev_desc, &d1);
    free(s);
}

static void test_missing_section_named(void **state)
{
    (void)state;
    size_t len;
    uint8_t *s = make_stream(&len);
    Dev d0;
    dev_init(&d0, 0, "", 0);
    FerryRegistry *reg = ferry_registry_new();
    FerryError err;
    ferry_registry_add(reg, "dev", 0, &dev_desc, &d0, &err);
    FerryIO *io = ferry_io_mem_reader(s, len);
    FerryStreamReader *r = ferry_stream_reader_new(io, &err);
    assert_int_equal(ferry_stream_read_registry(r, reg, NULL, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "record 'dev' instance 1"));
    assert_non_null(strstr(err.msg, "this machine has no such section"));
    ferry_stream_reader_free(r);
    ferry_io_destroy(io);
    ferry_registry_free(reg);
    ferry_state_release(&dev_desc, &d0);
    free(s);
}

static void collect(void *ctx, const char *msg)
{
    snprintf(ctx, 256, "%s", msg);
}

static void test_unknown_records(void **state)
{
    (void)state;
    FerryError err;
    for (int optional = 0; optional < 2; optional++) {
        FerryIO *io = ferry_io_mem_writer();
        FerryStreamWriter *w = ferry_stream_writer_new(io, "ferry-2.0", &err);
        struct iovec iov = {"future", 6};
        assert_int_equal(ferry_stream_write_record(w, 0x55, optional ? FERRY_REC_OPTIONAL : 0, "x",
                                                   0, 1, &iov, 1, &err),
                         0);
        assert_int_equal(ferry_stream_write_end(w, &err), 0);
        size_t len;
        const uint8_t *data = ferry_io_mem_data(io, &len);
        FerryIO *rio = ferry_io_mem_reader(data, len);
        FerryStreamReader *r = ferry_stream_reader_new(rio, &err);
        FerryRegistry *reg = ferry_registry_new();
        char warning[256] = "";
        FerryLoadOpts opts = {collect, warning};
        int rc = ferry_stream_read_registry(r, reg, &opts, &err);
        if (optional) {
            assert_int_equal(rc, 0);
            assert_string_equal(warning,
                                "skipped optional unknown record 'x' (kind 0x55, 6 bytes) at "
                                "offset 0x2e"); /* right after the stream header */
        } else {
            assert_int_equal(rc, -EBADMSG);
            assert_non_null(strstr(err.msg, "(kind 0x55) at offset 0x"));
        }
        ferry_registry_free(reg);
        ferry_stream_reader_free(r);
        ferry_io_destroy(rio);
        ferry_stream_writer_free(w);
        ferry_io_destroy(io);
    }
}

static void test_ram_payload_streamed_through_file(void **state)
{
    (void)state;
    char path[] = "/tmp/ferry-stream-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FerryError err;
    FerryIO *io = ferry_io_fd_writer(fd, true);
    FerryStreamWriter *w = ferry_stream_writer_new(io, "ferry-2.0", &err);
    size_t n = 3u << 20; /* bigger than the IO buffer */
    uint8_t *pages = malloc(n);
    for (size_t i = 0; i < n; i++)
        pages[i] = (uint8_t)(i * 7);
    uint64_t hdr = htole64(42);
    struct iovec iov[2] = {{&hdr, 8}, {pages, n}};
    assert_int_equal(ferry_stream_write_record(w, FERRY_REC_RAM_PAGES, 0, "", 3, 1, iov, 2, &err),
                     0);
    assert_int_equal(ferry_stream_write_end(w, &err), 0);
    ferry_stream_writer_free(w);
    ferry_io_destroy(io);

    io = ferry_io_file_reader(path, &err);
    FerryStreamReader *r = ferry_stream_reader_new(io, &err);
    FerryRecord rec;
    assert_int_equal(ferry_stream_next(r, &rec, &err), 0);
    assert_int_equal(rec.kind, FERRY_REC_RAM_PAGES);
    assert_int_equal(rec.instance, 3);
    assert_int_equal(rec.length, n + 8);
    uint64_t got_hdr;
    uint8_t *got = malloc(n);
    assert_int_equal(ferry_stream_read_payload(r, &got_hdr, 8, &err), 0);
    assert_int_equal(le64toh(got_hdr), 42);
    for (size_t off = 0; off < n; off += 65536)
        assert_int_equal(ferry_stream_read_payload(r, got + off, 65536, &err), 0);
    assert_int_equal(ferry_stream_end_payload(r, &err), 0);
    assert_memory_equal(got, pages, n);
    /* Reading past the payload is refused. */
    assert_int_equal(ferry_stream_next(r, &rec, &err), 0);
    assert_int_equal(rec.kind, FERRY_REC_END);
    assert_int_equal(ferry_stream_read_payload(r, got, 1, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "end record at offset"));
    ferry_stream_reader_free(r);
    ferry_io_destroy(io);
    unlink(path);
    free(pages);
    free(got);
}

static void test_not_a_ferry_stream(void **state)
{
    (void)state;
    static const uint8_t qemu[] = {'Q', 'E', 'V', 'M', 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0};
    FerryIO *io = ferry_io_mem_reader(qemu, sizeof(qemu));
    FerryError err;
    assert_null(ferry_stream_reader_new(io, &err));
    assert_string_equal(err.msg, "stream header: not a Ferry stream (bad magic at offset 0x0)");
    ferry_io_destroy(io);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_header_fields),
        cmocka_unit_test(test_truncation_every_byte),
        cmocka_unit_test(test_corruption_every_byte),
        cmocka_unit_test(test_checksum_error_names_section),
        cmocka_unit_test(test_missing_section_named),
        cmocka_unit_test(test_unknown_records),
        cmocka_unit_test(test_ram_payload_streamed_through_file),
        cmocka_unit_test(test_not_a_ferry_stream),
    };
    return cmocka_run_group_tests_name("stream-ferry", tests, NULL, NULL);
}
