/* vCPU and VM state save/restore: converts KVM's structs to Ferry's fixed-size plain structs
 * (so the state codec can describe them) and back, and compares them field by field. */
#include "ferry/vmm/cpu-state.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define MSR_IA32_TSC               0x10
#define MSR_IA32_ARCH_CAPABILITIES 0x10a
#define LAPIC_TMCCT                0x390 /* timer current count: computed from host time on read */

/* MSRs that KVM reports in KVM_GET_MSR_INDEX_LIST and lets userspace read but refuses to
 * write back on some hosts. Only these are skipped on restore; anything else is an error.
 *  - 0x10a IA32_ARCH_CAPABILITIES: PVM's KVM rejects host writes (QEMU -cpu host fails with
 *    "failed to set MSR 0x10a" here, see reference/host-kvm.md). The value is a host property
 *    that the destination's KVM already reports, so skipping it loses nothing on one host. */
static const uint32_t known_unsettable[] = {MSR_IA32_ARCH_CAPABILITIES};

bool ferry_msr_known_unsettable(uint32_t index)
{
    for (size_t i = 0; i < sizeof(known_unsettable) / sizeof(known_unsettable[0]); i++)
        if (known_unsettable[i] == index)
            return true;
    return false;
}

#define VCPU_IOCTL(v, req, arg, err)                                                               \
    (ioctl(ferry_vcpu_fd(v), req, arg) < 0 ? ferry_error_set(err, -errno, "vCPU %u: " #req ": %s", \
                                                             ferry_vcpu_id(v), strerror(errno))    \
                                           : 0)
