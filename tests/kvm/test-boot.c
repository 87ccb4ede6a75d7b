/* KVM boot tests: the shared dirty.img boot sector prints A then B on COM1, its writes show up
 * in the dirty log over [1 MiB, 100 MiB), and bad boot images fail with clear errors. */
#include "kvm-test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four headers above first */
#include <cmocka.h>

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

static size_t count_dirty(const uint64_t *bm, size_t words, uint64_t gpa0, uint64_t lo, uint64_t hi,
                          size_t *outside)
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

/* Memory hotplug: boot RAM covers only [0, 64 MiB); a block added for [64 MiB, 128 MiB) takes
 * the guest's writes above 64 MiB, shows them in its own dirty log, and can be removed. */
static void test_ram_block_add_remove(void **state)
{
    (void)state;
    FerryError err = {0};
    KtGuest g;
    char path[4096];
    snprintf(path, sizeof(path), "%s/dirty.img", guest_dir);
    kt_guest_init(&g, 64 << 20, -1);
    assert_int_equal(ferry_vm_ram_count(g.vm), 1);
    uint32_t slot;
    /* Overlap with boot RAM and misalignment are refused with the range named. */
    assert_int_equal(ferry_vm_ram_add(g.vm, 32 << 20, 64 << 20, &slot, &err), -EEXIST);
    assert_non_null(strstr(err.msg, "[0x2000000, 0x6000000): overlaps"));
    assert_int_equal(ferry_vm_ram_add(g.vm, (64 << 20) + 1, 4096, &slot, &err), -EINVAL);
    assert_int_equal(ferry_vm_ram_add(g.vm, 64 << 20, 64 << 20, &slot, &err), 0);
    assert_int_equal(ferry_vm_ram_count(g.vm), 2);
    FerryRamBlock blk;
    assert_int_equal(ferry_vm_ram_block(g.vm, 1, &blk, &err), 0);
    assert_int_equal(blk.slot, slot);
    assert_int_equal(blk.gpa, 64 << 20);
    assert_int_equal(blk.size, 64 << 20);
    assert_ptr_equal(ferry_vm_gpa_to_host(g.vm, 64 << 20, 1), blk.host);
    assert_int_equal(ferry_vm_dirty_log_start(g.vm, &err), 0);
    if (ferry_boot_sector(g.vm, g.bsp, path, &err) < 0)
        kt_die("ferry_boot_sector", &err);
    ferry_vcpu_start(g.bsp);
    ferry_vcpus_resume(g.vcpus);
    kt_wait_chars(&g, 0, 'B', 2, 20.0);
    ferry_vcpus_pause(g.vcpus);
    assert_int_equal(g.events, 0);
    assert_true(blk.host[0] >= 2); /* the first page of the block was counted each pass */
    size_t sz = ferry_vm_dirty_bitmap_size(blk.size);
    uint64_t *bm = malloc(sz);
    assert_int_equal(ferry_vm_dirty_log_fetch(g.vm, slot, bm, sz, &err), 0);
    size_t outside = 0;
    size_t in = count_dirty(bm, sz / 8, blk.gpa, 64 << 20, 100 << 20, &outside);
    assert_int_equal(in, (36 << 20) / FERRY_VM_PAGE_SIZE);
    assert_int_equal(outside, 0);
    free(bm);
    /* Boot RAM stays; the added block goes, once. */
    assert_int_equal(ferry_vm_ram_remove(g.vm, 0, &err), -EPERM);
    assert_int_equal(ferry_vm_ram_remove(g.vm, slot, &err), 0);
    assert_int_equal(ferry_vm_ram_count(g.vm), 1);
    assert_null(ferry_vm_gpa_to_host(g.vm, 64 << 20, 1));
    assert_int_equal(ferry_vm_ram_remove(g.vm, slot, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "no such RAM block"));
    /* The slot id is reused for the next block. */
    uint32_t again;
    assert_int_equal(ferry_vm_ram_add(g.vm, 64 << 20, 4 << 20, &again, &err), 0);
    assert_int_equal(again, slot);
    kt_guest_destroy(&g);
}

