/* FerryInstance on KVM through its C API (what the migration engine binds to): the built-in
 * firmware's verified dirty workload detects a stale page and a bad hotplugged memory block,
 * vCPU list follows hotplug, device_add is blocked during an outgoing migration, memslots follow
 * memory blocks, incoming instances. */
#include "ferry/machine/machine.h"
#include "ferry/vmm/cpu-state.h"
#include "ferry/vmm/fw-config.h"
#include "ferry/vmm/instance.h"
#include "kvm-test.h"

#include <pthread.h>

// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
// clang-format on

static const char *fw_path;

typedef struct Ti {
    FerryInstance *inst;
    int out_fd;
    uint8_t *image;
    size_t image_len;
    int deleted;
    char last_deleted[64];
    int stops, resumes;
} Ti;

static void listener(void *opaque, const FerryInstanceEventInfo *info)
{
    Ti *t = opaque;
    if (info->event == FERRY_INSTANCE_EV_STOP)
        __atomic_add_fetch(&t->stops, 1, __ATOMIC_SEQ_CST);
    if (info->event == FERRY_INSTANCE_EV_RESUME)
        __atomic_add_fetch(&t->resumes, 1, __ATOMIC_SEQ_CST);
    if (info->event == FERRY_INSTANCE_EV_DEVICE_DELETED) {
        snprintf(t->last_deleted, sizeof(t->last_deleted), "%s", info->device);
        __atomic_add_fetch(&t->deleted, 1, __ATOMIC_SEQ_CST);
    }
}

static void load_fw(Ti *t)
{
    FILE *f = fopen(fw_path, "rb");
    assert_non_null(f);
    t->image = malloc(1 << 20);
    t->image_len = fread(t->image, 1, 1 << 20, f);
    fclose(f);
    assert_true(t->image_len > 0);
}

static void ti_start(Ti *t, FerryInstanceConfig cfg)
{
    memset(t, 0, sizeof(*t));
    load_fw(t);
    t->out_fd = memfd_create("serial", MFD_CLOEXEC);
    assert_true(t->out_fd >= 0);
    cfg.boot = FERRY_INSTANCE_BOOT_FIRMWARE;
    cfg.image = t->image;
    cfg.image_len = t->image_len;
    cfg.serial_fd = t->out_fd;
    FerryError err = {0};
    t->inst = ferry_instance_create(&cfg, &err);
    if (!t->inst)
        kt_die("ferry_instance_create", &err);
    ferry_instance_set_listener(t->inst, listener, t);
}

static void ti_stop(Ti *t)
{
    ferry_instance_destroy(t->inst);
    close(t->out_fd);
    free(t->image);
}

static char *ti_output(Ti *t)
{
    ferry_serial_flush(ferry_instance_serial(t->inst), NULL);
    struct stat st;
    fstat(t->out_fd, &st);
    char *buf = calloc(1, (size_t)st.st_size + 1);
    if (pread(t->out_fd, buf, (size_t)st.st_size, 0) < 0)
        buf[0] = 0;
    return buf;
}

/* Wait (at most 20 s) until the serial output contains `needle`; returns the output. */
static char *ti_wait(Ti *t, const char *needle)
{
    for (int i = 0; i < 2000; i++) {
        char *out = ti_output(t);
        if (strstr(out, needle))
            return out;
        free(out);
        usleep(10000);
    }
    char *out = ti_output(t);
    fail_msg("serial never showed '%s'; it has:\n%s", needle, out);
    return out;
}

static void test_dirty_detects_stale_page(void **state)
{
    (void)state;
    Ti t;
    ti_start(&t, (FerryInstanceConfig){.ram_size = 64 << 20,
                                       .workload = FERRY_FW_WORKLOAD_DIRTY,
                                       .dirty_mb = 4,
                                       .report_every = 1});
    FerryError err = {0};
    assert_int_equal(ferry_instance_cont(t.inst, &err), 0);
    free(ti_wait(&t, "VERIFY ok pass=2\n"));
    /* What a migration that lost a page would leave: one page one pass behind. */
    ferry_instance_pause_vcpus(t.inst);
    uint64_t gpa = FERRY_FW_DIRTY_BASE + 77 * 4096;
    uint64_t *page = ferry_vm_gpa_to_host(ferry_instance_vm(t.inst), gpa, 4096);
    assert_non_null(page);
    page[0] -= 1;
    page[511] -= 1;
    ferry_instance_resume_vcpus(t.inst);
    char *out = ti_wait(&t, "VERIFY FAIL page=0x104d000 ");
    assert_null(strstr(out, "page=0x104e000"));
    free(out);
    ti_stop(&t);
}

