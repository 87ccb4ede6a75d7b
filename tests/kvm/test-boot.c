/* KVM boot tests: the shared dirty.img boot sector prints A then B on COM1, its writes show up
 * in the dirty log over [1 MiB, 100 MiB), and bad boot images fail with clear errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kvm-test.h"

static const char *guest_dir;
static const char *hello64_path;

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

static uint32_t exit_code; /* last value written to the debug-exit port, +1 (0 = none) */

static void debug_exit_write(void *opaque, uint16_t off, unsigned size, uint32_t v)
{
    (void)opaque;
    (void)off;
    (void)size;
    __atomic_store_n(&exit_code, v + 1, __ATOMIC_SEQ_CST);
}

static void test_flat64_firmware_runs_in_long_mode(void **state)
{
    (void)state;
    FerryError err = {0};
    KtGuest g;
    kt_guest_init(&g, 16 << 20, -1);
    exit_code = 0;
    assert_int_equal(ferry_pio_bus_register(ferry_vm_pio_bus(g.vm), 0xf4, 1, "debug-exit", NULL,
                                            debug_exit_write, NULL, &err),
                     0);
    int r = ferry_boot_flat64(g.vm, g.bsp, hello64_path, &err);
    if (r < 0)
        fail_msg("%s", err.msg);
    ferry_vcpu_start(g.bsp);
    ferry_vcpus_resume(g.vcpus);
    double end = kt_now() + 20;
    while (!__atomic_load_n(&exit_code, __ATOMIC_SEQ_CST) && !g.events && kt_now() < end)
        usleep(2000);
    ferry_vcpus_pause(g.vcpus);
    char *out = kt_output(&g);
    printf("firmware: %s", out);
    if (g.events)
        fail_msg("vCPU event: %s", g.last_event);
    assert_int_equal(exit_code, 0x10 + 1); /* the firmware's own long-mode check passed */
    const char *efer = strstr(out, "ferry-fw: long mode ok efer=");
    assert_non_null(efer);
    assert_true(strtoull(efer + strlen("ferry-fw: long mode ok efer="), NULL, 16) & 0x400);
    assert_non_null(strstr(out, "cs=0x0000000000000008\n"));
    free(out);
    kt_guest_destroy(&g);
}

static void test_flat64_errors(void **state)
{
    (void)state;
    FerryError err = {0};
    KtGuest g;
    kt_guest_init(&g, 1 << 20, -1); /* 1 MiB: no room above the load address */
    assert_true(ferry_boot_flat64(g.vm, g.bsp, hello64_path, &err) < 0);
    printf("small RAM: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "too small"));
    kt_guest_destroy(&g);
    kt_guest_init(&g, 4 << 20, -1);
    assert_int_equal(ferry_boot_flat64(g.vm, g.bsp, "/nonexistent/fw.bin", &err), -ENOENT);
    assert_non_null(strstr(err.msg, "firmware: /nonexistent/fw.bin: cannot open"));
    kt_guest_destroy(&g);
}

/* A real-mode AP program at 0x8000: print 'C', then count at 0x9000 forever. */
static const uint8_t ap_code[] = {
    0xba, 0xf8, 0x03,       /* mov dx, 0x3f8 */
    0xb0, 'C',              /* mov al, 'C' */
    0xee,                   /* out dx, al */
    0xfe, 0x06, 0x00, 0x90, /* inc byte [0x9000] */
    0xeb, 0xfa,             /* jmp short -6 */
};

static void test_vcpu_hotplug_runs_second_vcpu(void **state)
{
    (void)state;
    FerryError err = {0};
    KtGuest g;
    boot_dirty(&g);
    kt_wait_chars(&g, 0, 'B', 1, 20.0);
    /* Hotplug while vCPU 0 runs. */
    memcpy(ferry_vm_gpa_to_host(g.vm, 0x8000, sizeof(ap_code)), ap_code, sizeof(ap_code));
    volatile uint8_t *counter = ferry_vm_gpa_to_host(g.vm, 0x9000, 1);
    FerryVcpu *ap = ferry_vcpus_add(g.vcpus, 1, &err);
    if (!ap)
        fail_msg("%s", err.msg);
    assert_int_equal(ferry_vcpus_count(g.vcpus), 2);
    assert_int_equal(ferry_boot_real_mode(ap, 0x8000, 0, &err), 0);
    ferry_vcpu_start(ap);
    assert_int_equal(kt_wait_chars(&g, 0, 'C', 1, 20.0), 1);
    uint8_t seen = *counter;
    double end = kt_now() + 20;
    while (*counter == seen && kt_now() < end)
        usleep(1000);
    assert_int_not_equal(*counter, seen); /* the AP keeps counting */
    size_t bs = kt_output_len(&g);
    size_t more = kt_wait_chars(&g, bs, 'B', 1, 20.0); /* vCPU 0 still going */
    ferry_vcpus_pause(g.vcpus);
    uint8_t c0 = *counter;
    usleep(20000);
    assert_int_equal(*counter, c0); /* paused means paused: the AP no longer counts */
    assert_true(more >= 1);
    assert_int_equal(g.events, 0);
    /* Duplicate ids are refused. */
    assert_null(ferry_vcpus_add(g.vcpus, 1, &err));
    assert_int_equal(err.code, -EEXIST);
    kt_guest_destroy(&g);
}

static void test_pause_resume_repeatedly(void **state)
{
    (void)state;
    KtGuest g;
    boot_dirty(&g);
    volatile uint8_t *counter = ferry_vm_gpa_to_host(g.vm, 1 << 20, 1);
    kt_wait_chars(&g, 0, 'B', 1, 20.0);
    for (int i = 0; i < 50; i++) {
        ferry_vcpus_pause(g.vcpus);
        assert_true(ferry_vcpus_paused(g.vcpus));
        uint8_t c = *counter;
        usleep(1000);
        assert_int_equal(*counter, c); /* nothing runs while paused */
        ferry_vcpus_resume(g.vcpus);
        usleep(500);
    }
    assert_int_equal(g.events, 0);
    kt_guest_destroy(&g);
}

int main(int argc, char **argv)
{
    kt_require_kvm("kvm-boot");
    if (argc < 3) {
        fprintf(stderr, "usage: %s GUEST_DIR HELLO64_BIN\n", argv[0]);
        return 2;
    }
    guest_dir = argv[1];
    hello64_path = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_boot_sector_prints_a_then_b),
        cmocka_unit_test(test_dirty_log_reports_range),
        cmocka_unit_test(test_boot_sector_errors),
        cmocka_unit_test(test_flat64_firmware_runs_in_long_mode),
        cmocka_unit_test(test_flat64_errors),
        cmocka_unit_test(test_vcpu_hotplug_runs_second_vcpu),
        cmocka_unit_test(test_pause_resume_repeatedly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
