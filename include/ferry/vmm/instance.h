/* FerryInstance: one running VM = KVM VM + vCPUs + serial + the machine model (devices,
 * connectors, run state), with the hotplug register block on the PIO bus and its line on a GSI.
 *
 * Ownership: the instance owns its FerryVm, FerryVcpus, FerryMachine and FerrySerial; accessors
 * return borrowed pointers valid until ferry_instance_destroy. The serial output fd is borrowed.
 *
 * Threads: control calls (cont/stop/reset/device_add/...) may come from any one thread at a
 * time (QMP server, migration); they are serialised inside. vCPU threads enter through the PIO
 * handlers. The machine is protected by the instance lock: code that reads or writes the
 * machine directly (migration: registry save/load) holds ferry_instance_lock, and so does code
 * that enumerates the VM's RAM blocks while device_add/del may run (memslots are added and
 * removed under it; host pointers of a block stay valid while the block exists). While an
 * outgoing migration is marked active the block list does not change. docs/vmm.md. */
#ifndef FERRY_VMM_INSTANCE_H
#define FERRY_VMM_INSTANCE_H

#include "ferry/error.h"
#include "ferry/machine/machine.h"
#include "ferry/vmm/serial.h"
#include "ferry/vmm/vcpu.h"
#include "ferry/vmm/vm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct FerryInstance FerryInstance;

typedef enum FerryInstanceBoot {
    FERRY_INSTANCE_BOOT_FIRMWARE, /* flat 64-bit image (the built-in firmware or --firmware) */
    FERRY_INSTANCE_BOOT_SECTOR,   /* 512-byte real-mode boot sector */
} FerryInstanceBoot;

typedef struct FerryInstanceConfig {
    uint64_t ram_size;        /* boot RAM bytes (> 0, 4 KiB multiple) */
    uint64_t maxmem;          /* RAM + hotplugged memory blocks may reach this; 0 = ram_size */
    uint32_t boot_cpus;       /* 0 = 1 */
    uint32_t max_cpus;        /* vCPU slots; 0 = boot_cpus */
    const char *machine_type; /* NULL = newest; borrowed during create */
    bool incoming;            /* destination: start in inmigrate, do not boot */
    FerryInstanceBoot boot;
    const void *image; /* boot image, copied (kept for system_reset) */
    size_t image_len;
    /* Built-in firmware configuration (FerryFwConfig, docs/firmware.md). */
    uint32_t workload; /* FERRY_FW_WORKLOAD_* */
    uint32_t dirty_mb;
    uint32_t report_every; /* 0 = 10 */
    uint32_t ready_delay_ms;
    uint32_t hp_step_delay_ms; /* test pacing (docs/firmware.md); 0 = off */
    int serial_fd;             /* COM1 output (borrowed); -1 = discard */
    const char *kvm_path;      /* NULL = /dev/kvm */
} FerryInstanceConfig;

typedef enum FerryInstanceEvent {
    FERRY_INSTANCE_EV_STOP,           /* vCPUs paused by a stop */
    FERRY_INSTANCE_EV_RESUME,         /* vCPUs resumed by a cont */
    FERRY_INSTANCE_EV_RESET,          /* system reset done */
    FERRY_INSTANCE_EV_SHUTDOWN,       /* ferry_instance_shutdown done */
    FERRY_INSTANCE_EV_POWEROFF,       /* the guest asks to power off (debug-exit port) or
                                         crashed (triple fault): the owner calls
                                         ferry_instance_shutdown (not possible on the vCPU
                                         thread that reports it) */
    FERRY_INSTANCE_EV_DEVICE_DELETED, /* a device was unrealized after its unplug */
    FERRY_INSTANCE_EV_ERROR,          /* a vCPU stopped on an error (msg), or a resource
                                         change failed; the owner decides what to do */
} FerryInstanceEvent;

typedef struct FerryInstanceEventInfo {
    FerryInstanceEvent event;
    bool guest;         /* RESET/SHUTDOWN/POWEROFF: caused by the guest */
    const char *reason; /* RESET/SHUTDOWN/POWEROFF: QEMU ShutdownCause ("host-qmp-quit") */
    const char *device; /* DEVICE_DELETED: id */
    const char *path;   /* DEVICE_DELETED: device-tree path */
    const char *msg;    /* ERROR / POWEROFF: human-readable */
} FerryInstanceEventInfo;

/* Called on the thread that caused the event (a vCPU thread, or the caller of a control
 * function), possibly with the instance lock held: it must not call back into the instance;
 * forward (QMP emit, eventfd) and return. Strings are borrowed for the call. */
typedef void (*FerryInstanceListener)(void *opaque, const FerryInstanceEventInfo *info);

/* Create the VM (errors say why KVM is unusable), vCPUs for the boot CPUs, the machine in
 * prelaunch (or inmigrate when cfg->incoming), the serial port, the hotplug block at
 * FERRY_HP_IO_BASE and the debug-exit port; boot the image unless incoming. vCPUs stay paused
 * until ferry_instance_cont. Caller frees with ferry_instance_destroy. */
FerryInstance *ferry_instance_create(const FerryInstanceConfig *cfg, FerryError *err);
/* Pause and destroy everything. NULL is a no-op. */
void ferry_instance_destroy(FerryInstance *inst);

/* One listener; set before ferry_instance_cont. */
void ferry_instance_set_listener(FerryInstance *inst, FerryInstanceListener fn, void *opaque);

