/* FERRY_FIELD tables for FerryCpuState and FerryVmState: every member of the structs, so a
 * field added to cpu-state.h without a table entry is caught by the size-checked round trip
 * in tests/unit/migration/test-vmstate.c. */
#include "ferry/migration/vmstate.h"

#include "ferry/vmm/cpu-state.h"

static const FerryField regs_fields[] = {
    FERRY_FIELD(FerryCpuRegs, rax),
    FERRY_FIELD(FerryCpuRegs, rbx),
    FERRY_FIELD(FerryCpuRegs, rcx),
    FERRY_FIELD(FerryCpuRegs, rdx),
    FERRY_FIELD(FerryCpuRegs, rsi),
    FERRY_FIELD(FerryCpuRegs, rdi),
    FERRY_FIELD(FerryCpuRegs, rsp),
    FERRY_FIELD(FerryCpuRegs, rbp),
    FERRY_FIELD(FerryCpuRegs, r8),
    FERRY_FIELD(FerryCpuRegs, r9),
    FERRY_FIELD(FerryCpuRegs, r10),
    FERRY_FIELD(FerryCpuRegs, r11),
    FERRY_FIELD(FerryCpuRegs, r12),
    FERRY_FIELD(FerryCpuRegs, r13),
    FERRY_FIELD(FerryCpuRegs, r14),
    FERRY_FIELD(FerryCpuRegs, r15),
    FERRY_FIELD(FerryCpuRegs, rip),
    FERRY_FIELD(FerryCpuRegs, rflags),
    FERRY_END,
};
static const FerryDesc regs_desc = {.name = "regs",
                                    .version = 1,
                                    .min_version = 1,
                                    .size = sizeof(FerryCpuRegs),
                                    .fields = regs_fields};

static const FerryField seg_fields[] = {
    FERRY_FIELD(FerrySegment, base),
    FERRY_FIELD(FerrySegment, limit),
    FERRY_FIELD(FerrySegment, selector),
    FERRY_FIELD(FerrySegment, type),
    FERRY_FIELD(FerrySegment, present),
    FERRY_FIELD(FerrySegment, dpl),
    FERRY_FIELD(FerrySegment, db),
    FERRY_FIELD(FerrySegment, s),
    FERRY_FIELD(FerrySegment, l),
    FERRY_FIELD(FerrySegment, g),
    FERRY_FIELD(FerrySegment, avl),
    FERRY_FIELD(FerrySegment, unusable),
    FERRY_END,
};
static const FerryDesc seg_desc = {.name = "segment",
                                   .version = 1,
                                   .min_version = 1,
                                   .size = sizeof(FerrySegment),
                                   .fields = seg_fields};

static const FerryField dt_fields[] = {
    FERRY_FIELD(FerryDtable, base),
    FERRY_FIELD(FerryDtable, limit),
    FERRY_END,
};
static const FerryDesc dt_desc = {.name = "dtable",
                                  .version = 1,
                                  .min_version = 1,
                                  .size = sizeof(FerryDtable),
                                  .fields = dt_fields};

static const FerryField sregs_fields[] = {
    FERRY_STRUCT(FerryCpuSregs, cs, &seg_desc),
    FERRY_STRUCT(FerryCpuSregs, ds, &seg_desc),
    FERRY_STRUCT(FerryCpuSregs, es, &seg_desc),
    FERRY_STRUCT(FerryCpuSregs, fs, &seg_desc),
    FERRY_STRUCT(FerryCpuSregs, gs, &seg_desc),
    FERRY_STRUCT(FerryCpuSregs, ss, &seg_desc),
    FERRY_STRUCT(FerryCpuSregs, tr, &seg_desc),
    FERRY_STRUCT(FerryCpuSregs, ldt, &seg_desc),
    FERRY_STRUCT(FerryCpuSregs, gdt, &dt_desc),
    FERRY_STRUCT(FerryCpuSregs, idt, &dt_desc),
    FERRY_FIELD(FerryCpuSregs, cr0),
    FERRY_FIELD(FerryCpuSregs, cr2),
    FERRY_FIELD(FerryCpuSregs, cr3),
    FERRY_FIELD(FerryCpuSregs, cr4),
    FERRY_FIELD(FerryCpuSregs, cr8),
    FERRY_FIELD(FerryCpuSregs, efer),
    FERRY_FIELD(FerryCpuSregs, apic_base),
    FERRY_ARRAY(FerryCpuSregs, interrupt_bitmap),
    FERRY_END,
};
static const FerryDesc sregs_desc = {.name = "sregs",
                                     .version = 1,
                                     .min_version = 1,
                                     .size = sizeof(FerryCpuSregs),
                                     .fields = sregs_fields};

