/* KVM boot tests: the shared dirty.img boot sector prints A then B on COM1, its writes show up
 * in the dirty log over [1 MiB, 100 MiB), and bad boot images fail with clear errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kvm-test.h"

static const char *guest_dir;

static char *guest_path(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof(path), "%s/%s", guest_dir, name);
    return path;
}

static void boot_dirty(KtGuest *g)
{
    FerryError err = {0};
    kt_guest_init(g, 128 << 20, -1);
    if (ferry_boot_sector(g->vm, g->bsp, guest_path("dirty.img"), &err) < 0)
        kt_die("ferry_boot_sector", &err);
    ferry_vcpu_start(g->bsp);
    ferry_vcpus_resume(g->vcpus);
}

static void test_boot_sector_prints_a_then_b(void **state)
{
    (void)state;
    KtGuest g;
    boot_dirty(&g);
    size_t bs = kt_wait_chars(&g, 0, 'B', 3, 20.0);
    ferry_vcpus_pause(g.vcpus);
    char *out = kt_output(&g);
    assert_true(bs >= 3);
    assert_int_equal(out[0], 'A'); /* A first, once, then only B */
    assert_int_equal(kt_count_char(out, 'A'), 1);
    assert_int_equal(strspn(out + 1, "B"), strlen(out) - 1);
    assert_int_equal(g.events, 0);
    free(out);
    kt_guest_destroy(&g);
}

static size_t count_dirty(const uint64_t *bm, size_t words, uint64_t gpa0, uint64_t lo,
                          uint64_t hi, size_t *outside)
{
    size_t in = 0;
    for (size_t w = 0; w < words; w++) {
        for (int b = 0; b < 64; b++) {
            if (!(bm[w] >> b & 1))
                continue;
            uint64_t gpa = gpa0 + (w * 64 + b) * FERRY_VM_PAGE_SIZE;
            if (gpa >= lo && gpa < hi)
                in++;
            else
                (*outside)++;
        }
    }
    return in;
}

static void test_dirty_log_reports_range(void **state)
{
    (void)state;
    FerryError err = {0};
    KtGuest g;
    boot_dirty(&g);
    assert_int_equal(ferry_vm_dirty_log_start(g.vm, &err), 0);
    assert_true(ferry_vm_dirty_log_active(g.vm));
    FerryRamBlock blk;
    assert_int_equal(ferry_vm_ram_block(g.vm, 0, &blk, &err), 0);
    size_t sz = ferry_vm_dirty_bitmap_size(blk.size);
    uint64_t *bm = malloc(sz);
    /* Round 1: after the guest did at least one more full pass, every page of the range. */
    size_t skip = kt_output_len(&g);
    kt_wait_chars(&g, skip, 'B', 2, 20.0);
    ferry_vcpus_pause(g.vcpus);
    assert_int_equal(ferry_vm_dirty_log_fetch(g.vm, blk.slot, bm, sz, &err), 0);
    size_t outside = 0;
    size_t in = count_dirty(bm, sz / 8, blk.gpa, 1 << 20, 100 << 20, &outside);
    size_t want = (99 << 20) / FERRY_VM_PAGE_SIZE;
    printf("dirty: %zu pages in [1 MiB, 100 MiB) of %zu, %zu outside\n", in, want, outside);
    assert_int_equal(in, want);
    /* Outside the range only the boot sector's stack/data page may be written. */
    assert_true(outside <= 2);
    /* Round 2: paused guest -> a fetch right away reports nothing (the log was reset). */
    assert_int_equal(ferry_vm_dirty_log_fetch(g.vm, blk.slot, bm, sz, &err), 0);
    outside = 0;
    assert_int_equal(count_dirty(bm, sz / 8, blk.gpa, 0, UINT64_MAX, &outside), 0);
    /* Round 3: resume briefly: pages get dirty again. */
    ferry_vcpus_resume(g.vcpus);
    skip = kt_output_len(&g);
    kt_wait_chars(&g, skip, 'B', 1, 20.0);
    ferry_vcpus_pause(g.vcpus);
    assert_int_equal(ferry_vm_dirty_log_fetch(g.vm, blk.slot, bm, sz, &err), 0);
    outside = 0;
    assert_true(count_dirty(bm, sz / 8, blk.gpa, 1 << 20, 100 << 20, &outside) > 0);
    assert_int_equal(ferry_vm_dirty_log_stop(g.vm, &err), 0);
    assert_int_not_equal(ferry_vm_dirty_log_fetch(g.vm, blk.slot, bm, sz, &err), 0);
    assert_non_null(strstr(err.msg, "not active"));
    free(bm);
    kt_guest_destroy(&g);
}

static void test_boot_sector_errors(void **state)
{
    (void)state;
    FerryError err = {0};
    KtGuest g;
    kt_guest_init(&g, 16 << 20, -1);
    /* Missing file: names the file and the reason. */
    assert_int_equal(ferry_boot_sector(g.vm, g.bsp, "/nonexistent/boot.img", &err), -ENOENT);
    printf("missing: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "/nonexistent/boot.img"));
    assert_non_null(strstr(err.msg, "No such file"));
    /* Wrong size: names the size expected and found. */
    char tmpl[] = "/tmp/ferry-bootXXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "short", 5), 5);
    close(fd);
    assert_int_equal(ferry_boot_sector(g.vm, g.bsp, tmpl, &err), -EINVAL);
    printf("short: %s\n", err.msg);
    assert_non_null(strstr(err.msg, tmpl));
    assert_non_null(strstr(err.msg, "5 bytes, must be exactly 512"));
    unlink(tmpl);
    /* A directory is not a boot sector. */
    assert_true(ferry_boot_sector(g.vm, g.bsp, "/tmp", &err) < 0);
    assert_non_null(strstr(err.msg, "not a regular file"));
    kt_guest_destroy(&g);
}

int main(int argc, char **argv)
{
    kt_require_kvm("kvm-boot");
    if (argc < 2) {
        fprintf(stderr, "usage: %s GUEST_DIR\n", argv[0]);
        return 2;
    }
    guest_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_boot_sector_prints_a_then_b),
        cmocka_unit_test(test_dirty_log_reports_range),
        cmocka_unit_test(test_boot_sector_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
