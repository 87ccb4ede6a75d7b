/* Codec descriptions of the KVM vCPU and VM state structs (ferry/vmm/cpu-state.h), so the
 * migration stream carries them as ordinary device records: "kvm-cpu" (instance = vCPU id) and
 * "kvm-vm" (instance 0). */
#ifndef FERRY_MIGRATION_VMSTATE_H
#define FERRY_MIGRATION_VMSTATE_H

#include "ferry/state/state.h"

#define FERRY_MIG_CPU_SECTION "kvm-cpu"
#define FERRY_MIG_VM_SECTION  "kvm-vm"

extern const FerryDesc ferry_cpu_state_desc; /* FerryCpuState */
extern const FerryDesc ferry_vm_state_desc;  /* FerryVmState */

#endif