static const FerryField events_fields[] = {
    FERRY_FIELD(FerryCpuEvents, exception_injected),
    FERRY_FIELD(FerryCpuEvents, exception_nr),
    FERRY_FIELD(FerryCpuEvents, exception_has_error_code),
    FERRY_FIELD(FerryCpuEvents, exception_pending),
    FERRY_FIELD(FerryCpuEvents, exception_error_code),
    FERRY_FIELD(FerryCpuEvents, exception_has_payload),
    FERRY_FIELD(FerryCpuEvents, exception_payload),
    FERRY_FIELD(FerryCpuEvents, interrupt_injected),
    FERRY_FIELD(FerryCpuEvents, interrupt_nr),
    FERRY_FIELD(FerryCpuEvents, interrupt_soft),
    FERRY_FIELD(FerryCpuEvents, interrupt_shadow),
    FERRY_FIELD(FerryCpuEvents, nmi_injected),
    FERRY_FIELD(FerryCpuEvents, nmi_pending),
    FERRY_FIELD(FerryCpuEvents, nmi_masked),
    FERRY_FIELD(FerryCpuEvents, sipi_vector),
    FERRY_FIELD(FerryCpuEvents, flags),
    FERRY_FIELD(FerryCpuEvents, smi_smm),
    FERRY_FIELD(FerryCpuEvents, smi_pending),
    FERRY_FIELD(FerryCpuEvents, smi_inside_nmi),
    FERRY_FIELD(FerryCpuEvents, smi_latched_init),
    FERRY_FIELD(FerryCpuEvents, triple_fault_pending),
    FERRY_END,
};
static const FerryDesc events_desc = {.name = "events",
                                      .version = 1,
                                      .min_version = 1,
                                      .size = sizeof(FerryCpuEvents),
                                      .fields = events_fields};

static const FerryField debug_fields[] = {
    FERRY_ARRAY(FerryCpuDebugRegs, db),
    FERRY_FIELD(FerryCpuDebugRegs, dr6),
    FERRY_FIELD(FerryCpuDebugRegs, dr7),
    FERRY_FIELD(FerryCpuDebugRegs, flags),
    FERRY_END,
};
static const FerryDesc debug_desc = {.name = "debugregs",
                                     .version = 1,
                                     .min_version = 1,
                                     .size = sizeof(FerryCpuDebugRegs),
                                     .fields = debug_fields};

static const FerryField xcr_fields[] = {
    FERRY_FIELD(FerryXcr, index),
    FERRY_FIELD(FerryXcr, value),
    FERRY_END,
};
static const FerryDesc xcr_desc = {
    .name = "xcr", .version = 1, .min_version = 1, .size = sizeof(FerryXcr), .fields = xcr_fields};

static const FerryField msr_fields[] = {
    FERRY_FIELD(FerryMsr, index),
    FERRY_FIELD(FerryMsr, value),
    FERRY_END,
};
static const FerryDesc msr_desc = {
    .name = "msr", .version = 1, .min_version = 1, .size = sizeof(FerryMsr), .fields = msr_fields};

static const FerryField cpu_fields[] = {
    FERRY_FIELD(FerryCpuState, id),
    FERRY_STRUCT(FerryCpuState, regs, &regs_desc),
    FERRY_STRUCT(FerryCpuState, sregs, &sregs_desc),
    FERRY_FIELD(FerryCpuState, fpu_kind),
    FERRY_FIELD(FerryCpuState, fpu_size),
    FERRY_VARRAY(FerryCpuState, fpu, fpu_size),
    FERRY_FIELD(FerryCpuState, xcr_count),
    FERRY_VARRAY(FerryCpuState, xcrs, xcr_count, .desc = &xcr_desc),
    FERRY_FIELD(FerryCpuState, msr_count),
    FERRY_VARRAY(FerryCpuState, msrs, msr_count, .desc = &msr_desc),
    FERRY_BUFFER(FerryCpuState, lapic),
    FERRY_STRUCT(FerryCpuState, events, &events_desc),
    FERRY_FIELD(FerryCpuState, mp_state),
    FERRY_STRUCT(FerryCpuState, debugregs, &debug_desc),
    FERRY_END,
};
const FerryDesc ferry_cpu_state_desc = {.name = FERRY_MIG_CPU_SECTION,
                                        .version = 1,
                                        .min_version = 1,
                                        .size = sizeof(FerryCpuState),
                                        .fields = cpu_fields};

