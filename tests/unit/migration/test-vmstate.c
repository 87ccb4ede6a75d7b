/* The kvm-cpu and kvm-vm descriptions cover every byte of FerryCpuState / FerryVmState: a
 * struct filled with a pattern survives save + load into a zeroed struct unchanged, so a member
 * added to cpu-state.h without a table entry fails here. */
#include "ferry/migration/vmstate.h"
#include "ferry/vmm/cpu-state.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void fill(void *p, size_t n, unsigned seed)
{
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(i * 31 + seed);
}

static void roundtrip(const FerryDesc *d, void *src, void *dst, size_t size)
{
    FerryError err = {0};
    FerryIO *w = ferry_io_mem_writer();
    assert_int_equal(ferry_desc_check(d, &err), 0);
    int r = ferry_state_save(d, src, w, &err);
    if (r)
        fail_msg("save: %s", err.msg);
    size_t len;
    const uint8_t *data = ferry_io_mem_data(w, &len);
    FerryIO *rd = ferry_io_mem_reader(data, len);
    memset(dst, 0, size);
    r = ferry_state_load(d, dst, rd, d->version, NULL, &err);
    if (r)
        fail_msg("load: %s", err.msg);
    assert_true(ferry_io_at_eof(rd));
    ferry_io_destroy(rd);
    ferry_io_destroy(w);
}

static void test_cpu(void **state)
{
    (void)state;
    FerryCpuState *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    fill(a, sizeof(*a), 7);
    a->fpu_size = FERRY_CPU_XSAVE_MAX;
    a->xcr_count = FERRY_CPU_XCRS_MAX;
    a->msr_count = FERRY_CPU_MSRS_MAX;
    /* Padding bytes are not state: compare through the diff, which walks every field. */
    roundtrip(&ferry_cpu_state_desc, a, b, sizeof(*b));
    char what[256];
    if (ferry_cpu_state_diff(a, b, false, what, sizeof(what)))
        fail_msg("differs: %s", what);
    /* A partly used MSR table travels only its used part. */
    a->msr_count = 3;
    roundtrip(&ferry_cpu_state_desc, a, b, sizeof(*b));
    assert_int_equal(b->msr_count, 3);
    assert_int_equal(b->msrs[2].index, a->msrs[2].index);
    assert_int_equal(b->msrs[3].index, 0);
    free(a);
    free(b);
}

static void test_vm(void **state)
{
    (void)state;
    FerryVmState a, b;
    fill(&a, sizeof(a), 3);
    roundtrip(&ferry_vm_state_desc, &a, &b, sizeof(b));
    char what[256];
    if (ferry_vm_state_diff(&a, &b, false, what, sizeof(what)))
        fail_msg("differs: %s", what);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu),
        cmocka_unit_test(test_vm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
