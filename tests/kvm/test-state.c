/* State round trip, Linux selftests style (x86/state_test.c): run the dirty.img guest, pause,
 * save every vCPU and VM state, move RAM to a brand-new VM, restore, compare field by field,
 * resume and check the guest carries on (more 'B's, page counters still increasing). */
#include "ferry/vmm/cpu-state.h"
#include "kvm-test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four headers above first */
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cmocka.h>

#define RAM         (128ULL << 20)
#define COUNTER_GPA (1ULL << 20) /* first page the guest increments */

static const char *guest_dir;

static void boot(KtGuest *g)
{
    char path[4096];
    FerryError err = {0};
    snprintf(path, sizeof(path), "%s/dirty.img", guest_dir);
    kt_guest_init(g, RAM, -1);
    if (ferry_boot_sector(g->vm, g->bsp, path, &err) < 0)
        kt_die("ferry_boot_sector", &err);
    ferry_vcpu_start(g->bsp);
}

#define MAX_VCPUS 2

/* Pause src, move it into a new VM with the same vCPU ids (same output file), compare every
 * vCPU and the VM state field by field, destroy src. */
static void migrate(KtGuest *src, KtGuest *dst)
{
    FerryError err = {0};
    char what[256];
    static FerryCpuState saved[MAX_VCPUS], restored;
    FerryVmState vms, vmr;
    ferry_vcpus_pause(src->vcpus);
    unsigned n = ferry_vcpus_count(src->vcpus);
    assert_true(n >= 1 && n <= MAX_VCPUS);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(ferry_cpu_state_get(ferry_vcpus_get(src->vcpus, i), &saved[i], &err), 0);
        assert_true(saved[i].msr_count > 0);
    }
    assert_int_equal(ferry_vm_state_get(src->vm, &vms, &err), 0);
    assert_int_equal(vms.has_pit, 1);

    kt_guest_init(dst, RAM, dup(src->out_fd));
    for (unsigned i = 1; i < n; i++)
        assert_non_null(ferry_vcpus_add(dst->vcpus, saved[i].id, &err));
    memcpy(ferry_vm_gpa_to_host(dst->vm, 0, RAM), ferry_vm_gpa_to_host(src->vm, 0, RAM), RAM);
    kt_guest_destroy(src); /* the source is gone before the destination runs */

    assert_int_equal(ferry_vm_state_set(dst->vm, &vms, &err), 0);
    for (unsigned i = 0; i < n; i++) {
        FerryVcpu *v = ferry_vcpus_get(dst->vcpus, i);
        FerryMsrSkips skipped;
        int r = ferry_cpu_state_set(v, &saved[i], &skipped, &err);
        if (r < 0)
            fail_msg("restore: %s", err.msg);
        for (uint32_t k = 0; k < skipped.count; k++) {
            printf("restore skipped MSR 0x%x (known unsettable on this host)\n", skipped.index[k]);
            assert_true(ferry_msr_known_unsettable(skipped.index[k]));
        }
        assert_int_equal(ferry_cpu_state_get(v, &restored, &err), 0);
        /* A skipped MSR keeps the destination's own value; compare the rest exactly. */
        for (uint32_t k = 0; k < skipped.count; k++)
            for (uint32_t j = 0; j < saved[i].msr_count; j++)
                if (saved[i].msrs[j].index == skipped.index[k])
                    restored.msrs[j].value = saved[i].msrs[j].value;
        if (ferry_cpu_state_diff(&saved[i], &restored, true, what, sizeof(what)))
            fail_msg("vCPU %u state differs after restore: %s", saved[i].id, what);
        ferry_vcpu_start(v); /* runs once the caller resumes the set */
        printf("round trip vCPU %u at rip=0x%llx cr0=0x%llx: %u MSRs, xsave %u bytes, equal\n",
               saved[i].id, (unsigned long long)saved[i].regs.rip,
               (unsigned long long)saved[i].sregs.cr0, saved[i].msr_count, saved[i].fpu_size);
    }
    assert_int_equal(ferry_vm_state_get(dst->vm, &vmr, &err), 0);
    if (ferry_vm_state_diff(&vms, &vmr, true, what, sizeof(what)))
        fail_msg("VM state differs after restore: %s", what);
}

/* A real-mode AP program at 0x8000: count a 32-bit word at 0x9000 forever (32 bits so it
 * cannot wrap back to an equal value between two looks). */
static const uint8_t ap_code[] = {
    0x66, 0xff, 0x06, 0x00, 0x90, /* inc dword [0x9000] */
    0xeb, 0xf9,                   /* jmp short -7 */
};
#define AP_COUNTER_GPA 0x9000

