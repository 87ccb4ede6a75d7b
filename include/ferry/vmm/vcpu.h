/* vCPUs of a FerryVm: one thread per vCPU running KVM_RUN, exits dispatched to the VM's
 * port-I/O bus, and pause/resume/stop primitives for the machine layer that owns run states. */
#ifndef FERRY_VMM_VCPU_H
#define FERRY_VMM_VCPU_H

#include "ferry/error.h"
#include "ferry/vmm/vm.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct FerryVcpus FerryVcpus; /* the set of vCPUs of one VM */
typedef struct FerryVcpu FerryVcpu;   /* one vCPU; owned by its set */

/* Signal used to kick a vCPU thread out of KVM_RUN. Its handler (installed by
 * ferry_vcpus_create, process-wide, does nothing) must not be replaced by the application. */
#define FERRY_VCPU_KICK_SIGNAL (SIGRTMIN + 3)

typedef enum FerryVcpuEvent {
    FERRY_VCPU_EVENT_SHUTDOWN, /* triple fault or KVM_EXIT_SHUTDOWN: the machine should reset
                                  or power off */
    FERRY_VCPU_EVENT_HALT,     /* HLT reached userspace (only without in-kernel LAPIC) */
    FERRY_VCPU_EVENT_ERROR,    /* entry failure, internal error, unsupported MMIO; msg says */
} FerryVcpuEvent;

/* Called on the vCPU's thread after it stopped itself (it stays stopped until
 * ferry_vcpu_start). May call ferry_vcpus_pause/resume; must not destroy the set.
 * `msg` is borrowed for the call. */
typedef void (*FerryVcpuEventFn)(void *opaque, FerryVcpu *vcpu, FerryVcpuEvent event,
                                 const char *msg);

/* Caller frees with ferry_vcpus_destroy (before ferry_vm_destroy). The set starts paused:
 * vCPUs added to it do not run until ferry_vcpus_resume. `vm` is borrowed. */
FerryVcpus *ferry_vcpus_create(FerryVm *vm, FerryVcpuEventFn event, void *opaque, FerryError *err);
/* Stops every thread (kick + join) and closes the vCPU fds. NULL is a no-op. */
void ferry_vcpus_destroy(FerryVcpus *set);

/* Create vCPU `id` (APIC id; also its KVM vcpu id) with host-supported CPUID, and its thread,
 * parked. It runs once started (ferry_vcpu_start) while the set is resumed. Works while other
 * vCPUs run (vCPU hotplug). Returns a borrowed pointer, NULL on error (-EEXIST for a duplicate
 * id, -EINVAL above the KVM maximum). */
FerryVcpu *ferry_vcpus_add(FerryVcpus *set, uint32_t id, FerryError *err);
/* Let the vCPU run (when the set is resumed); also restarts one stopped by an event. */
void ferry_vcpu_start(FerryVcpu *vcpu);
/* Stop one vCPU (vCPU unplug): returns when it is out of KVM_RUN with its last exit completed
 * and will not run again until ferry_vcpu_start. KVM cannot destroy a vCPU, so an unplugged
 * vCPU stays in the set, parked (as QEMU parks vCPU fds), and is reused when the id returns.
 * Must not be called on the vCPU's own thread, nor while holding a lock its exits need. */
void ferry_vcpu_stop(FerryVcpu *vcpu);
/* Whether the vCPU is started (ferry_vcpu_start called, no stop or stopping event since). */
bool ferry_vcpu_started(const FerryVcpu *vcpu);

/* Pause every vCPU: returns only when each one is out of KVM_RUN with its last exit completed
 * (registers consistent, ready for state save). Idempotent. */
void ferry_vcpus_pause(FerryVcpus *set);
/* Let started vCPUs run again. */
void ferry_vcpus_resume(FerryVcpus *set);
bool ferry_vcpus_paused(const FerryVcpus *set);

unsigned ferry_vcpus_count(const FerryVcpus *set);
/* The index-th vCPU in creation order (borrowed), or NULL past the end. */
FerryVcpu *ferry_vcpus_get(FerryVcpus *set, unsigned index);

uint32_t ferry_vcpu_id(const FerryVcpu *vcpu);
int ferry_vcpu_fd(const FerryVcpu *vcpu); /* borrowed */
/* Only while the set is paused or the vCPU not started: callers use these for state access. */
FerryVm *ferry_vcpu_vm(const FerryVcpu *vcpu);
/* Number of KVM_RUN exits of this vCPU so far (statistics, tests). */
uint64_t ferry_vcpu_exit_count(const FerryVcpu *vcpu);

#endif
