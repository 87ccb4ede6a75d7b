/* Complete vCPU and VM (irqchip, PIT, kvmclock) state as plain fixed-size C structs, so the
 * state codec can describe and migrate them, with get/set against KVM and a field-wise diff. */
#ifndef FERRY_VMM_CPU_STATE_H
#define FERRY_VMM_CPU_STATE_H

#include "ferry/error.h"
#include "ferry/vmm/vcpu.h"
#include "ferry/vmm/vm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FERRY_CPU_MSRS_MAX   512
#define FERRY_CPU_XSAVE_MAX  16384
#define FERRY_CPU_XCRS_MAX   16
#define FERRY_CPU_LAPIC_SIZE 1024
#define FERRY_MSR_SKIP_MAX   32

typedef struct FerryCpuRegs {
    uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    uint64_t rip, rflags;
} FerryCpuRegs;

typedef struct FerrySegment {
    uint64_t base;
    uint32_t limit;
    uint16_t selector;
    uint8_t type, present, dpl, db, s, l, g, avl, unusable;
} FerrySegment;

typedef struct FerryDtable {
    uint64_t base;
    uint16_t limit;
} FerryDtable;

typedef struct FerryCpuSregs {
    FerrySegment cs, ds, es, fs, gs, ss, tr, ldt;
    FerryDtable gdt, idt;
    uint64_t cr0, cr2, cr3, cr4, cr8, efer, apic_base;
    uint64_t interrupt_bitmap[4]; /* pending external interrupt (KVM_GET_SREGS) */
} FerryCpuSregs;

typedef struct FerryCpuEvents {
    uint8_t exception_injected, exception_nr, exception_has_error_code, exception_pending;
    uint32_t exception_error_code;
    uint8_t exception_has_payload;
    uint64_t exception_payload;
    uint8_t interrupt_injected, interrupt_nr, interrupt_soft, interrupt_shadow;
    uint8_t nmi_injected, nmi_pending, nmi_masked;
    uint32_t sipi_vector;
    uint32_t flags; /* KVM_VCPUEVENT_VALID_* as read */
    uint8_t smi_smm, smi_pending, smi_inside_nmi, smi_latched_init;
    uint8_t triple_fault_pending;
} FerryCpuEvents;

typedef struct FerryCpuDebugRegs {
    uint64_t db[4];
    uint64_t dr6, dr7;
    uint64_t flags;
} FerryCpuDebugRegs;

typedef struct FerryXcr {
    uint32_t index;
    uint64_t value;
} FerryXcr;

typedef struct FerryMsr {
    uint32_t index;
    uint64_t value;
} FerryMsr;

typedef enum FerryFpuKind {
    FERRY_FPU_NONE = 0,
    FERRY_FPU_XSAVE = 1, /* region = KVM xsave area (KVM_GET_XSAVE2/KVM_GET_XSAVE) */
    FERRY_FPU_LEGACY = 2 /* region = struct kvm_fpu (no XSAVE on the host) */
} FerryFpuKind;

typedef struct FerryCpuState {
    uint32_t id; /* vCPU / APIC id */
    FerryCpuRegs regs;
    FerryCpuSregs sregs;
    uint32_t fpu_kind; /* FerryFpuKind */
    uint32_t fpu_size; /* bytes used in fpu */
    uint8_t fpu[FERRY_CPU_XSAVE_MAX];
    uint32_t xcr_count;
    FerryXcr xcrs[FERRY_CPU_XCRS_MAX];
    uint32_t msr_count;
    FerryMsr msrs[FERRY_CPU_MSRS_MAX];
    uint8_t lapic[FERRY_CPU_LAPIC_SIZE]; /* KVM_GET_LAPIC register page */
    FerryCpuEvents events;
    uint32_t mp_state; /* KVM_MP_STATE_* */
    FerryCpuDebugRegs debugregs;
} FerryCpuState;

typedef struct FerryPicState {
    uint8_t last_irr, irr, imr, isr, priority_add, irq_base, read_reg_select, poll;
    uint8_t special_mask, init_state, auto_eoi, rotate_on_auto_eoi, special_fully_nested_mode;
    uint8_t init4, elcr, elcr_mask;
} FerryPicState;

#define FERRY_IOAPIC_PINS 24
typedef struct FerryIoapicState {
    uint64_t base_address;
    uint32_t ioregsel, id, irr;
    uint64_t redirtbl[FERRY_IOAPIC_PINS];
} FerryIoapicState;

typedef struct FerryPitChannel {
    uint32_t count;
    uint16_t latched_count;
    uint8_t count_latched, status_latched, status, read_state, write_state, write_latch;
    uint8_t rw_mode, mode, bcd, gate;
    int64_t count_load_time; /* host ns; KVM re-bases it on load */
} FerryPitChannel;

typedef struct FerryVmState {
    FerryPicState pic[2]; /* master, slave */
    FerryIoapicState ioapic;
    uint8_t has_pit;
    FerryPitChannel pit[3];
    uint32_t pit_flags;
    uint64_t clock; /* kvmclock ns (KVM_GET_CLOCK) */
    uint32_t clock_flags;
} FerryVmState;

/* MSRs a restore left out, each read but refused by KVM_SET_MSRS and on the known-unsettable
 * list (see docs/vmm.md: e.g. 0x10a IA32_ARCH_CAPABILITIES under PVM). */
typedef struct FerryMsrSkips {
    uint32_t count;
    uint32_t index[FERRY_MSR_SKIP_MAX];
} FerryMsrSkips;

/* True for MSRs known to read but not write back on some hosts; only these may be skipped. */
bool ferry_msr_known_unsettable(uint32_t index);

/* Save all state of a paused (or never started) vCPU. MSRs: every index of
 * KVM_GET_MSR_INDEX_LIST that reads; unreadable ones are left out. */
int ferry_cpu_state_get(FerryVcpu *vcpu, FerryCpuState *st, FerryError *err);
/* Restore onto a paused (or never started) vCPU, in the order KVM needs (sregs, MSRs, LAPIC,
 * XCRs, XSAVE, events, MP state, debug regs, regs). An MSR the host refuses is skipped and
 * listed in `skipped` (may be NULL) when known-unsettable, else it is an error naming it. */
int ferry_cpu_state_set(FerryVcpu *vcpu, const FerryCpuState *st, FerryMsrSkips *skipped,
                        FerryError *err);

/* VM-wide state: PIC master/slave, IOAPIC, PIT (if created), kvmclock. vCPUs paused. */
int ferry_vm_state_get(FerryVm *vm, FerryVmState *st, FerryError *err);
int ferry_vm_state_set(FerryVm *vm, const FerryVmState *st, FerryError *err);

/* Compare field by field. Returns 0 when equal, else 1 and names the first differing field
 * ("sregs.cs.base: 0x0 != 0x7c00") in `what`. Fields that move on their own while a VM exists
 * (TSC MSR, LAPIC current count, PIT load time, kvmclock) are ignored when `ignore_volatile`. */
int ferry_cpu_state_diff(const FerryCpuState *a, const FerryCpuState *b, bool ignore_volatile,
                         char *what, size_t what_size);
int ferry_vm_state_diff(const FerryVmState *a, const FerryVmState *b, bool ignore_volatile,
                        char *what, size_t what_size);

#endif