/* The dirty workload also re-checks hotplugged memory blocks (8 passes per sweep): a word of a
 * block changed behind the guest's back is named with its block and page. */
static void test_dirty_detects_bad_mem_block(void **state)
{
    (void)state;
    Ti t;
    ti_start(&t, (FerryInstanceConfig){.ram_size = 64 << 20,
                                       .maxmem = 192 << 20,
                                       .workload = FERRY_FW_WORKLOAD_DIRTY,
                                       .dirty_mb = 4,
                                       .report_every = 1});
    FerryError err = {0};
    assert_int_equal(ferry_instance_cont(t.inst, &err), 0);
    free(ti_wait(&t, "VERIFY ok pass=1\n"));
    FerryParam slot0 = {"slot", "0"};
    assert_int_equal(ferry_instance_device_add(t.inst, "mem-block", "mem0", &slot0, 1, &err), 0);
    free(ti_wait(&t, "VERIFY ok mem 0 sweep=1\n"));
    /* What a migration that lost a page of the block would leave: page 3 of the block zero. */
    ferry_instance_pause_vcpus(t.inst);
    uint64_t gpa = ferry_instance_mem_block_gpa(t.inst, 0) + 3 * 4096;
    uint64_t *page = ferry_vm_gpa_to_host(ferry_instance_vm(t.inst), gpa, 4096);
    assert_non_null(page);
    assert_int_equal(page[0], gpa ^ 0x5a5a5a5a00000000ULL); /* the documented tag */
    page[0] = 0;
    ferry_instance_resume_vcpus(t.inst);
    char want[96];
    snprintf(want, sizeof(want), "VERIFY FAIL mem 0 page=0x%llx want=0x%llx got=0x0\n",
             (unsigned long long)gpa, (unsigned long long)(gpa ^ 0x5a5a5a5a00000000ULL));
    free(ti_wait(&t, want));
    /* The block's sweeps stop (reported once), the dirty pages verify on. */
    char *out = ti_output(&t);
    size_t len = strlen(out);
    free(out);
    usleep(1000000);
    out = ti_output(&t);
    assert_null(strstr(out + len, "mem 0"));
    assert_non_null(strstr(out + len, "VERIFY ok pass="));
    free(out);
    ti_stop(&t);
}

static void test_vcpu_list_and_memslots_follow_hotplug(void **state)
{
    (void)state;
    Ti t;
    ti_start(&t, (FerryInstanceConfig){.ram_size = 128 << 20, .maxmem = 384 << 20, .max_cpus = 4});
    FerryError err = {0};
    FerryVm *vm = ferry_instance_vm(t.inst);
    size_t blocks0 = ferry_vm_ram_count(vm);
    assert_int_equal(ferry_instance_cont(t.inst, &err), 0);
    free(ti_wait(&t, "READY\n"));
    assert_int_equal(ferry_instance_vcpu_count(t.inst), 1);

    FerryParam slot2 = {"slot", "2"}, slot1 = {"slot", "1"};
    assert_int_equal(ferry_instance_device_add(t.inst, "cpu", "cpu2", &slot2, 1, &err), 0);
    assert_int_equal(ferry_instance_device_add(t.inst, "mem-block", "mem1", &slot1, 1, &err), 0);
    /* The memslot exists as soon as device_add returns, before the guest hears of it. */
    assert_int_equal(ferry_vm_ram_count(vm), blocks0 + 1);
    assert_non_null(ferry_vm_gpa_to_host(vm, ferry_instance_mem_block_gpa(t.inst, 1), 4096));
    free(ti_wait(&t, "ONLINE cpu 2\n"));
    free(ti_wait(&t, "ONLINE mem 1\n"));
    assert_int_equal(ferry_instance_vcpu_count(t.inst), 2);
    FerryVcpu *v = ferry_instance_vcpu_at(t.inst, 1);
    assert_int_equal(ferry_vcpu_id(v), 2);

    /* State of the hotplugged vCPU while paused: it runs the firmware's AP loop (64-bit). */
    ferry_instance_pause_vcpus(t.inst);
    FerryCpuState *st = malloc(sizeof(*st));
    assert_int_equal(ferry_cpu_state_get(v, st, &err), 0);
    assert_true(st->sregs.efer & 0x400); /* LMA */
    assert_true(st->regs.rip >= 0x100000 && st->regs.rip < 0x200000);
    free(st);
    ferry_instance_resume_vcpus(t.inst);

    /* A third block exceeds maxmem (128M + 2 blocks = 384M). */
    FerryParam slot0 = {"slot", "0"};
    assert_int_equal(ferry_instance_device_add(t.inst, "mem-block", "m0", &slot0, 1, &err), 0);
    FerryParam slot_x = {"slot", "0"};
    assert_true(ferry_instance_device_add(t.inst, "mem-block", "m9", &slot_x, 1, &err) < 0);

    /* During an outgoing migration: refused with QEMU's wording; release keeps the memslot
     * until the migration ends. */
    ferry_instance_set_migration_active(t.inst, true);
    FerryParam slot3 = {"slot", "3"};
    assert_true(ferry_instance_device_add(t.inst, "cpu", "cpu3", &slot3, 1, &err) < 0);
    assert_string_equal(err.msg, "device_add is blocked while migration is active");
    assert_true(ferry_instance_device_del(t.inst, "mem1", &err) < 0);
    ferry_instance_set_migration_active(t.inst, false);

    assert_int_equal(ferry_instance_device_del(t.inst, "mem1", &err), 0);
    assert_int_equal(ferry_instance_device_del(t.inst, "cpu2", &err), 0);
    free(ti_wait(&t, "UNPLUGGED mem 1\n"));
    free(ti_wait(&t, "UNPLUGGED cpu 2\n"));
    for (int i = 0; i < 500 && __atomic_load_n(&t.deleted, __ATOMIC_SEQ_CST) < 2; i++)
        usleep(10000);
    assert_int_equal(t.deleted, 2);
    assert_int_equal(ferry_instance_vcpu_count(t.inst), 1);
    assert_null(ferry_vm_gpa_to_host(vm, ferry_instance_mem_block_gpa(t.inst, 1), 4096));
    assert_int_equal(ferry_vm_ram_count(vm), blocks0 + 1); /* m0 stays */
    ti_stop(&t);
}