static void test_state_round_trip_at_several_points(void **state)
{
    (void)state;
    FerryError err = {0};
    KtGuest a, b;
    boot(&a);
    /* Point 1: before the guest ran at all (real mode at 0x7c00). */
    migrate(&a, &b);
    ferry_vcpus_resume(b.vcpus);
    assert_true(kt_wait_chars(&b, 0, 'A', 1, 20.0) == 1);
    /* A second vCPU, hotplugged, counting in its own page: its state must travel too. */
    memcpy(ferry_vm_gpa_to_host(b.vm, 0x8000, sizeof(ap_code)), ap_code, sizeof(ap_code));
    FerryVcpu *ap = ferry_vcpus_add(b.vcpus, 1, &err);
    assert_non_null(ap);
    assert_int_equal(ferry_boot_real_mode(ap, 0x8000, 0, &err), 0);
    ferry_vcpu_start(ap);
    /* Points 2..4: while the guest loops in protected mode, after more passes each time. */
    KtGuest *src = &b, *dst = &a;
    for (int point = 2; point <= 4; point++) {
        size_t before = kt_wait_chars(src, 0, 'B', (size_t)point, 20.0);
        migrate(src, dst);
        assert_int_equal(ferry_vcpus_count(dst->vcpus), 2);
        volatile uint8_t *counter = ferry_vm_gpa_to_host(dst->vm, COUNTER_GPA, 1);
        volatile uint32_t *ap_counter = ferry_vm_gpa_to_host(dst->vm, AP_COUNTER_GPA, 4);
        uint8_t c0 = *counter;
        uint32_t a0 = *ap_counter;
        ferry_vcpus_resume(dst->vcpus);
        size_t after = kt_wait_chars(dst, 0, 'B', before + 2, 20.0);
        ferry_vcpus_pause(dst->vcpus);
        assert_true(after >= before + 2); /* serial keeps printing B */
        uint8_t c1 = *counter;
        uint32_t a1 = *ap_counter;
        /* At least two passes ran, each adding 1 to the page: the counter moved on. */
        assert_int_not_equal(c0, c1);
        assert_true(a1 > a0); /* and the AP kept counting too */
        assert_int_equal(dst->events, 0);
        printf("point %d: %zu B before, %zu after; counter %u -> %u, AP counter %u -> %u\n", point,
               before, after, c0, c1, a0, a1);
        ferry_vcpus_resume(dst->vcpus);
        KtGuest *t = src;
        src = dst;
        dst = t;
    }
    kt_guest_destroy(src);
}

static void test_msr_restore_refuses_unknown_failures(void **state)
{
    (void)state;
    FerryError err = {0};
    static FerryCpuState st;
    KtGuest g;
    boot(&g);
    assert_int_equal(ferry_cpu_state_get(g.bsp, &st, &err), 0);
    /* Every MSR that was read either writes back or is on the known list (reported). */
    FerryMsrSkips skipped;
    assert_int_equal(ferry_cpu_state_set(g.bsp, &st, &skipped, &err), 0);
    for (uint32_t i = 0; i < skipped.count; i++)
        printf("MSR 0x%x reads but cannot be written back: skipped\n", skipped.index[i]);
    /* IA32_ARCH_CAPABILITIES as a source configured from the host's feature MSR would send it
     * (QEMU -cpu host does): PVM refuses any non-zero value. The restore must then skip it and
     * say so; a host that accepts it must hold the value afterwards. */
    struct {
        struct kvm_msrs m;
        struct kvm_msr_entry e;
    } feat = {.m.nmsrs = 1, .e = {.index = 0x10a}};
    if (ioctl(ferry_vm_kvm_fd(g.vm), KVM_GET_MSRS, &feat) == 1 && feat.e.data) {
        uint32_t at = UINT32_MAX;
        for (uint32_t i = 0; i < st.msr_count; i++)
            if (st.msrs[i].index == 0x10a)
                at = i;
        if (at != UINT32_MAX) {
            st.msrs[at].value = feat.e.data;
            assert_int_equal(ferry_cpu_state_set(g.bsp, &st, &skipped, &err), 0);
            static FerryCpuState back;
            assert_int_equal(ferry_cpu_state_get(g.bsp, &back, &err), 0);
            bool was_skipped = skipped.count == 1 && skipped.index[0] == 0x10a;
            printf("MSR 0x10a = 0x%llx: %s\n", (unsigned long long)feat.e.data,
                   was_skipped ? "refused by KVM, skipped and reported" : "written back");
            assert_true(was_skipped || back.msrs[at].value == feat.e.data);
            st.msrs[at].value = back.msrs[at].value;
        }
    }
    /* An MSR KVM refuses that is not on the list must fail the restore, naming it. */
    assert_true(st.msr_count < FERRY_CPU_MSRS_MAX);
    st.msrs[st.msr_count++] = (FerryMsr){0x4d5a0001, 1}; /* no such MSR */
    assert_int_equal(ferry_cpu_state_set(g.bsp, &st, &skipped, &err), -EINVAL);
    printf("bogus MSR: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "MSR 0x4d5a0001"));
    assert_false(ferry_msr_known_unsettable(0x4d5a0001));
    /* State for another vCPU is refused. */
    st.msr_count--;
    st.id = 7;
    assert_int_equal(ferry_cpu_state_set(g.bsp, &st, NULL, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "vCPU 7"));
    kt_guest_destroy(&g);
}

int main(int argc, char **argv)
{
    kt_require_kvm("kvm-state");
    if (argc < 2) {
        fprintf(stderr, "usage: %s GUEST_DIR\n", argv[0]);
        return 2;
    }
    guest_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_round_trip_at_several_points),
        cmocka_unit_test(test_msr_restore_refuses_unknown_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
