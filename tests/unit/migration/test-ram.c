/* RAM page encodings: zero detection on every word position, XOR+RLE delta round trips on
 * random edits, the size cap, and hostile delta ops refused with bounds errors. */
#include "../../../src/migration/migration-int.h"
#include "ferry/stream/ram.h"
#include "ferry/stream/stream.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static _Alignas(64) uint8_t a[FERRY_RAM_PAGE_SIZE], b[FERRY_RAM_PAGE_SIZE], c[FERRY_RAM_PAGE_SIZE];
static uint8_t enc[FERRY_RAM_PAGE_SIZE * 2];

static void test_zero(void **state)
{
    (void)state;
    memset(a, 0, sizeof(a));
    assert_true(ferry_ram_page_is_zero(a));
    for (unsigned i = 0; i < FERRY_RAM_PAGE_SIZE; i += 7) {
        a[i] = 1;
        assert_false(ferry_ram_page_is_zero(a));
        a[i] = 0;
    }
    a[FERRY_RAM_PAGE_SIZE - 1] = 0x80;
    assert_false(ferry_ram_page_is_zero(a));
}

static void test_delta_roundtrip(void **state)
{
    (void)state;
    srand(42);
    for (int iter = 0; iter < 2000; iter++) {
        for (unsigned i = 0; i < FERRY_RAM_PAGE_SIZE; i++)
            a[i] = (uint8_t)rand();
        memcpy(b, a, FERRY_RAM_PAGE_SIZE);
        int edits = rand() % 40;
        for (int e = 0; e < edits; e++)
            b[rand() % FERRY_RAM_PAGE_SIZE] ^= (uint8_t)(1 + rand() % 255);
        size_t n = ferry_ram_delta_encode(a, b, enc, sizeof(enc));
        assert_true(n != SIZE_MAX);
        if (!memcmp(a, b, FERRY_RAM_PAGE_SIZE))
            assert_int_equal(n, 0);
        memcpy(c, a, FERRY_RAM_PAGE_SIZE);
        FerryError err = {0};
        assert_int_equal(ferry_ram_delta_apply(c, enc, n, &err), 0);
        assert_memory_equal(c, b, FERRY_RAM_PAGE_SIZE);
    }
}

/* The benchmark guest's edit: one byte per page. The delta must be tiny (this is what makes
 * re-sent pages ~300x cheaper than raw). */
static void test_delta_small(void **state)
{
    (void)state;
    memset(a, 0x11, FERRY_RAM_PAGE_SIZE);
    memcpy(b, a, FERRY_RAM_PAGE_SIZE);
    b[0]++;
    size_t n = ferry_ram_delta_encode(a, b, enc, sizeof(enc));
    assert_int_equal(n, 4 + 8);
}

static void test_delta_cap(void **state)
{
    (void)state;
    memset(a, 0, FERRY_RAM_PAGE_SIZE);
    memset(b, 0xff, FERRY_RAM_PAGE_SIZE);
    assert_true(ferry_ram_delta_encode(a, b, enc, FERRY_RAM_DELTA_MAX) == SIZE_MAX);
    assert_int_equal(ferry_ram_delta_encode(a, b, enc, sizeof(enc)), 4 + FERRY_RAM_PAGE_SIZE);
}

static void test_delta_hostile(void **state)
{
    (void)state;
    FerryError err = {0};
    uint8_t ops[16] = {0};
    /* word 511, 2 words: past the page */
    ops[0] = 0xff, ops[1] = 0x01, ops[2] = 2;
    assert_int_equal(ferry_ram_delta_apply(c, ops, sizeof(ops), &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "out of bounds"));
    /* zero-length op */
    memset(ops, 0, sizeof(ops));
    assert_int_equal(ferry_ram_delta_apply(c, ops, 4, &err), -EBADMSG);
    /* header cut */
    assert_int_equal(ferry_ram_delta_apply(c, ops, 3, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "cut"));
    /* data shorter than the op claims */
    ops[0] = 0, ops[2] = 1;
    assert_int_equal(ferry_ram_delta_apply(c, ops, 8, &err), -EBADMSG);
}

/* A RAM stream as a destination channel reads it: zero, raw and delta runs in two blocks. */
static uint8_t blk0[16 * FERRY_RAM_PAGE_SIZE] __attribute__((aligned(4096)));
static uint8_t blk1[4 * FERRY_RAM_PAGE_SIZE] __attribute__((aligned(4096)));

static void put_run(FerryIO *w, uint64_t first, uint32_t count, uint8_t enc)
{
    ferry_io_write_u64(w, first, NULL);
    ferry_io_write_u32(w, count, NULL);
    ferry_io_write_u8(w, enc, NULL);
}