/* Borrowed parts. Hold ferry_instance_lock while touching the machine directly. */
FerryVm *ferry_instance_vm(FerryInstance *inst);
/* Every vCPU ever created, including parked ones (released, or boot APs the guest has not
 * started): prefer ferry_instance_vcpu_count/_at for what runs. */
FerryVcpus *ferry_instance_vcpus(FerryInstance *inst);
FerryMachine *ferry_instance_machine(FerryInstance *inst);
FerrySerial *ferry_instance_serial(FerryInstance *inst); /* NULL when serial_fd was -1 */
void ferry_instance_lock(FerryInstance *inst);
void ferry_instance_unlock(FerryInstance *inst);

/* ---- run states (the machine's table decides; refused events are errors) ---- */
FerryRunState ferry_instance_runstate(FerryInstance *inst);
/* prelaunch/paused/postmigrate -> running: resume vCPUs, RESUME. In inmigrate it only records
 * that the VM must run when the incoming stream is loaded (QEMU's autostart). */
int ferry_instance_cont(FerryInstance *inst, FerryError *err);
/* running -> paused: every vCPU out of KVM_RUN when this returns, STOP. */
int ferry_instance_stop(FerryInstance *inst, FerryError *err);
/* system_reset: vCPUs to the firmware entry (image reloaded, BSP and irqchip state as at
 * creation, APs stopped until the guest is ready again), machine reset rules (DESIGN §4),
 * RESET {guest, reason}. A running VM keeps running; a paused one goes to prelaunch. */
int ferry_instance_reset(FerryInstance *inst, bool guest, const char *reason, FerryError *err);
/* -> shutdown, vCPUs paused, SHUTDOWN {guest, reason}. */
int ferry_instance_shutdown(FerryInstance *inst, bool guest, const char *reason, FerryError *err);
/* Whether `cont` was requested while in inmigrate. */
bool ferry_instance_autostart(FerryInstance *inst);

/* Pause/resume vCPUs without a run-state change (migration's stop-and-copy, state access). */
void ferry_instance_pause_vcpus(FerryInstance *inst);
void ferry_instance_resume_vcpus(FerryInstance *inst);

/* Source side of a migration (QEMU's behaviour): stop-and-copy pauses the vCPUs and emits STOP
 * when the VM was running (the run state stays, as QEMU's finish-migrate is not modelled); a
 * failed or cancelled migration resumes a running VM and emits RESUME; a completed one moves
 * to postmigrate with the vCPUs left paused. From migration_stop until migration_resume,
 * ferry_instance_set_migration_active(false) or outgoing_done, ferry_instance_stop/cont/reset
 * wait (QEMU's monitor waits for the lock its migration holds over stop-and-copy). */
void ferry_instance_migration_stop(FerryInstance *inst);
void ferry_instance_migration_resume(FerryInstance *inst);
int ferry_instance_outgoing_done(FerryInstance *inst, FerryError *err);

/* ---- devices (DESIGN §4 table, QMP device_add/device_del) ---- */
/* Memory blocks get their 128 MiB memslot here, before the guest can learn of them; refused
 * past maxmem. Errors are the machine's (unknown driver, duplicate id, migration active). */
int ferry_instance_device_add(FerryInstance *inst, const char *driver, const char *id,
                              const FerryParam *params, size_t nparams, FerryError *err);
/* "cpu,id=cpu2,slot=2" (the --device syntax). */
int ferry_instance_device_add_opts(FerryInstance *inst, const char *opts, FerryError *err);
/* -ENOENT unknown id, -EBUSY unplug already pending, -EPERM for the boot CPU. */
int ferry_instance_device_del(FerryInstance *inst, const char *id, FerryError *err);
/* Memory block slot s -> guest-physical base (FerryFwConfig.hp_mem_base + s * 128 MiB). */
uint64_t ferry_instance_mem_block_gpa(const FerryInstance *inst, uint32_t slot);
/* Whether the memory block in `slot` was added while the guest ran (query-memory-devices). */
bool ferry_instance_mem_hotplugged(FerryInstance *inst, uint32_t slot);

/* An outgoing migration is in setup/active: device_add/device_del refused, and memslots of
 * released memory blocks stay mapped until it ends (the RAM block list does not change under
 * the migration engine). Same as ferry_machine_set_migration_active under the lock, plus the
 * deferred memslot removals at once when it ends. */
void ferry_instance_set_migration_active(FerryInstance *inst, bool active);

/* ---- vCPUs (migration) ---- */
/* Online vCPUs (the BSP, started boot CPUs, hotplugged vCPUs the guest configured), in
 * APIC-id order. Borrowed. State get/set with ferry_cpu_state_get/set while paused. */
unsigned ferry_instance_vcpu_count(FerryInstance *inst);
FerryVcpu *ferry_instance_vcpu_at(FerryInstance *inst, unsigned index);
/* Destination: make vCPU `id` exist and count as online without touching its registers (the
 * stream sets them next). Returns it (borrowed) or NULL. */
FerryVcpu *ferry_instance_vcpu_adopt(FerryInstance *inst, uint32_t id, FerryError *err);

/* Destination, after the stream was loaded and verified: re-apply the machine's resources
 * (memslots for its memory blocks, the hotplug line level) and leave inmigrate, running when
 * `run` (then vCPUs resume, RESUME) or paused. */
int ferry_instance_incoming_done(FerryInstance *inst, bool run, FerryError *err);
/* Destination, stream failed: -> shutdown (the destination never runs). */
int ferry_instance_incoming_failed(FerryInstance *inst, FerryError *err);

#endif
