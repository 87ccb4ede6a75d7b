/* RAM page encodings: zero detection on every word position, XOR+RLE delta round trips on
 * random edits, the size cap, and hostile delta ops refused with bounds errors. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../src/migration/ram-int.h"

static _Alignas(64) uint8_t a[RAM_PAGE], b[RAM_PAGE], c[RAM_PAGE];
static uint8_t enc[RAM_PAGE * 2];

static void test_zero(void **state)
{
    (void)state;
    memset(a, 0, sizeof(a));
    assert_true(ram_page_is_zero(a));
    for (unsigned i = 0; i < RAM_PAGE; i += 7) {
        a[i] = 1;
        assert_false(ram_page_is_zero(a));
        a[i] = 0;
    }
    a[RAM_PAGE - 1] = 0x80;
    assert_false(ram_page_is_zero(a));
}

static void test_delta_roundtrip(void **state)
{
    (void)state;
    srand(42);
    for (int iter = 0; iter < 2000; iter++) {
        for (unsigned i = 0; i < RAM_PAGE; i++)
            a[i] = (uint8_t)rand();
        memcpy(b, a, RAM_PAGE);
        int edits = rand() % 40;
        for (int e = 0; e < edits; e++)
            b[rand() % RAM_PAGE] ^= (uint8_t)(1 + rand() % 255);
        size_t n = ram_delta_encode(a, b, enc, sizeof(enc));
        assert_true(n != SIZE_MAX);
        if (!memcmp(a, b, RAM_PAGE))
            assert_int_equal(n, 0);
        memcpy(c, a, RAM_PAGE);
        FerryError err = {0};
        assert_int_equal(ram_delta_apply(c, enc, n, &err), 0);
        assert_memory_equal(c, b, RAM_PAGE);
    }
}

/* The benchmark guest's edit: one byte per page. The delta must be tiny (this is what makes
 * re-sent pages ~300x cheaper than raw). */
static void test_delta_small(void **state)
{
    (void)state;
    memset(a, 0x11, RAM_PAGE);
    memcpy(b, a, RAM_PAGE);
    b[0]++;
    size_t n = ram_delta_encode(a, b, enc, sizeof(enc));
    assert_int_equal(n, 4 + 8);
}

static void test_delta_cap(void **state)
{
    (void)state;
    memset(a, 0, RAM_PAGE);
    memset(b, 0xff, RAM_PAGE);
    assert_true(ram_delta_encode(a, b, enc, RAM_DELTA_MAX) == SIZE_MAX);
    assert_int_equal(ram_delta_encode(a, b, enc, sizeof(enc)), 4 + RAM_PAGE);
}

static void test_delta_hostile(void **state)
{
    (void)state;
    FerryError err = {0};
    uint8_t ops[16] = {0};
    /* word 511, 2 words: past the page */
    ops[0] = 0xff, ops[1] = 0x01, ops[2] = 2;
    assert_int_equal(ram_delta_apply(c, ops, sizeof(ops), &err),
                     -EBADMSG);
    assert_non_null(strstr(err.msg, "out of bounds"));
    /* zero-length op */
    memset(ops, 0, sizeof(ops));
    assert_int_equal(ram_delta_apply(c, ops, 4, &err), -EBADMSG);
    /* header cut */
    assert_int_equal(ram_delta_apply(c, ops, 3, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "cut"));
    /* data shorter than the op claims */
    ops[0] = 0, ops[2] = 1;
    assert_int_equal(ram_delta_apply(c, ops, 8, &err), -EBADMSG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zero),
        cmocka_unit_test(test_delta_roundtrip),
        cmocka_unit_test(test_delta_small),
        cmocka_unit_test(test_delta_cap),
        cmocka_unit_test(test_delta_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
