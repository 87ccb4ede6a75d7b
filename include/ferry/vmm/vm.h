/* A KVM virtual machine: /dev/kvm, the VM fd, in-kernel irqchip (+ optional PIT), guest RAM in
 * memslots, dirty logging for migration, IRQ lines and the port-I/O bus its vCPUs dispatch to. */
#ifndef FERRY_VMM_VM_H
#define FERRY_VMM_VM_H

#include "ferry/error.h"
#include "ferry/vmm/pio.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct FerryVm FerryVm;

/* Guest-physical layout: RAM below FERRY_VM_LOW_RAM_MAX sits at 0, the rest above 4 GiB, so
 * [3 GiB, 4 GiB) stays free for the TSS, identity map and future MMIO. */
#define FERRY_VM_LOW_RAM_MAX       (3ULL << 30)
#define FERRY_VM_HIGH_RAM_BASE     (4ULL << 30)
#define FERRY_VM_IDENTITY_MAP_ADDR 0xfeffc000ULL /* one page */
#define FERRY_VM_TSS_ADDR          0xfeffd000ULL /* three pages */
#define FERRY_VM_PAGE_SIZE         4096ULL

typedef struct FerryVmConfig {
    uint64_t ram_size;    /* bytes, multiple of 4 KiB, > 0 */
    bool pit;             /* create the in-kernel i8254 PIT (KVM_CREATE_PIT2) */
    const char *kvm_path; /* NULL means "/dev/kvm"; borrowed */
} FerryVmConfig;

/* Capabilities probed with KVM_CHECK_EXTENSION at creation. */
typedef struct FerryVmCaps {
    int api_version;
    int nr_vcpus;  /* recommended maximum */
    int max_vcpus; /* hard maximum */
    int nr_memslots;
    int xsave2_size; /* 0 when KVM_CAP_XSAVE2 is absent */
    bool xsave, xcrs, vcpu_events, debugregs, pit2, adjust_clock, immediate_exit;
    bool manual_dirty_log; /* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled on this VM */
} FerryVmCaps;

/* One RAM block = one KVM memslot backed by an anonymous private mapping. */
typedef struct FerryRamBlock {
    uint32_t slot; /* KVM slot id; stable for the block's life */
    uint64_t gpa;  /* guest-physical start */
    uint64_t size; /* bytes */
    uint8_t *host; /* borrowed; valid until the block is removed or the VM destroyed */
} FerryRamBlock;

/* Open KVM (errors say whether the device is missing, not permitted or of another API
 * version), create the VM, irqchip, optional PIT and the boot RAM. Caller frees with
 * ferry_vm_destroy. */
FerryVm *ferry_vm_create(const FerryVmConfig *cfg, FerryError *err);
/* Destroy vCPUs first (ferry_vcpus_destroy). Unmaps all RAM. NULL is a no-op. */
void ferry_vm_destroy(FerryVm *vm);

const FerryVmCaps *ferry_vm_caps(const FerryVm *vm); /* borrowed */
int ferry_vm_fd(const FerryVm *vm);                  /* borrowed; the VM fd */
int ferry_vm_kvm_fd(const FerryVm *vm);              /* borrowed; the /dev/kvm fd */
FerryPioBus *ferry_vm_pio_bus(FerryVm *vm);          /* borrowed; lives as long as the VM */
uint64_t ferry_vm_ram_size(const FerryVm *vm);       /* boot RAM size (from the config) */

/* RAM blocks, boot RAM first, then added blocks in slot order. Fills *out (pointers borrowed).
 * Returns -ENOENT past the last block. Not safe against concurrent add/remove. */
size_t ferry_vm_ram_count(const FerryVm *vm);
int ferry_vm_ram_block(const FerryVm *vm, size_t index, FerryRamBlock *out, FerryError *err);
/* Host pointer for [gpa, gpa + len) when it lies inside one block, else NULL. Borrowed. */
void *ferry_vm_gpa_to_host(const FerryVm *vm, uint64_t gpa, uint64_t len);

/* Add a RAM block (memory hotplug) at `gpa`, zero-filled. Page-aligned, must not overlap
 * another block. Dirty logging is enabled on it when logging is active. *slot gets its id. */
int ferry_vm_ram_add(FerryVm *vm, uint64_t gpa, uint64_t size, uint32_t *slot, FerryError *err);
/* Remove an added block (vCPUs should be paused: the guest loses the memory at once). */
int ferry_vm_ram_remove(FerryVm *vm, uint32_t slot, FerryError *err);

/* Dirty logging on every block (KVM_MEM_LOG_DIRTY_PAGES). With manual protection available
 * (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) fetching re-protects only the pages it reports. */
int ferry_vm_dirty_log_start(FerryVm *vm, FerryError *err);
int ferry_vm_dirty_log_stop(FerryVm *vm, FerryError *err);
bool ferry_vm_dirty_log_active(const FerryVm *vm);
/* Bytes needed for a block's bitmap: one bit per 4 KiB page, rounded to 64-bit words. */
size_t ferry_vm_dirty_bitmap_size(uint64_t block_size);
/* Copy the pages of `slot` dirtied since logging started or the previous fetch into `bitmap`
 * (caller-owned, ferry_vm_dirty_bitmap_size bytes; bit i = page gpa + i * 4 KiB) and reset
 * them so the next fetch reports only later writes. */
int ferry_vm_dirty_log_fetch(FerryVm *vm, uint32_t slot, uint64_t *bitmap, size_t bitmap_size,
                             FerryError *err);

/* Set the level of an interrupt line (GSI: 0-15 ISA via PIC+IOAPIC, up to 23 IOAPIC). A device
 * with a level-triggered line (the hotplug event line) keeps it asserted while it has work. */
int ferry_vm_set_irq(FerryVm *vm, uint32_t gsi, bool level, FerryError *err);

#endif