static void test_incoming_waits(void **state)
{
    (void)state;
    Ti t;
    ti_start(&t, (FerryInstanceConfig){.ram_size = 64 << 20, .max_cpus = 2, .incoming = true});
    FerryError err = {0};
    assert_int_equal(ferry_instance_runstate(t.inst), FERRY_RUN_INMIGRATE);
    /* Coldplug before the stream (S2), cont only records autostart. */
    FerryParam slot1 = {"slot", "1"};
    assert_int_equal(ferry_instance_device_add(t.inst, "cpu", "cpu1", &slot1, 1, &err), 0);
    assert_int_equal(ferry_instance_cont(t.inst, &err), 0);
    assert_true(ferry_instance_autostart(t.inst));
    assert_int_equal(ferry_instance_runstate(t.inst), FERRY_RUN_INMIGRATE);
    usleep(100000);
    char *out = ti_output(&t);
    assert_string_equal(out, ""); /* nothing booted */
    free(out);
    FerryConnectorInfo ci;
    ferry_instance_lock(t.inst);
    assert_int_equal(ferry_machine_connector_find(ferry_instance_machine(t.inst),
                                                  FERRY_CONN_INDEX(FERRY_CONN_CPU, 1), &ci),
                     0);
    ferry_instance_unlock(t.inst);
    assert_int_equal(ci.state, FERRY_CONN_CONFIGURED);
    /* A vCPU the stream names is adopted without touching its registers. */
    assert_non_null(ferry_instance_vcpu_adopt(t.inst, 1, &err));
    assert_int_equal(ferry_instance_vcpu_count(t.inst), 2);
    assert_int_equal(ferry_instance_incoming_failed(t.inst, &err), 0);
    assert_int_equal(ferry_instance_runstate(t.inst), FERRY_RUN_SHUTDOWN);
    ti_stop(&t);
}