static const FerryField pic_fields[] = {
    FERRY_FIELD(FerryPicState, last_irr),
    FERRY_FIELD(FerryPicState, irr),
    FERRY_FIELD(FerryPicState, imr),
    FERRY_FIELD(FerryPicState, isr),
    FERRY_FIELD(FerryPicState, priority_add),
    FERRY_FIELD(FerryPicState, irq_base),
    FERRY_FIELD(FerryPicState, read_reg_select),
    FERRY_FIELD(FerryPicState, poll),
    FERRY_FIELD(FerryPicState, special_mask),
    FERRY_FIELD(FerryPicState, init_state),
    FERRY_FIELD(FerryPicState, auto_eoi),
    FERRY_FIELD(FerryPicState, rotate_on_auto_eoi),
    FERRY_FIELD(FerryPicState, special_fully_nested_mode),
    FERRY_FIELD(FerryPicState, init4),
    FERRY_FIELD(FerryPicState, elcr),
    FERRY_FIELD(FerryPicState, elcr_mask),
    FERRY_END,
};
static const FerryDesc pic_desc = {.name = "pic",
                                   .version = 1,
                                   .min_version = 1,
                                   .size = sizeof(FerryPicState),
                                   .fields = pic_fields};

static const FerryField ioapic_fields[] = {
    FERRY_FIELD(FerryIoapicState, base_address), FERRY_FIELD(FerryIoapicState, ioregsel),
    FERRY_FIELD(FerryIoapicState, id),           FERRY_FIELD(FerryIoapicState, irr),
    FERRY_ARRAY(FerryIoapicState, redirtbl),     FERRY_END,
};
static const FerryDesc ioapic_desc = {.name = "ioapic",
                                      .version = 1,
                                      .min_version = 1,
                                      .size = sizeof(FerryIoapicState),
                                      .fields = ioapic_fields};

static const FerryField pitch_fields[] = {
    FERRY_FIELD(FerryPitChannel, count),
    FERRY_FIELD(FerryPitChannel, latched_count),
    FERRY_FIELD(FerryPitChannel, count_latched),
    FERRY_FIELD(FerryPitChannel, status_latched),
    FERRY_FIELD(FerryPitChannel, status),
    FERRY_FIELD(FerryPitChannel, read_state),
    FERRY_FIELD(FerryPitChannel, write_state),
    FERRY_FIELD(FerryPitChannel, write_latch),
    FERRY_FIELD(FerryPitChannel, rw_mode),
    FERRY_FIELD(FerryPitChannel, mode),
    FERRY_FIELD(FerryPitChannel, bcd),
    FERRY_FIELD(FerryPitChannel, gate),
    FERRY_FIELD(FerryPitChannel, count_load_time),
    FERRY_END,
};
static const FerryDesc pitch_desc = {.name = "pit-channel",
                                     .version = 1,
                                     .min_version = 1,
                                     .size = sizeof(FerryPitChannel),
                                     .fields = pitch_fields};

static const FerryField vm_fields[] = {
    FERRY_ARRAY(FerryVmState, pic, .desc = &pic_desc),
    FERRY_STRUCT(FerryVmState, ioapic, &ioapic_desc),
    FERRY_FIELD(FerryVmState, has_pit),
    FERRY_ARRAY(FerryVmState, pit, .desc = &pitch_desc),
    FERRY_FIELD(FerryVmState, pit_flags),
    FERRY_FIELD(FerryVmState, clock),
    FERRY_FIELD(FerryVmState, clock_flags),
    FERRY_END,
};
const FerryDesc ferry_vm_state_desc = {.name = FERRY_MIG_VM_SECTION,
                                       .version = 1,
                                       .min_version = 1,
                                       .size = sizeof(FerryVmState),
                                       .fields = vm_fields};