/* The UART as a driver sees it, through the VM's bus (no guest needed). */
static void test_serial_registers(void **state)
{
    (void)state;
    KtGuest g;
    kt_guest_init(&g, 4 << 20, -1);
    FerryPioBus *bus = ferry_vm_pio_bus(g.vm);
    uint32_t v;
    ferry_pio_bus_read(bus, 0x3fd, 1, &v);
    assert_int_equal(v & 0x61, 0x60);         /* LSR: THR empty, transmitter empty, no data */
    ferry_pio_bus_write(bus, 0x3fb, 1, 0x80); /* DLAB */
    ferry_pio_bus_write(bus, 0x3f8, 1, 0x01); /* DLL: 115200 baud */
    ferry_pio_bus_write(bus, 0x3f9, 1, 0x00); /* DLM */
    ferry_pio_bus_read(bus, 0x3f8, 1, &v);
    assert_int_equal(v, 0x01);
    ferry_pio_bus_write(bus, 0x3fb, 1, 0x03); /* 8N1, DLAB off */
    ferry_pio_bus_write(bus, 0x3ff, 1, 0x5a);
    ferry_pio_bus_read(bus, 0x3ff, 1, &v);
    assert_int_equal(v, 0x5a); /* scratch */
    /* Output is line-buffered: nothing reaches the fd before the newline. */
    struct stat st;
    for (const char *p = "hi"; *p; p++)
        ferry_pio_bus_write(bus, 0x3f8, 1, (uint8_t)*p);
    fstat(g.out_fd, &st);
    assert_int_equal(st.st_size, 0);
    ferry_pio_bus_write(bus, 0x3f8, 1, '\n');
    fstat(g.out_fd, &st);
    assert_int_equal(st.st_size, 3);
    assert_int_equal(ferry_serial_tx_count(g.serial), 3);
    /* THR-empty interrupt: enabling it raises IIR=THRI; reading IIR acknowledges it. */
    ferry_pio_bus_write(bus, 0x3f9, 1, 0x02);
    ferry_pio_bus_read(bus, 0x3fa, 1, &v);
    assert_int_equal(v & 0x0f, 0x02);
    ferry_pio_bus_read(bus, 0x3fa, 1, &v);
    assert_int_equal(v & 0x0f, 0x01);
    /* Input: data ready, RX interrupt has priority, bytes come out in order. */
    ferry_pio_bus_write(bus, 0x3f9, 1, 0x01);
    assert_int_equal(ferry_serial_input(g.serial, (const uint8_t *)"ok", 2), 2);
    ferry_pio_bus_read(bus, 0x3fd, 1, &v);
    assert_true(v & 0x01);
    ferry_pio_bus_read(bus, 0x3fa, 1, &v);
    assert_int_equal(v & 0x0f, 0x04);
    ferry_pio_bus_read(bus, 0x3f8, 1, &v);
    assert_int_equal(v, 'o');
    ferry_pio_bus_read(bus, 0x3f8, 1, &v);
    assert_int_equal(v, 'k');
    ferry_pio_bus_read(bus, 0x3fd, 1, &v);
    assert_false(v & 0x01);
    /* The FIFO holds 16 bytes. */
    assert_int_equal(ferry_serial_input(g.serial, (const uint8_t *)"0123456789abcdefXYZ", 19), 16);
    char *out = kt_output(&g);
    assert_string_equal(out, "hi\n");
    free(out);
    kt_guest_destroy(&g);
}

/* Run a 512-byte boot sector given as bytes until a vCPU event, return it in g->last_event. */
static void run_until_event(KtGuest *g, uint64_t ram, const uint8_t *code, size_t len)
{
    FerryError err = {0};
    uint8_t img[512] = {0};
    memcpy(img, code, len);
    img[510] = 0x55;
    img[511] = 0xaa;
    kt_guest_init(g, ram, -1);
    if (ferry_boot_sector_mem(g->vm, g->bsp, img, sizeof(img), &err) < 0)
        kt_die("ferry_boot_sector_mem", &err);
    ferry_vcpu_start(g->bsp);
    ferry_vcpus_resume(g->vcpus);
    double end = kt_now() + 20;
    while (!__atomic_load_n(&g->events, __ATOMIC_SEQ_CST) && kt_now() < end)
        usleep(1000);
    ferry_vcpus_pause(g->vcpus);
}