#define VM_IOCTL(vm, req, arg, what, err)                                                          \
    (ioctl(ferry_vm_fd(vm), req, arg) < 0                                                          \
         ? ferry_error_set(err, -errno, "VM %s: " #req ": %s", what, strerror(errno))              \
         : 0)

static void seg_from_kvm(FerrySegment *d, const struct kvm_segment *s)
{
    *d = (FerrySegment){.base = s->base,
                        .limit = s->limit,
                        .selector = s->selector,
                        .type = s->type,
                        .present = s->present,
                        .dpl = s->dpl,
                        .db = s->db,
                        .s = s->s,
                        .l = s->l,
                        .g = s->g,
                        .avl = s->avl,
                        .unusable = s->unusable};
}

static void seg_to_kvm(struct kvm_segment *d, const FerrySegment *s)
{
    *d = (struct kvm_segment){.base = s->base,
                              .limit = s->limit,
                              .selector = s->selector,
                              .type = s->type,
                              .present = s->present,
                              .dpl = s->dpl,
                              .db = s->db,
                              .s = s->s,
                              .l = s->l,
                              .g = s->g,
                              .avl = s->avl,
                              .unusable = s->unusable};
}

/* The same member list drives both directions so they cannot drift apart. */
/* X-macro member lists, laid out by hand */
// clang-format off
#define REGS_FIELDS(X)                                                                             \
    X(rax) X(rbx) X(rcx) X(rdx) X(rsi) X(rdi) X(rsp) X(rbp) X(r8) X(r9) X(r10) X(r11) X(r12)       \
    X(r13) X(r14) X(r15) X(rip) X(rflags)
#define SEGS(X) X(cs) X(ds) X(es) X(fs) X(gs) X(ss) X(tr) X(ldt)
#define CRS(X)  X(cr0) X(cr2) X(cr3) X(cr4) X(cr8) X(efer) X(apic_base)
// clang-format on

static void sregs_from_kvm(FerryCpuSregs *d, const struct kvm_sregs *s)
{
#define SEG_FROM(n) seg_from_kvm(&d->n, &s->n);
#define CR_COPY(n)  d->n = s->n;
    SEGS(SEG_FROM)
    CRS(CR_COPY)
    d->gdt = (FerryDtable){s->gdt.base, s->gdt.limit};
    d->idt = (FerryDtable){s->idt.base, s->idt.limit};
    memcpy(d->interrupt_bitmap, s->interrupt_bitmap, sizeof(d->interrupt_bitmap));
}

static void sregs_to_kvm(struct kvm_sregs *d, const FerryCpuSregs *s)
{
#define SEG_TO(n) seg_to_kvm(&d->n, &s->n);
    memset(d, 0, sizeof(*d));
    SEGS(SEG_TO)
    CRS(CR_COPY)
    d->gdt.base = s->gdt.base;
    d->gdt.limit = s->gdt.limit;
    d->idt.base = s->idt.base;
    d->idt.limit = s->idt.limit;
    memcpy(d->interrupt_bitmap, s->interrupt_bitmap, sizeof(d->interrupt_bitmap));
}

static void events_from_kvm(FerryCpuEvents *d, const struct kvm_vcpu_events *s)
{
    *d = (FerryCpuEvents){.exception_injected = s->exception.injected,
                          .exception_nr = s->exception.nr,
                          .exception_has_error_code = s->exception.has_error_code,
                          .exception_pending = s->exception.pending,
                          .exception_error_code = s->exception.error_code,
                          .exception_has_payload = s->exception_has_payload,
                          .exception_payload = s->exception_payload,
                          .interrupt_injected = s->interrupt.injected,
                          .interrupt_nr = s->interrupt.nr,
                          .interrupt_soft = s->interrupt.soft,
                          .interrupt_shadow = s->interrupt.shadow,
                          .nmi_injected = s->nmi.injected,
                          .nmi_pending = s->nmi.pending,
                          .nmi_masked = s->nmi.masked,
                          .sipi_vector = s->sipi_vector,
                          .flags = s->flags,
                          .smi_smm = s->smi.smm,
                          .smi_pending = s->smi.pending,
                          .smi_inside_nmi = s->smi.smm_inside_nmi,
                          .smi_latched_init = s->smi.latched_init,
                          .triple_fault_pending = s->triple_fault.pending};
}

static void events_to_kvm(struct kvm_vcpu_events *d, const FerryCpuEvents *s)
{
    memset(d, 0, sizeof(*d));
    d->exception.injected = s->exception_injected;
    d->exception.nr = s->exception_nr;
    d->exception.has_error_code = s->exception_has_error_code;
    d->exception.pending = s->exception_pending;
    d->exception.error_code = s->exception_error_code;
    d->exception_has_payload = s->exception_has_payload;
    d->exception_payload = s->exception_payload;
    d->interrupt.injected = s->interrupt_injected;
    d->interrupt.nr = s->interrupt_nr;
    d->interrupt.soft = s->interrupt_soft;
    d->interrupt.shadow = s->interrupt_shadow;
    d->nmi.injected = s->nmi_injected;
    d->nmi.pending = s->nmi_pending;
    d->nmi.masked = s->nmi_masked;
    d->sipi_vector = s->sipi_vector;
    /* Write back exactly the parts KVM said were valid when it saved them. */
    d->flags = s->flags;
    d->smi.smm = s->smi_smm;
    d->smi.pending = s->smi_pending;
    d->smi.smm_inside_nmi = s->smi_inside_nmi;
    d->smi.latched_init = s->smi_latched_init;
    d->triple_fault.pending = s->triple_fault_pending;
}

static struct kvm_msr_list *msr_index_list(FerryVm *vm, FerryError *err)
{
    struct kvm_msr_list probe = {.nmsrs = 0};
    int kvm = ferry_vm_kvm_fd(vm);
    if (ioctl(kvm, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG) {
        ferry_error_set(err, -errno, "KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
        return NULL;
    }
    struct kvm_msr_list *l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(uint32_t));
    if (!l) {
        ferry_error_set(err, -ENOMEM, "MSR list: out of memory");
        return NULL;
    }
    l->nmsrs = probe.nmsrs;
    if (ioctl(kvm, KVM_GET_MSR_INDEX_LIST, l) < 0) {
        ferry_error_set(err, -errno, "KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
        free(l);
        return NULL;
    }
    return l;
}

static struct kvm_msrs *msrs_alloc(uint32_t n)
{
    return calloc(1, sizeof(struct kvm_msrs) + n * sizeof(struct kvm_msr_entry));
}

static int get_msrs(FerryVcpu *v, FerryCpuState *st, FerryError *err)
{
    struct kvm_msr_list *list = msr_index_list(ferry_vcpu_vm(v), err);
    if (!list)
        return err ? err->code : -ENOMEM;
    struct kvm_msrs *m = msrs_alloc(list->nmsrs);
    int r = 0;
    if (!m) {
        r = ferry_error_set(err, -ENOMEM, "vCPU %u: MSRs: out of memory", ferry_vcpu_id(v));
        goto out_free_list;
    }
    st->msr_count = 0;
    /* KVM_GET_MSRS stops at the first MSR it cannot read and returns how many it read; such
     * an MSR (absent for this CPU model) is left out and reading resumes after it. */
    for (uint32_t at = 0; at < list->nmsrs;) {
        m->nmsrs = list->nmsrs - at;
        for (uint32_t i = 0; i < m->nmsrs; i++)
            m->entries[i] = (struct kvm_msr_entry){.index = list->indices[at + i]};
        int n = ioctl(ferry_vcpu_fd(v), KVM_GET_MSRS, m);
        if (n < 0) {
            r = ferry_error_set(err, -errno, "vCPU %u: KVM_GET_MSRS: %s", ferry_vcpu_id(v),
                                strerror(errno));
            goto out_free_msrs;
        }
        for (int i = 0; i < n; i++) {
            if (st->msr_count == FERRY_CPU_MSRS_MAX) {
                r = ferry_error_set(err, -E2BIG, "vCPU %u: more than %d MSRs", ferry_vcpu_id(v),
                                    FERRY_CPU_MSRS_MAX);
                goto out_free_msrs;
            }
            st->msrs[st->msr_count++] = (FerryMsr){m->entries[i].index, m->entries[i].data};
        }
        at += (uint32_t)n + 1; /* skip the unreadable one (or step past the end) */
    }
out_free_msrs:
    free(m);
out_free_list:
    free(list);
    return r;
}

static int set_msrs(FerryVcpu *v, const FerryCpuState *st, FerryMsrSkips *skipped, FerryError *err)
{
    if (skipped)
        skipped->count = 0;
    struct kvm_msrs *m = msrs_alloc(st->msr_count);
    if (!m)
        return ferry_error_set(err, -ENOMEM, "vCPU %u: MSRs: out of memory", ferry_vcpu_id(v));
    int r = 0;
    for (uint32_t at = 0; at < st->msr_count;) {
        m->nmsrs = st->msr_count - at;
        for (uint32_t i = 0; i < m->nmsrs; i++)
            m->entries[i] = (struct kvm_msr_entry){.index = st->msrs[at + i].index,
                                                   .data = st->msrs[at + i].value};
        int n = ioctl(ferry_vcpu_fd(v), KVM_SET_MSRS, m);
        if (n < 0) {
            r = ferry_error_set(err, -errno, "vCPU %u: KVM_SET_MSRS: %s", ferry_vcpu_id(v),
                                strerror(errno));
            break;
        }
        at += (uint32_t)n;
        if (at == st->msr_count)
            break;
        const FerryMsr *bad = &st->msrs[at];
        if (!ferry_msr_known_unsettable(bad->index)) {
            r = ferry_error_set(err, -EINVAL,
                                "vCPU %u: MSR 0x%x: KVM refused value 0x%" PRIx64
                                " (not on the known-unsettable list)",
                                ferry_vcpu_id(v), bad->index, bad->value);
            break;
        }
        if (skipped && skipped->count < FERRY_MSR_SKIP_MAX)
            skipped->index[skipped->count++] = bad->index;
        at++;
    }
    free(m);
    return r;
}

static int get_fpu(FerryVcpu *v, FerryCpuState *st, FerryError *err)
{
    const FerryVmCaps *caps = ferry_vm_caps(ferry_vcpu_vm(v));
    if (caps->xsave) {
        size_t size = caps->xsave2_size > (int)sizeof(struct kvm_xsave) ? (size_t)caps->xsave2_size
                                                                        : sizeof(struct kvm_xsave);
        if (size > FERRY_CPU_XSAVE_MAX)
            return ferry_error_set(err, -E2BIG, "vCPU %u: XSAVE area of %zu bytes exceeds %d",
                                   ferry_vcpu_id(v), size, FERRY_CPU_XSAVE_MAX);
        /* st->fpu is large enough for either ioctl and suitably aligned (offset after u32s);
         * KVM copies bytes, so alignment is not required. */
        int r = caps->xsave2_size ? VCPU_IOCTL(v, KVM_GET_XSAVE2, st->fpu, err)
                                  : VCPU_IOCTL(v, KVM_GET_XSAVE, st->fpu, err);
        if (r < 0)
            return r;
        st->fpu_kind = FERRY_FPU_XSAVE;
        st->fpu_size = (uint32_t)size;
        return 0;
    }
    struct kvm_fpu fpu;
    int r = VCPU_IOCTL(v, KVM_GET_FPU, &fpu, err);
    if (r < 0)
        return r;
    memcpy(st->fpu, &fpu, sizeof(fpu));
    st->fpu_kind = FERRY_FPU_LEGACY;
    st->fpu_size = sizeof(fpu);
    return 0;
}

static int set_fpu(FerryVcpu *v, const FerryCpuState *st, FerryError *err)
{
    switch (st->fpu_kind) {
    case FERRY_FPU_XSAVE:
        if (!ferry_vm_caps(ferry_vcpu_vm(v))->xsave)
            return ferry_error_set(err, -ENOTSUP, "vCPU %u: XSAVE state but KVM lacks XSAVE",
                                   ferry_vcpu_id(v));
        return VCPU_IOCTL(v, KVM_SET_XSAVE, (void *)st->fpu, err);
    case FERRY_FPU_LEGACY: {
        struct kvm_fpu fpu;
        memcpy(&fpu, st->fpu, sizeof(fpu));
        return VCPU_IOCTL(v, KVM_SET_FPU, &fpu, err);
    }
    default:
        return ferry_error_set(err, -EINVAL, "vCPU %u: fpu_kind %u unknown", ferry_vcpu_id(v),
                               st->fpu_kind);
    }
}

int ferry_cpu_state_get(FerryVcpu *v, FerryCpuState *st, FerryError *err)
{
    const FerryVmCaps *caps = ferry_vm_caps(ferry_vcpu_vm(v));
    memset(st, 0, sizeof(*st));
    st->id = ferry_vcpu_id(v);

    struct kvm_regs regs;
    int r = VCPU_IOCTL(v, KVM_GET_REGS, &regs, err);
    if (r < 0)
        return r;
#define REG_FROM(n) st->regs.n = regs.n;
    REGS_FIELDS(REG_FROM)

    struct kvm_sregs sregs;
    if ((r = VCPU_IOCTL(v, KVM_GET_SREGS, &sregs, err)) < 0)
        return r;
    sregs_from_kvm(&st->sregs, &sregs);

    if ((r = get_fpu(v, st, err)) < 0)
        return r;
    if (caps->xcrs) {
        struct kvm_xcrs x;
        if ((r = VCPU_IOCTL(v, KVM_GET_XCRS, &x, err)) < 0)
            return r;
        st->xcr_count = x.nr_xcrs < FERRY_CPU_XCRS_MAX ? x.nr_xcrs : FERRY_CPU_XCRS_MAX;
        for (uint32_t i = 0; i < st->xcr_count; i++)
            st->xcrs[i] = (FerryXcr){x.xcrs[i].xcr, x.xcrs[i].value};
    }
    if ((r = get_msrs(v, st, err)) < 0)
        return r;

    struct kvm_lapic_state lapic;
    if ((r = VCPU_IOCTL(v, KVM_GET_LAPIC, &lapic, err)) < 0)
        return r;
    memcpy(st->lapic, lapic.regs, sizeof(st->lapic));

    if (caps->vcpu_events) {
        struct kvm_vcpu_events ev;
        if ((r = VCPU_IOCTL(v, KVM_GET_VCPU_EVENTS, &ev, err)) < 0)
            return r;
        events_from_kvm(&st->events, &ev);
    }
    struct kvm_mp_state mp;
    if ((r = VCPU_IOCTL(v, KVM_GET_MP_STATE, &mp, err)) < 0)
        return r;
    st->mp_state = mp.mp_state;
    if (caps->debugregs) {
        struct kvm_debugregs d;
        if ((r = VCPU_IOCTL(v, KVM_GET_DEBUGREGS, &d, err)) < 0)
            return r;
        memcpy(st->debugregs.db, d.db, sizeof(d.db));
        st->debugregs.dr6 = d.dr6;
        st->debugregs.dr7 = d.dr7;
        st->debugregs.flags = d.flags;
    }
    return 0;
}

int ferry_cpu_state_set(FerryVcpu *v, const FerryCpuState *st, FerryMsrSkips *skipped,
                        FerryError *err)
{
    const FerryVmCaps *caps = ferry_vm_caps(ferry_vcpu_vm(v));
    int r;
    if (st->id != ferry_vcpu_id(v))
        return ferry_error_set(err, -EINVAL, "vCPU %u: state belongs to vCPU %u", ferry_vcpu_id(v),
                               st->id);
    /* sregs first: CR0/CR4/EFER and the APIC base decide which later values are legal. */
    struct kvm_sregs sregs;
    sregs_to_kvm(&sregs, &st->sregs);
    if ((r = VCPU_IOCTL(v, KVM_SET_SREGS, &sregs, err)) < 0)
        return r;
    if ((r = set_msrs(v, st, skipped, err)) < 0)
        return r;
    struct kvm_lapic_state lapic;
    memcpy(lapic.regs, st->lapic, sizeof(lapic.regs));
    if ((r = VCPU_IOCTL(v, KVM_SET_LAPIC, &lapic, err)) < 0)
        return r;
    if (caps->xcrs && st->xcr_count) {
        struct kvm_xcrs x = {.nr_xcrs = st->xcr_count};
        for (uint32_t i = 0; i < st->xcr_count; i++)
            x.xcrs[i] = (struct kvm_xcr){.xcr = st->xcrs[i].index, .value = st->xcrs[i].value};
        if ((r = VCPU_IOCTL(v, KVM_SET_XCRS, &x, err)) < 0)
            return r;
    }
    if ((r = set_fpu(v, st, err)) < 0) /* after XCR0, which sizes the XSAVE area */
        return r;
    if (caps->vcpu_events) {
        struct kvm_vcpu_events ev;
        events_to_kvm(&ev, &st->events);
        if ((r = VCPU_IOCTL(v, KVM_SET_VCPU_EVENTS, &ev, err)) < 0)
            return r;
    }
    struct kvm_mp_state mp = {.mp_state = st->mp_state};
    if ((r = VCPU_IOCTL(v, KVM_SET_MP_STATE, &mp, err)) < 0)
        return r;
    if (caps->debugregs) {
        struct kvm_debugregs d = {
            .dr6 = st->debugregs.dr6, .dr7 = st->debugregs.dr7, .flags = st->debugregs.flags};
        memcpy(d.db, st->debugregs.db, sizeof(d.db));
        if ((r = VCPU_IOCTL(v, KVM_SET_DEBUGREGS, &d, err)) < 0)
            return r;
    }
    /* regs last: setting sregs/events may adjust RFLAGS-dependent state. */
    struct kvm_regs regs;
#define REG_TO(n) regs.n = st->regs.n;
    REGS_FIELDS(REG_TO)
    return VCPU_IOCTL(v, KVM_SET_REGS, &regs, err);
}

static void pic_from_kvm(FerryPicState *d, const struct kvm_pic_state *s)
{
    *d = (FerryPicState){s->last_irr,
                         s->irr,
                         s->imr,
                         s->isr,
                         s->priority_add,
                         s->irq_base,
                         s->read_reg_select,
                         s->poll,
                         s->special_mask,
                         s->init_state,
                         s->auto_eoi,
                         s->rotate_on_auto_eoi,
                         s->special_fully_nested_mode,
                         s->init4,
                         s->elcr,
                         s->elcr_mask};
}

static void pic_to_kvm(struct kvm_pic_state *d, const FerryPicState *s)
{
    *d = (struct kvm_pic_state){s->last_irr,
                                s->irr,
                                s->imr,
                                s->isr,
                                s->priority_add,
                                s->irq_base,
                                s->read_reg_select,
                                s->poll,
                                s->special_mask,
                                s->init_state,
                                s->auto_eoi,
                                s->rotate_on_auto_eoi,
                                s->special_fully_nested_mode,
                                s->init4,
                                s->elcr,
                                s->elcr_mask};
}

// clang-format off
#define PIT_FIELDS(X)                                                                              \
    X(count) X(latched_count) X(count_latched) X(status_latched) X(status) X(read_state)           \
    X(write_state) X(write_latch) X(rw_mode) X(mode) X(bcd) X(gate) X(count_load_time)
// clang-format on

int ferry_vm_state_get(FerryVm *vm, FerryVmState *st, FerryError *err)
{
    memset(st, 0, sizeof(*st));
    int r;
    for (int chip = 0; chip < 3; chip++) {
        struct kvm_irqchip c = {.chip_id = (uint32_t)chip};
        if ((r = VM_IOCTL(vm, KVM_GET_IRQCHIP, &c, chip == 2 ? "ioapic" : "pic", err)) < 0)
            return r;
        if (chip < 2) {
            pic_from_kvm(&st->pic[chip], &c.chip.pic);
        } else {
            st->ioapic.base_address = c.chip.ioapic.base_address;
            st->ioapic.ioregsel = c.chip.ioapic.ioregsel;
            st->ioapic.id = c.chip.ioapic.id;
            st->ioapic.irr = c.chip.ioapic.irr;
            for (int i = 0; i < FERRY_IOAPIC_PINS; i++)
                st->ioapic.redirtbl[i] = c.chip.ioapic.redirtbl[i].bits;
        }
    }
    struct kvm_pit_state2 pit;
    if (ioctl(ferry_vm_fd(vm), KVM_GET_PIT2, &pit) == 0) {
        st->has_pit = 1;
        for (int i = 0; i < 3; i++) {
#define PIT_FROM(n) st->pit[i].n = pit.channels[i].n;
            PIT_FIELDS(PIT_FROM)
        }
        st->pit_flags = pit.flags;
    } else if (errno != ENXIO) { /* ENXIO: no PIT created */
        return ferry_error_set(err, -errno, "VM pit: KVM_GET_PIT2: %s", strerror(errno));
    }
    struct kvm_clock_data clk = {0};
    if ((r = VM_IOCTL(vm, KVM_GET_CLOCK, &clk, "kvmclock", err)) < 0)
        return r;
    st->clock = clk.clock;
    st->clock_flags = clk.flags;
    return 0;
}

int ferry_vm_state_set(FerryVm *vm, const FerryVmState *st, FerryError *err)
{
    int r;
    for (int chip = 0; chip < 3; chip++) {
        struct kvm_irqchip c = {.chip_id = (uint32_t)chip};
        if (chip < 2) {
            pic_to_kvm(&c.chip.pic, &st->pic[chip]);
        } else {
            c.chip.ioapic.base_address = st->ioapic.base_address;
            c.chip.ioapic.ioregsel = st->ioapic.ioregsel;
            c.chip.ioapic.id = st->ioapic.id;
            c.chip.ioapic.irr = st->ioapic.irr;
            for (int i = 0; i < FERRY_IOAPIC_PINS; i++)
                c.chip.ioapic.redirtbl[i].bits = st->ioapic.redirtbl[i];
        }
        if ((r = VM_IOCTL(vm, KVM_SET_IRQCHIP, &c, chip == 2 ? "ioapic" : "pic", err)) < 0)
            return r;
    }
    if (st->has_pit) {
        struct kvm_pit_state2 pit = {.flags = st->pit_flags};
        for (int i = 0; i < 3; i++) {
#define PIT_TO(n) pit.channels[i].n = st->pit[i].n;
            PIT_FIELDS(PIT_TO)
        }
        if ((r = VM_IOCTL(vm, KVM_SET_PIT2, &pit, "pit", err)) < 0)
            return ferry_error_prefix(err, "(was a PIT created on this VM?) ");
    }
    /* Only the clock value is restored: the other flags describe how KVM produced it. */
    struct kvm_clock_data clk = {.clock = st->clock};
    return VM_IOCTL(vm, KVM_SET_CLOCK, &clk, "kvmclock", err);
}

/* --- field-wise comparison ------------------------------------------------------------- */

typedef struct Diff {
    char *what;
    size_t size;
    int found;
} Diff;

static bool differ(Diff *d, const char *name, const void *a, const void *b, size_t n)
{
    if (d->found || !memcmp(a, b, n))
        return false;
    d->found = 1;
    if (n <= 8) {
        uint64_t x = 0, y = 0;
        memcpy(&x, a, n);
        memcpy(&y, b, n);
        snprintf(d->what, d->size, "%s: 0x%" PRIx64 " != 0x%" PRIx64, name, x, y);
    } else {
        size_t i = 0;
        while (((const uint8_t *)a)[i] == ((const uint8_t *)b)[i])
            i++;
        snprintf(d->what, d->size, "%s[%zu]: 0x%02x != 0x%02x", name, i, ((const uint8_t *)a)[i],
                 ((const uint8_t *)b)[i]);
    }
    return true;
}

#define CMP(d, name, fa, fb) differ(d, name, &(fa), &(fb), sizeof(fa))

static void diff_seg(Diff *d, const char *seg, const FerrySegment *a, const FerrySegment *b)
{
    char n[64];
#define SEG_CMP(f)                                                                                 \
    do {                                                                                           \
        snprintf(n, sizeof(n), "sregs.%s." #f, seg);                                               \
        CMP(d, n, a->f, b->f);                                                                     \
    } while (0);
    // clang-format off
    SEG_CMP(base) SEG_CMP(limit) SEG_CMP(selector) SEG_CMP(type) SEG_CMP(present) SEG_CMP(dpl)
    SEG_CMP(db) SEG_CMP(s) SEG_CMP(l) SEG_CMP(g) SEG_CMP(avl) SEG_CMP(unusable)
    // clang-format on
}

int ferry_cpu_state_diff(const FerryCpuState *a, const FerryCpuState *b, bool ignore_volatile,
                         char *what, size_t what_size)
{
    Diff d = {what, what_size, 0};
    char n[64];
    CMP(&d, "id", a->id, b->id);
#define REG_CMP(f) CMP(&d, "regs." #f, a->regs.f, b->regs.f);
    REGS_FIELDS(REG_CMP)
#define SEG_DIFF(s) diff_seg(&d, #s, &a->sregs.s, &b->sregs.s);
    SEGS(SEG_DIFF)
    CMP(&d, "sregs.gdt.base", a->sregs.gdt.base, b->sregs.gdt.base);
    CMP(&d, "sregs.gdt.limit", a->sregs.gdt.limit, b->sregs.gdt.limit);
    CMP(&d, "sregs.idt.base", a->sregs.idt.base, b->sregs.idt.base);
    CMP(&d, "sregs.idt.limit", a->sregs.idt.limit, b->sregs.idt.limit);
#define CR_CMP(f) CMP(&d, "sregs." #f, a->sregs.f, b->sregs.f);
    CRS(CR_CMP)
    CMP(&d, "sregs.interrupt_bitmap", a->sregs.interrupt_bitmap, b->sregs.interrupt_bitmap);
    CMP(&d, "fpu_kind", a->fpu_kind, b->fpu_kind);
    CMP(&d, "fpu_size", a->fpu_size, b->fpu_size);
    if (!d.found)
        differ(&d, "fpu", a->fpu, b->fpu, a->fpu_size);
    CMP(&d, "xcr_count", a->xcr_count, b->xcr_count);
    for (uint32_t i = 0; !d.found && i < a->xcr_count; i++) {
        snprintf(n, sizeof(n), "xcrs[%u].index", i);
        CMP(&d, n, a->xcrs[i].index, b->xcrs[i].index);
        snprintf(n, sizeof(n), "xcrs[%u](0x%x).value", i, a->xcrs[i].index);
        CMP(&d, n, a->xcrs[i].value, b->xcrs[i].value);
    }
    CMP(&d, "msr_count", a->msr_count, b->msr_count);
    for (uint32_t i = 0; !d.found && i < a->msr_count; i++) {
        snprintf(n, sizeof(n), "msrs[%u].index", i);
        CMP(&d, n, a->msrs[i].index, b->msrs[i].index);
        if (ignore_volatile && a->msrs[i].index == MSR_IA32_TSC)
            continue; /* the TSC keeps counting */
        snprintf(n, sizeof(n), "msrs[%u](0x%x).value", i, a->msrs[i].index);
        CMP(&d, n, a->msrs[i].value, b->msrs[i].value);
    }
    if (ignore_volatile) {
        uint8_t la[FERRY_CPU_LAPIC_SIZE], lb[FERRY_CPU_LAPIC_SIZE];
        memcpy(la, a->lapic, sizeof(la));
        memcpy(lb, b->lapic, sizeof(lb));
        memset(la + LAPIC_TMCCT, 0, 4);
        memset(lb + LAPIC_TMCCT, 0, 4);
        differ(&d, "lapic", la, lb, sizeof(la));
    } else {
        differ(&d, "lapic", a->lapic, b->lapic, sizeof(a->lapic));
    }
#define EV_CMP(f) CMP(&d, "events." #f, a->events.f, b->events.f);
    // clang-format off
    EV_CMP(exception_injected) EV_CMP(exception_nr) EV_CMP(exception_has_error_code)
    EV_CMP(exception_pending) EV_CMP(exception_error_code) EV_CMP(exception_has_payload)
    EV_CMP(exception_payload) EV_CMP(interrupt_injected) EV_CMP(interrupt_nr)
    EV_CMP(interrupt_soft) EV_CMP(interrupt_shadow) EV_CMP(nmi_injected) EV_CMP(nmi_pending)
    EV_CMP(nmi_masked) EV_CMP(sipi_vector) EV_CMP(flags) EV_CMP(smi_smm) EV_CMP(smi_pending)
    EV_CMP(smi_inside_nmi) EV_CMP(smi_latched_init) EV_CMP(triple_fault_pending)
    CMP(&d, "mp_state", a->mp_state, b->mp_state);
    // clang-format on
    CMP(&d, "debugregs.db", a->debugregs.db, b->debugregs.db);
    CMP(&d, "debugregs.dr6", a->debugregs.dr6, b->debugregs.dr6);
    CMP(&d, "debugregs.dr7", a->debugregs.dr7, b->debugregs.dr7);
    CMP(&d, "debugregs.flags", a->debugregs.flags, b->debugregs.flags);
    return d.found;
}

int ferry_vm_state_diff(const FerryVmState *a, const FerryVmState *b, bool ignore_volatile,
                        char *what, size_t what_size)
{
    Diff d = {what, what_size, 0};
    char n[64];
    for (int p = 0; p < 2; p++) {
#define PIC_CMP(f)                                                                                 \
    do {                                                                                           \
        snprintf(n, sizeof(n), "pic[%d]." #f, p);                                                  \
        CMP(&d, n, a->pic[p].f, b->pic[p].f);                                                      \
    } while (0);
        // clang-format off
        PIC_CMP(last_irr) PIC_CMP(irr) PIC_CMP(imr) PIC_CMP(isr) PIC_CMP(priority_add)
        PIC_CMP(irq_base) PIC_CMP(read_reg_select) PIC_CMP(poll) PIC_CMP(special_mask)
        PIC_CMP(init_state) PIC_CMP(auto_eoi) PIC_CMP(rotate_on_auto_eoi)
        PIC_CMP(special_fully_nested_mode) PIC_CMP(init4) PIC_CMP(elcr) PIC_CMP(elcr_mask)
        // clang-format on
    }
    CMP(&d, "ioapic.base_address", a->ioapic.base_address, b->ioapic.base_address);
    CMP(&d, "ioapic.ioregsel", a->ioapic.ioregsel, b->ioapic.ioregsel);
    CMP(&d, "ioapic.id", a->ioapic.id, b->ioapic.id);
    CMP(&d, "ioapic.irr", a->ioapic.irr, b->ioapic.irr);
    for (int i = 0; i < FERRY_IOAPIC_PINS; i++) {
        snprintf(n, sizeof(n), "ioapic.redirtbl[%d]", i);
        CMP(&d, n, a->ioapic.redirtbl[i], b->ioapic.redirtbl[i]);
    }
    CMP(&d, "has_pit", a->has_pit, b->has_pit);
    for (int i = 0; a->has_pit && i < 3; i++) {
#define PIT_CMP(f)                                                                                 \
    do {                                                                                           \
        snprintf(n, sizeof(n), "pit[%d]." #f, i);                                                  \
        CMP(&d, n, a->pit[i].f, b->pit[i].f);                                                      \
    } while (0);
        // clang-format off
        PIT_CMP(count) PIT_CMP(latched_count) PIT_CMP(count_latched) PIT_CMP(status_latched)
        PIT_CMP(status) PIT_CMP(read_state) PIT_CMP(write_state) PIT_CMP(write_latch)
        PIT_CMP(rw_mode) PIT_CMP(mode) PIT_CMP(bcd) PIT_CMP(gate)
        if (!ignore_volatile) /* host time of the last load: KVM re-bases it */
            PIT_CMP(count_load_time)
        // clang-format on
    }
    CMP(&d, "pit_flags", a->pit_flags, b->pit_flags);
    if (!ignore_volatile)
        CMP(&d, "clock", a->clock, b->clock);
    return d.found;
}