static uint8_t *build_stream(size_t *len, uint32_t bad_block)
{
    FerryIO *out = ferry_io_mem_writer();
    FerryStreamWriter *w = ferry_stream_writer_new(out, "none", NULL);
    FerryIO *p = ferry_io_mem_writer();
    /* block 0: pages 0-1 raw (0x11, 0x22), pages 2-5 zero, page 6 delta vs zero (word 3) */
    put_run(p, 0, 2, FERRY_RAM_ENC_RAW);
    memset(a, 0x11, FERRY_RAM_PAGE_SIZE);
    ferry_io_write(p, a, FERRY_RAM_PAGE_SIZE, NULL);
    memset(a, 0x22, FERRY_RAM_PAGE_SIZE);
    ferry_io_write(p, a, FERRY_RAM_PAGE_SIZE, NULL);
    put_run(p, 2, 4, FERRY_RAM_ENC_ZERO);
    put_run(p, 6, 1, FERRY_RAM_ENC_DELTA);
    memset(a, 0, FERRY_RAM_PAGE_SIZE);
    memcpy(b, a, FERRY_RAM_PAGE_SIZE);
    b[3 * 8] = 0x5a;
    size_t n = ferry_ram_delta_encode(a, b, enc, sizeof(enc));
    uint8_t l2[2] = {(uint8_t)n, (uint8_t)(n >> 8)};
    ferry_io_write(p, l2, 2, NULL);
    ferry_io_write(p, enc, n, NULL);
    size_t plen;
    const uint8_t *pd = ferry_io_mem_data(p, &plen);
    struct iovec iov = {(void *)pd, plen};
    assert_int_equal(
        ferry_stream_write_record(w, FERRY_REC_RAM_PAGES, 0, "", bad_block, 1, &iov, 1, NULL), 0);
    /* block 1: page 3 raw 0x33 */
    ferry_io_mem_reset(p);
    put_run(p, 3, 1, FERRY_RAM_ENC_RAW);
    memset(a, 0x33, FERRY_RAM_PAGE_SIZE);
    ferry_io_write(p, a, FERRY_RAM_PAGE_SIZE, NULL);
    pd = ferry_io_mem_data(p, &plen);
    iov = (struct iovec){(void *)pd, plen};
    assert_int_equal(ferry_stream_write_record(w, FERRY_REC_RAM_PAGES, 0, "", 1, 1, &iov, 1, NULL),
                     0);
    uint64_t pass[2] = {5, 0};
    iov = (struct iovec){pass, sizeof(pass)};
    ferry_stream_write_record(w, FERRY_REC_RAM_PASS, 0, "", 0, 1, &iov, 1, NULL);
    ferry_stream_write_end(w, NULL);
    const uint8_t *data = ferry_io_mem_data(out, len);
    uint8_t *copy = malloc(*len);
    memcpy(copy, data, *len);
    ferry_stream_writer_free(w);
    ferry_io_destroy(p);
    ferry_io_destroy(out);
    return copy;
}

static int apply(const uint8_t *data, size_t len, FerryError *err)
{
    FerryRamBlock blocks[2] = {{.size = sizeof(blk0), .host = blk0},
                               {.gpa = 1 << 30, .size = sizeof(blk1), .host = blk1}};
    FerryIO *io = ferry_io_mem_reader(data, len);
    int r = mig_ram_stream_apply(blocks, 2, io, err);
    ferry_io_destroy(io);
    return r;
}

static void test_stream_apply(void **state)
{
    (void)state;
    size_t len;
    uint8_t *s = build_stream(&len, 0);
    const char *seed = getenv("FERRY_WRITE_MIG_RAM_SEED"); /* tests/fuzz/corpus/mig-ram */
    if (seed) {
        FILE *f = fopen(seed, "wb");
        fwrite(s, 1, len, f);
        fclose(f);
    }
    memset(blk0, 0xee, sizeof(blk0));
    memset(blk1, 0xee, sizeof(blk1));
    FerryError err = {0};
    int r = apply(s, len, &err);
    if (r)
        fail_msg("apply: %s", err.msg);
    assert_int_equal(blk0[0], 0x11);
    assert_int_equal(blk0[FERRY_RAM_PAGE_SIZE + 100], 0x22);
    for (unsigned p = 2; p < 6; p++)
        assert_true(ferry_ram_page_is_zero(blk0 + p * FERRY_RAM_PAGE_SIZE)); /* 0xee cleared */
    /* delta applied onto what was there (0xee...) at word 3 */
    assert_int_equal(blk0[6 * FERRY_RAM_PAGE_SIZE + 24], 0xee ^ 0x5a);
    assert_int_equal(blk0[6 * FERRY_RAM_PAGE_SIZE + 25], 0xee);
    assert_int_equal(blk0[7 * FERRY_RAM_PAGE_SIZE], 0xee); /* untouched */
    assert_int_equal(blk1[3 * FERRY_RAM_PAGE_SIZE], 0x33);
    assert_int_equal(blk1[0], 0xee);

    /* Cut at every byte: always an error, never a crash (the end record is missing). */
    for (size_t cut = 0; cut < len; cut++)
        assert_true(apply(s, cut, &err) < 0);
    /* Every flipped byte is caught (checksums, magic, lengths). */
    for (size_t i = 0; i < len; i += 7) {
        s[i] ^= 0x40;
        assert_true(apply(s, len, &err) < 0);
        s[i] ^= 0x40;
    }
    free(s);
    /* A record naming a block that does not exist. */
    s = build_stream(&len, 7);
    assert_true(apply(s, len, &err) < 0);
    assert_non_null(strstr(err.msg, "names RAM block 7 of 2"));
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zero),          cmocka_unit_test(test_delta_roundtrip),
        cmocka_unit_test(test_delta_small),   cmocka_unit_test(test_delta_cap),
        cmocka_unit_test(test_delta_hostile), cmocka_unit_test(test_stream_apply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