static void test_source_run_states(void **state)
{
    (void)state;
    Ti t;
    ti_start(&t, (FerryInstanceConfig){.ram_size = 64 << 20});
    FerryError err = {0};
    assert_int_equal(ferry_instance_runstate(t.inst), FERRY_RUN_PRELAUNCH);
    assert_int_equal(ferry_instance_cont(t.inst, &err), 0);
    assert_int_equal(t.resumes, 1);
    free(ti_wait(&t, "READY\n"));
    /* A failed migration: STOP at stop-and-copy, RESUME after, still running. */
    ferry_instance_migration_stop(t.inst);
    ferry_instance_migration_resume(t.inst);
    assert_int_equal(t.stops, 1);
    assert_int_equal(t.resumes, 2);
    assert_int_equal(ferry_instance_runstate(t.inst), FERRY_RUN_RUNNING);
    /* A completed one: postmigrate, paused; management may cont. */
    ferry_instance_migration_stop(t.inst);
    assert_int_equal(ferry_instance_outgoing_done(t.inst, &err), 0);
    assert_int_equal(ferry_instance_runstate(t.inst), FERRY_RUN_POSTMIGRATE);
    assert_int_equal(ferry_instance_cont(t.inst, &err), 0);
    assert_int_equal(ferry_instance_runstate(t.inst), FERRY_RUN_RUNNING);
    /* Shutdown: cont needs a reset first (QEMU's message). */
    assert_int_equal(ferry_instance_shutdown(t.inst, false, "host-qmp-quit", &err), 0);
    assert_true(ferry_instance_cont(t.inst, &err) < 0);
    assert_string_equal(err.msg, "Resetting the Virtual Machine is required");
    assert_int_equal(ferry_instance_reset(t.inst, false, "host-qmp-system-reset", &err), 0);
    assert_int_equal(ferry_instance_runstate(t.inst), FERRY_RUN_PRELAUNCH);
    assert_int_equal(ferry_instance_cont(t.inst, &err), 0);
    char *out = NULL;
    for (int i = 0; i < 2000; i++) {
        free(out);
        out = ti_output(&t);
        char *first = strstr(out, "READY\n");
        if (first && strstr(first + 1, "READY\n"))
            break;
        usleep(10000);
    }
    char *first = strstr(out, "READY\n");
    assert_non_null(first);
    assert_non_null(strstr(first + 1, "BOOT ferry-fw")); /* rebooted after the reset */
    free(out);
    ti_stop(&t);
}

typedef struct Ctl {
    Ti *t;
    int done; /* atomic: 1 after stop, 2 after cont */
    int rc_stop, rc_cont;
} Ctl;

static void *ctl_stop_cont(void *arg)
{
    Ctl *c = arg;
    FerryError err = {0};
    c->rc_stop = ferry_instance_stop(c->t->inst, &err);
    __atomic_store_n(&c->done, 1, __ATOMIC_SEQ_CST);
    c->rc_cont = ferry_instance_cont(c->t->inst, &err);
    __atomic_store_n(&c->done, 2, __ATOMIC_SEQ_CST);
    return NULL;
}

/* stop/cont from management during the source's switchover window wait for its end: a cont
 * there would run the guest while its final pages and device state are being read. */
static void test_switchover_holds_control(void **state)
{
    (void)state;
    Ti t;
    ti_start(&t, (FerryInstanceConfig){.ram_size = 64 << 20});
    FerryError err = {0};
    assert_int_equal(ferry_instance_cont(t.inst, &err), 0);
    free(ti_wait(&t, "READY\n"));
    /* A failed migration: the commands apply after the resume, in order. */
    ferry_instance_migration_stop(t.inst);
    Ctl c = {.t = &t};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, ctl_stop_cont, &c), 0);
    usleep(200 * 1000);
    assert_int_equal(__atomic_load_n(&c.done, __ATOMIC_SEQ_CST), 0);
    assert_int_equal(ferry_instance_runstate(t.inst), FERRY_RUN_RUNNING);
    assert_int_equal(t.stops, 1); /* only the switchover's STOP */
    ferry_instance_migration_resume(t.inst);
    pthread_join(th, NULL);
    assert_int_equal(c.rc_stop, 0);
    assert_int_equal(c.rc_cont, 0);
    assert_int_equal(t.stops, 2);
    assert_int_equal(ferry_instance_runstate(t.inst), FERRY_RUN_RUNNING);
    /* A completed one: they apply to the postmigrate source. */
    ferry_instance_migration_stop(t.inst);
    c = (Ctl){.t = &t};
    assert_int_equal(pthread_create(&th, NULL, ctl_stop_cont, &c), 0);
    usleep(200 * 1000);
    assert_int_equal(__atomic_load_n(&c.done, __ATOMIC_SEQ_CST), 0);
    assert_int_equal(ferry_instance_outgoing_done(t.inst, &err), 0);
    pthread_join(th, NULL);
    assert_int_equal(c.rc_stop, 0);
    assert_int_equal(c.rc_cont, 0);
    assert_int_equal(ferry_instance_runstate(t.inst), FERRY_RUN_RUNNING);
    ti_stop(&t);
}

int main(int argc, char **argv)
{
    kt_require_kvm("kvm-instance");
    if (argc < 2) {
        fprintf(stderr, "usage: %s FERRY_FW_BIN\n", argv[0]);
        return 2;
    }
    fw_path = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dirty_detects_stale_page),
        cmocka_unit_test(test_dirty_detects_bad_mem_block),
        cmocka_unit_test(test_vcpu_list_and_memslots_follow_hotplug),
        cmocka_unit_test(test_incoming_waits),
        cmocka_unit_test(test_source_run_states),
        cmocka_unit_test(test_switchover_holds_control),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