static void test_guest_crash_stops_vcpu_with_event(void **state)
{
    (void)state;
    FerryError err = {0};
    /* Long mode with an IDT of non-present gates, then int3: #NP -> #DF -> triple fault ->
     * KVM_EXIT_SHUTDOWN. PVM (reference/host-kvm.md) runs the guest deprivileged and fails to
     * emulate this LIDT instead (KVM_EXIT_INTERNAL_ERROR); either way the crash must come out
     * as exactly one event with a message, and the vCPU must stop rather than spin. */
    static const uint8_t code[20] = {
        0x0f, 0x01, 0x1d, 0x03, 0x00, 0x00, 0x00, /* lidt [rip+3] -> offset 10 */
        0xcc,                                     /* int3 */
        0xeb, 0xfe,                               /* jmp $ */
        0xff, 0x0f, 0x00, 0x00, 0x20, 0x00,       /* IDTR: limit 0xfff, base 2 MiB (zeroes) */
    };
    char tmpl[] = "/tmp/ferry-tfXXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, code, sizeof(code)), (ssize_t)sizeof(code));
    close(fd);
    KtGuest g;
    kt_guest_init(&g, 4 << 20, -1);
    int r = ferry_boot_flat64(g.vm, g.bsp, tmpl, &err);
    unlink(tmpl);
    if (r < 0)
        fail_msg("%s", err.msg);
    ferry_vcpu_start(g.bsp);
    ferry_vcpus_resume(g.vcpus);
    double end = kt_now() + 20;
    while (!__atomic_load_n(&g.events, __ATOMIC_SEQ_CST) && kt_now() < end)
        usleep(1000);
    ferry_vcpus_pause(g.vcpus);
    printf("event: %s\n", g.last_event);
    assert_int_equal(g.events, 1);
    int ev = atoi(g.last_event);
    if (ev == FERRY_VCPU_EVENT_SHUTDOWN)
        assert_non_null(strstr(g.last_event, "triple fault"));
    else
        assert_non_null(strstr(g.last_event, "vCPU 0: KVM internal error, suberror 1 "
                                             "(instruction emulation failed)"));
    /* The vCPU stopped itself: resuming the set does not run it again until started. */
    ferry_vcpus_resume(g.vcpus);
    usleep(20000);
    assert_int_equal(g.events, 1);
    kt_guest_destroy(&g);
}

static void test_mmio_is_a_clear_error(void **state)
{
    (void)state;
    /* RAM is 512 KiB; read a byte at 0xa0000 (no RAM, no device). */
    static const uint8_t code[] = {0xb8, 0x00, 0xa0, /* mov ax, 0xa000 */
                                   0x8e, 0xd8,       /* mov ds, ax */
                                   0xa0, 0x00, 0x00, /* mov al, [0] */
                                   0xeb, 0xfe};      /* jmp $ */
    KtGuest g;
    run_until_event(&g, 512 << 10, code, sizeof(code));
    printf("event: %s\n", g.last_event);
    assert_int_equal(g.events, 1);
    assert_int_equal(atoi(g.last_event), FERRY_VCPU_EVENT_ERROR);
    assert_non_null(strstr(g.last_event, "vCPU 0: MMIO read of 1 bytes at 0xa0000"));
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
        cmocka_unit_test(test_ram_block_add_remove),
        cmocka_unit_test(test_serial_registers),
        cmocka_unit_test(test_boot_sector_errors),
        cmocka_unit_test(test_guest_crash_stops_vcpu_with_event),
        cmocka_unit_test(test_mmio_is_a_clear_error),
        cmocka_unit_test(test_flat64_firmware_runs_in_long_mode),
        cmocka_unit_test(test_flat64_errors),
        cmocka_unit_test(test_vcpu_hotplug_runs_second_vcpu),
        cmocka_unit_test(test_pause_resume_repeatedly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
