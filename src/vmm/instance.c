/* FerryInstance: binds the machine model to KVM. The hotplug register block sits on the PIO
 * bus, its level line drives an IOAPIC GSI, and connector changes become vCPUs and memslots. */
#include "ferry/vmm/instance.h"

#include "ferry/machine/hotplug.h"
#include "ferry/vmm/boot.h"
#include "ferry/vmm/cpu-state.h"
#include "ferry/vmm/fw-config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SLOTS FERRY_MACHINE_MAX_SLOTS
/* Memory blocks live above 4 GiB (the machine's fixed hotplug base), above RAM below 3 GiB. */
#define HP_MEM_BASE (4ULL << 30)

typedef struct CpuSlot {
    FerryVcpu *vcpu;         /* created once, never destroyed (KVM cannot): parked */
    FerryCpuState *pristine; /* state right after creation, restored before each start */
    bool online;             /* started for the guest (or adopted) */
    bool stopping;           /* a stop is in progress outside the lock */
} CpuSlot;

typedef struct MemSlot {
    bool mapped;
    bool hotplugged;
    uint32_t memslot;
} MemSlot;

struct FerryInstance {
    FerryInstanceConfig cfg; /* image points to `image` below; strings not kept */
    uint8_t *image;
    FerryVm *vm;
    FerryVcpus *vcpus;
    FerryMachine *machine;
    FerrySerial *serial;
    pthread_mutex_t lock; /* the machine and the slot tables */
    pthread_mutex_t ops;  /* control operations, one at a time; never taken on vCPU threads */
    /* The source's switchover window (vCPUs stopped, final pass and device state being read):
     * stop/cont/system_reset wait for its end, as QEMU's wait for the BQL the migration holds. */
    pthread_mutex_t sw_mu;
    pthread_cond_t sw_cv;
    bool switchover;
    CpuSlot cpu[MAX_SLOTS];
    MemSlot mem[MAX_SLOTS];
    uint32_t ncpu, nmem;
    FerryVmState *vm_pristine; /* irqchip state at creation, restored by reset */
    bool autostart;
    FerryInstanceListener listener;
    void *listener_opaque;
};

static void notify(FerryInstance *in, const FerryInstanceEventInfo *info)
{
    if (in->listener)
        in->listener(in->listener_opaque, info);
}

static void notify_error(FerryInstance *in, const char *msg)
{
    FerryInstanceEventInfo info = {.event = FERRY_INSTANCE_EV_ERROR, .msg = msg};
    notify(in, &info);
}

/* ---- machine callbacks (called with in->lock held) ---- */

static void on_irq(void *opaque, bool level)
{
    FerryInstance *in = opaque;
    FerryError err = {0};
    if (ferry_vm_set_irq(in->vm, FERRY_FW_HOTPLUG_GSI, level, &err) < 0)
        notify_error(in, err.msg);
}

static void on_device_deleted(void *opaque, const char *id, const char *path)
{
    FerryInstance *in = opaque;
    FerryInstanceEventInfo info = {
        .event = FERRY_INSTANCE_EV_DEVICE_DELETED, .device = id, .path = path};
    notify(in, &info);
}

/* ---- resources ---- */

static FerryFwConfig *fw_config(FerryInstance *in)
{
    return ferry_vm_gpa_to_host(in->vm, FERRY_FW_CONFIG_ADDR, sizeof(FerryFwConfig));
}

static int write_fw_config(FerryInstance *in, FerryError *err)
{
    FerryFwConfig *fc = fw_config(in);
    if (!fc)
        return ferry_error_set(err, -ENOMEM, "firmware config block: no RAM at 0x%llx",
                               FERRY_FW_CONFIG_ADDR);
    *fc = (FerryFwConfig){
        .magic = FERRY_FW_CONFIG_MAGIC,
        .version = FERRY_FW_CONFIG_VERSION,
        .ram_size = in->cfg.ram_size,
        .hp_mem_base = HP_MEM_BASE,
        .hp_mem_block = FERRY_MEM_BLOCK_SIZE,
        .hp_mem_slots = in->nmem,
        .cpu_slots = in->ncpu,
        .boot_cpus = in->cfg.boot_cpus,
        .hotplug_gsi = FERRY_FW_HOTPLUG_GSI,
        .hotplug_io = FERRY_HP_IO_BASE,
        .workload = in->cfg.workload,
        .dirty_base = FERRY_FW_DIRTY_BASE,
        .dirty_mb = in->cfg.dirty_mb,
        .report_every = in->cfg.report_every,
        .ready_delay_ms = in->cfg.ready_delay_ms,
        .hp_step_delay_ms = in->cfg.hp_step_delay_ms,
    };
    return 0;
}

static FerryVcpu *vcpu_create(FerryInstance *in, uint32_t id, FerryError *err)
{
    CpuSlot *c = &in->cpu[id];
    if (c->vcpu)
        return c->vcpu;
    FerryVcpu *v = ferry_vcpus_add(in->vcpus, id, err);
    if (!v)
        return NULL;
    c->pristine = malloc(sizeof(*c->pristine));
    if (!c->pristine) {
        ferry_error_set(err, -ENOMEM, "vCPU %u: out of memory", id);
        return NULL; /* the vCPU stays parked in the set; freed with it */
    }
    if (ferry_cpu_state_get(v, c->pristine, err) < 0) {
        free(c->pristine);
        c->pristine = NULL;
        return NULL;
    }
    c->vcpu = v;
    return v;
}

/* Put a parked vCPU back to its creation state (LAPIC, MSRs, events, MP state). */
static int vcpu_pristine(FerryInstance *in, uint32_t id, FerryError *err)
{
    CpuSlot *c = &in->cpu[id];
    FerryMsrSkips skipped;
    return ferry_cpu_state_set(c->vcpu, c->pristine, &skipped, err);
}

/* Start application processor `id` at the firmware's AP entry. Lock held; the vCPU is parked
 * (never started, or stopped by a completed stop). */
static int ap_start(FerryInstance *in, uint32_t id, const FerryFwConfig *fc, FerryError *err)
{
    FerryVcpu *v = vcpu_create(in, id, err);
    if (!v)
        return err->code ? err->code : -EIO;
    int r = vcpu_pristine(in, id, err);
    if (r < 0)
        return r;
    uint64_t rsp = fc->ap_stack_base + (uint64_t)(id + 1) * fc->ap_stack_size;
    r = ferry_boot_ap64(v, fc->ap_entry, rsp, id, err);
    if (r < 0)
        return r;
    ferry_vcpu_start(v);
    in->cpu[id].online = true;
    return 0;
}

/* Bring vCPUs and memslots in line with the machine (DESIGN §4 via docs/vmm.md):
 * - an AP runs from when the guest configured its connector (the guest being ready and having
 *   published its AP entry) until the connector is released, the device is gone, or the
 *   guest's readiness is cleared (reset);
 * - a memory block's memslot exists while the device does (added by device_add; removed after
 *   the release completed, deferred while an outgoing migration runs).
 * vCPUs to stop are returned in `stop` (stopped by the caller after unlocking: a vCPU may be
 * blocked on the lock in a PIO exit, and a stop waits for it to leave KVM_RUN). */
static unsigned apply_locked(FerryInstance *in, FerryVcpu **stop)
{
    unsigned nstop = 0;
    FerryMachine *m = in->machine;
    bool ready = ferry_machine_guest_ready(m);
    if (in->cfg.boot == FERRY_INSTANCE_BOOT_FIRMWARE) {
        const FerryFwConfig *fc = fw_config(in);
        bool can_start =
            ready && fc && fc->magic == FERRY_FW_CONFIG_MAGIC && fc->ap_entry && fc->ap_stack_size;
        for (uint32_t s = 1; s < in->ncpu; s++) {
            CpuSlot *c = &in->cpu[s];
            FerryConnectorInfo ci;
            if (ferry_machine_connector_find(m, FERRY_CONN_INDEX(FERRY_CONN_CPU, s), &ci) < 0)
                continue;
            if (!c->online) {
                if (can_start && !c->stopping && ci.device_id &&
                    ci.state == FERRY_CONN_CONFIGURED) {
                    FerryError err = {0};
                    if (ap_start(in, s, fc, &err) < 0) {
                        char msg[FERRY_ERROR_MSG_MAX + 32];
                        snprintf(msg, sizeof(msg), "starting vCPU %u: %s", s, err.msg);
                        notify_error(in, msg);
                    }
                }
            } else if (!ci.device_id || ci.state == FERRY_CONN_UNUSABLE || !ready) {
                c->online = false;
                c->stopping = true;
                stop[nstop++] = c->vcpu;
            }
        }
    }
    for (uint32_t s = 0; s < in->nmem; s++) {
        MemSlot *ms = &in->mem[s];
        FerryConnectorInfo ci;
        if (ferry_machine_connector_find(m, FERRY_CONN_INDEX(FERRY_CONN_MEM, s), &ci) < 0)
            continue;
        FerryError err = {0};
        if (ci.device_id && !ms->mapped) {
            /* A block the machine got without ferry_instance_device_add (a loaded stream):
             * its RAM must exist before the guest runs again. */
            if (ferry_vm_ram_add(in->vm, ferry_instance_mem_block_gpa(in, s), FERRY_MEM_BLOCK_SIZE,
                                 &ms->memslot, &err) < 0)
                notify_error(in, err.msg);
            else
                ms->mapped = true;
            continue;
        }
        if (!ms->mapped || ferry_machine_migration_active(m) || ci.device_id)
            continue;
        if (ferry_vm_ram_remove(in->vm, ms->memslot, &err) < 0)
            notify_error(in, err.msg);
        ms->mapped = false;
        ms->hotplugged = false;
    }
    return nstop;
}

/* Unlock, then complete the stops apply_locked asked for. */
static void unlock_and_stop(FerryInstance *in, FerryVcpu **stop, unsigned nstop)
{
    pthread_mutex_unlock(&in->lock);
    if (!nstop)
        return;
    for (unsigned i = 0; i < nstop; i++)
        ferry_vcpu_stop(stop[i]);
    pthread_mutex_lock(&in->lock);
    for (unsigned i = 0; i < nstop; i++)
        in->cpu[ferry_vcpu_id(stop[i])].stopping = false;
    /* A start skipped meanwhile (slot was stopping) happens now. */
    FerryVcpu *more[MAX_SLOTS];
    unsigned n = apply_locked(in, more);
    unlock_and_stop(in, more, n);
}

/* ---- PIO handlers (vCPU threads) ---- */

static uint32_t hp_read(void *opaque, uint16_t off, unsigned size)
{
    FerryInstance *in = opaque;
    pthread_mutex_lock(&in->lock);
    uint32_t v = ferry_hotplug_io_read(in->machine, off, size);
    pthread_mutex_unlock(&in->lock);
    return v;
}

static void hp_write(void *opaque, uint16_t off, unsigned size, uint32_t value)
{
    FerryInstance *in = opaque;
    FerryVcpu *stop[MAX_SLOTS];
    pthread_mutex_lock(&in->lock);
    ferry_hotplug_io_write(in->machine, off, size, value);
    unsigned n = off == FERRY_HP_REG_CMD ? apply_locked(in, stop) : 0;
    unlock_and_stop(in, stop, n);
}

static void debug_exit_write(void *opaque, uint16_t off, unsigned size, uint32_t value)
{
    (void)off;
    (void)size;
    FerryInstance *in = opaque;
    char msg[64];
    snprintf(msg, sizeof(msg), "guest powered off (port 0x%x value 0x%x)", FERRY_FW_DEBUG_EXIT_PORT,
             value);
    /* The owner performs the shutdown: a vCPU thread cannot pause the set it belongs to. */
    FerryInstanceEventInfo info = {
        .event = FERRY_INSTANCE_EV_POWEROFF, .guest = true, .reason = "guest-shutdown", .msg = msg};
    notify(in, &info);
}

static void on_vcpu_event(void *opaque, FerryVcpu *v, FerryVcpuEvent ev, const char *msg)
{
    (void)v;
    FerryInstance *in = opaque;
    if (ev == FERRY_VCPU_EVENT_SHUTDOWN) {
        /* Triple fault: like QEMU with -no-reboot, report a guest-reset shutdown. */
        FerryInstanceEventInfo info = {.event = FERRY_INSTANCE_EV_POWEROFF,
                                       .guest = true,
                                       .reason = "guest-reset",
                                       .msg = msg};
        notify(in, &info);
        return;
    }
    notify_error(in, msg);
}

/* ---- boot ---- */

/* Load the image and set the BSP (and, for boot sectors, the APs waiting for SIPI). The
 * vCPUs are paused. */
static int boot_image(FerryInstance *in, FerryError *err)
{
    FerryVcpu *bsp = in->cpu[0].vcpu;
    int r;
    if (in->cfg.boot == FERRY_INSTANCE_BOOT_SECTOR) {
        r = ferry_boot_sector_mem(in->vm, bsp, in->image, in->cfg.image_len, err);
    } else {
        r = ferry_boot_flat64_mem(in->vm, bsp, in->image, in->cfg.image_len, err);
        if (r == 0)
            r = write_fw_config(in, err);
    }
    return r;
}

static int create_parts(FerryInstance *in, const FerryInstanceConfig *cfg, FerryError *err)
{
    FerryVmConfig vc = {.ram_size = cfg->ram_size, .pit = true, .kvm_path = cfg->kvm_path};
    in->vm = ferry_vm_create(&vc, err);
    if (!in->vm)
        return err->code ? err->code : -EIO;
    const FerryVmCaps *caps = ferry_vm_caps(in->vm);
    if (in->ncpu > (uint32_t)caps->max_vcpus)
        return ferry_error_set(err, -EINVAL, "maxcpus=%u exceeds KVM's limit of %d vCPUs", in->ncpu,
                               caps->max_vcpus);
    in->vm_pristine = malloc(sizeof(*in->vm_pristine));
    if (!in->vm_pristine)
        return ferry_error_set(err, -ENOMEM, "instance: out of memory");
    int r = ferry_vm_state_get(in->vm, in->vm_pristine, err);
    if (r < 0)
        return r;
    in->vcpus = ferry_vcpus_create(in->vm, on_vcpu_event, in, err);
    if (!in->vcpus)
        return err->code ? err->code : -EIO;
    FerryMachineConfig mc = {.type = cfg->machine_type,
                             .cpu_slots = in->ncpu,
                             .boot_cpus = in->cfg.boot_cpus,
                             .mem_slots = in->nmem,
                             .incoming = cfg->incoming};
    in->machine = ferry_machine_new(&mc, err);
    if (!in->machine)
        return err->code ? err->code : -EINVAL;
    ferry_machine_set_irq(in->machine, on_irq, in);
    ferry_machine_set_device_deleted(in->machine, on_device_deleted, in);
    if (cfg->serial_fd >= 0) {
        in->serial = ferry_serial_create(in->vm, FERRY_SERIAL_COM1_BASE, FERRY_SERIAL_COM1_IRQ,
                                         cfg->serial_fd, err);
        if (!in->serial)
            return err->code ? err->code : -EIO;
    }
    FerryPioBus *bus = ferry_vm_pio_bus(in->vm);
    r = ferry_pio_bus_register(bus, FERRY_HP_IO_BASE, FERRY_HP_IO_SIZE, "hotplug", hp_read,
                               hp_write, in, err);
    if (r < 0)
        return r;
    r = ferry_pio_bus_register(bus, FERRY_FW_DEBUG_EXIT_PORT, 1, "debug-exit", NULL,
                               debug_exit_write, in, err);
    if (r < 0)
        return r;
    for (uint32_t i = 0; i < in->cfg.boot_cpus; i++)
        if (!vcpu_create(in, i, err))
            return err->code ? err->code : -EIO;
    in->cpu[0].online = true;
    if (in->cfg.boot == FERRY_INSTANCE_BOOT_SECTOR) {
        /* Boot-sector guests start their APs themselves (INIT/SIPI to the in-kernel LAPIC). */
        for (uint32_t i = 0; i < in->cfg.boot_cpus; i++)
            in->cpu[i].online = true;
    }
    if (!cfg->incoming) {
        r = boot_image(in, err);
        if (r < 0)
            return r;
    }
    for (uint32_t i = 0; i < in->ncpu; i++)
        if (in->cpu[i].online)
            ferry_vcpu_start(in->cpu[i].vcpu);
    return 0;
}

FerryInstance *ferry_instance_create(const FerryInstanceConfig *cfg, FerryError *err)
{
    FerryInstanceConfig c = *cfg;
    c.boot_cpus = c.boot_cpus ? c.boot_cpus : 1;
    c.max_cpus = c.max_cpus ? c.max_cpus : c.boot_cpus;
    c.maxmem = c.maxmem ? c.maxmem : c.ram_size;
    c.report_every = c.report_every ? c.report_every : 10;
    c.machine_type = NULL;
    c.kvm_path = NULL;
    if (c.boot_cpus > c.max_cpus || c.max_cpus > MAX_SLOTS) {
        ferry_error_set(err, -EINVAL,
                        "%u boot vCPUs with maxcpus=%u: need 1 <= N <= maxcpus <= "
                        "%u",
                        c.boot_cpus, c.max_cpus, MAX_SLOTS);
        return NULL;
    }
    if (c.maxmem < c.ram_size) {
        ferry_error_set(err, -EINVAL, "maxmem (%llu MiB) is below the memory size (%llu MiB)",
                        (unsigned long long)(c.maxmem >> 20),
                        (unsigned long long)(c.ram_size >> 20));
        return NULL;
    }
    uint64_t blocks = (c.maxmem - c.ram_size) / FERRY_MEM_BLOCK_SIZE;
    if (blocks > MAX_SLOTS) { /* refused, not capped: the user asked for memory we cannot plug */
        ferry_error_set(
            err, -EINVAL,
            "maxmem (%llu MiB) leaves room for %llu memory blocks of %llu MiB; at "
            "most %u are hotpluggable (maxmem <= %llu MiB)",
            (unsigned long long)(c.maxmem >> 20), (unsigned long long)blocks,
            (unsigned long long)(FERRY_MEM_BLOCK_SIZE >> 20), MAX_SLOTS,
            (unsigned long long)((c.ram_size + MAX_SLOTS * FERRY_MEM_BLOCK_SIZE) >> 20));
        return NULL;
    }
    if (blocks && c.ram_size > FERRY_VM_LOW_RAM_MAX) {
        ferry_error_set(err, -EINVAL,
                        "memory hotplug (maxmem above memory) needs a memory size "
                        "of at most 3G: hotplugged blocks live at 4 GiB");
        return NULL;
    }
    if (c.boot == FERRY_INSTANCE_BOOT_SECTOR && c.image_len != FERRY_BOOT_SECTOR_SIZE) {
        ferry_error_set(err, -EINVAL, "boot sector: %zu bytes, must be exactly %d", c.image_len,
                        FERRY_BOOT_SECTOR_SIZE);
        return NULL;
    }
    if (c.workload == FERRY_FW_WORKLOAD_DIRTY &&
        (!c.dirty_mb ||
         FERRY_FW_DIRTY_BASE + ((uint64_t)c.dirty_mb << 20) >
             (c.ram_size < FERRY_VM_LOW_RAM_MAX ? c.ram_size : FERRY_VM_LOW_RAM_MAX))) {
        ferry_error_set(err, -EINVAL,
                        "dirty workload of %u MiB at 16 MiB needs at least %u MiB "
                        "of memory",
                        c.dirty_mb, c.dirty_mb + 16);
        return NULL;
    }
    FerryInstance *in = calloc(1, sizeof(*in));
    if (!in) {
        ferry_error_set(err, -ENOMEM, "instance: out of memory");
        return NULL;
    }
    in->ncpu = c.max_cpus;
    /* The machine needs at least one memory slot; device_add checks maxmem. */
    in->nmem = blocks ? (uint32_t)blocks : 1;
    in->image = malloc(c.image_len ? c.image_len : 1);
    if (!in->image) {
        free(in);
        ferry_error_set(err, -ENOMEM, "instance: out of memory");
        return NULL;
    }
    memcpy(in->image, c.image, c.image_len);
    c.image = in->image;
    in->cfg = c;
    pthread_mutex_init(&in->lock, NULL);
    pthread_mutex_init(&in->ops, NULL);
    pthread_mutex_init(&in->sw_mu, NULL);
    pthread_cond_init(&in->sw_cv, NULL);
    if (create_parts(in, cfg, err) < 0) {
        ferry_instance_destroy(in);
        return NULL;
    }
    return in;
}

void ferry_instance_destroy(FerryInstance *in)
{
    if (!in)
        return;
    /* vCPUs first: none may run a PIO handler that touches the serial or machine. */
    ferry_vcpus_destroy(in->vcpus);
    ferry_serial_destroy(in->serial);
    ferry_machine_free(in->machine);
    for (uint32_t i = 0; i < MAX_SLOTS; i++)
        free(in->cpu[i].pristine);
    free(in->vm_pristine);
    ferry_vm_destroy(in->vm);
    pthread_cond_destroy(&in->sw_cv);
    pthread_mutex_destroy(&in->sw_mu);
    pthread_mutex_destroy(&in->ops);
    pthread_mutex_destroy(&in->lock);
    free(in->image);
    free(in);
}

void ferry_instance_set_listener(FerryInstance *in, FerryInstanceListener fn, void *opaque)
{
    pthread_mutex_lock(&in->lock);
    in->listener = fn;
    in->listener_opaque = opaque;
    pthread_mutex_unlock(&in->lock);
}

FerryVm *ferry_instance_vm(FerryInstance *in)
{
    return in->vm;
}
FerryMachine *ferry_instance_machine(FerryInstance *in)
{
    return in->machine;
}
FerrySerial *ferry_instance_serial(FerryInstance *in)
{
    return in->serial;
}
void ferry_instance_lock(FerryInstance *in)
{
    pthread_mutex_lock(&in->lock);
}
void ferry_instance_unlock(FerryInstance *in)
{
    pthread_mutex_unlock(&in->lock);
}
void ferry_instance_pause_vcpus(FerryInstance *in)
{
    ferry_vcpus_pause(in->vcpus);
}
void ferry_instance_resume_vcpus(FerryInstance *in)
{
    ferry_vcpus_resume(in->vcpus);
}

FerryRunState ferry_instance_runstate(FerryInstance *in)
{
    pthread_mutex_lock(&in->lock);
    FerryRunState s = ferry_machine_runstate(in->machine);
    pthread_mutex_unlock(&in->lock);
    return s;
}

bool ferry_instance_autostart(FerryInstance *in)
{
    pthread_mutex_lock(&in->lock);
    bool a = in->autostart;
    pthread_mutex_unlock(&in->lock);
    return a;
}

/* Apply a run-state event to the machine under the lock. */
static int run_event(FerryInstance *in, FerryRunEvent ev, FerryError *err)
{
    pthread_mutex_lock(&in->lock);
    int r = ferry_machine_run_event(in->machine, ev, err);
    pthread_mutex_unlock(&in->lock);
    return r;
}

static void switchover_set(FerryInstance *in, bool on)
{
    pthread_mutex_lock(&in->sw_mu);
    in->switchover = on;
    if (!on)
        pthread_cond_broadcast(&in->sw_cv);
    pthread_mutex_unlock(&in->sw_mu);
}

/* Take `ops` outside a switchover window. The window opens under `ops` (migration_stop), so a
 * command either finished before it or starts after it closed; waiting without `ops` lets the
 * window's end (outgoing_done) take it. */
static void ops_lock_after_switchover(FerryInstance *in)
{
    for (;;) {
        pthread_mutex_lock(&in->ops);
        pthread_mutex_lock(&in->sw_mu);
        if (!in->switchover) {
            pthread_mutex_unlock(&in->sw_mu);
            return;
        }
        pthread_mutex_unlock(&in->ops);
        while (in->switchover)
            pthread_cond_wait(&in->sw_cv, &in->sw_mu);
        pthread_mutex_unlock(&in->sw_mu);
    }
}

int ferry_instance_cont(FerryInstance *in, FerryError *err)
{
    ops_lock_after_switchover(in);
    int r = 0;
    FerryRunState s = ferry_instance_runstate(in);
    if (s == FERRY_RUN_INMIGRATE) {
        pthread_mutex_lock(&in->lock);
        in->autostart = true;
        pthread_mutex_unlock(&in->lock);
    } else if (s == FERRY_RUN_SHUTDOWN) {
        r = ferry_error_set(err, -EINVAL, "Resetting the Virtual Machine is required");
    } else if (s != FERRY_RUN_RUNNING) {
        r = run_event(in, FERRY_RUN_EV_CONT, err);
        if (r == 0) {
            ferry_vcpus_resume(in->vcpus);
            FerryInstanceEventInfo info = {.event = FERRY_INSTANCE_EV_RESUME};
            notify(in, &info);
        }
    }
    pthread_mutex_unlock(&in->ops);
    return r;
}

int ferry_instance_stop(FerryInstance *in, FerryError *err)
{
    ops_lock_after_switchover(in);
    FerryRunState s = ferry_instance_runstate(in);
    int r = run_event(in, FERRY_RUN_EV_STOP, err);
    if (r == 0 && s == FERRY_RUN_INMIGRATE) {
        pthread_mutex_lock(&in->lock);
        in->autostart = false; /* QEMU: stop while incoming cancels an earlier cont */
        pthread_mutex_unlock(&in->lock);
    }
    if (r == 0 && s == FERRY_RUN_RUNNING) {
        ferry_vcpus_pause(in->vcpus);
        FerryInstanceEventInfo info = {.event = FERRY_INSTANCE_EV_STOP};
        notify(in, &info);
    }
    pthread_mutex_unlock(&in->ops);
    return r;
}

int ferry_instance_reset(FerryInstance *in, bool guest, const char *reason, FerryError *err)
{
    ops_lock_after_switchover(in);
    FerryRunState before = ferry_instance_runstate(in);
    FerryRunState next;
    int r;
    if (!ferry_runstate_next(before, FERRY_RUN_EV_RESET, &next)) {
        r = ferry_error_set(err, -EINVAL, "cannot reset in run state '%s'",
                            ferry_runstate_name(before));
        goto out;
    }
    ferry_vcpus_pause(in->vcpus);
    /* Machine first: releases pending unplugs (DEVICE_DELETED), purges events, clears
     * readiness, so apply stops every AP and drops released memory. */
    FerryVcpu *stop[MAX_SLOTS];
    pthread_mutex_lock(&in->lock);
    r = ferry_machine_run_event(in->machine, FERRY_RUN_EV_RESET, err);
    unsigned n = r == 0 ? apply_locked(in, stop) : 0;
    unlock_and_stop(in, stop, n); /* parked already: returns at once */
    if (r < 0)
        goto resume;
    /* The BSP (and boot-sector APs) back to their creation state, then the image again. */
    for (uint32_t i = 0; i < in->ncpu; i++) {
        if (!in->cpu[i].vcpu || !in->cpu[i].online)
            continue;
        r = vcpu_pristine(in, i, err);
        if (r < 0)
            goto resume;
    }
    FerryVmState *now = malloc(sizeof(*now));
    if (!now) {
        r = ferry_error_set(err, -ENOMEM, "reset: out of memory");
        goto resume;
    }
    /* IOAPIC and PICs as at creation: a level interrupt in service at the reset would
     * otherwise keep its remote-IRR bit and never be delivered again. Clocks keep running. */
    r = ferry_vm_state_get(in->vm, now, err);
    if (r == 0) {
        memcpy(now->pic, in->vm_pristine->pic, sizeof(now->pic));
        now->ioapic = in->vm_pristine->ioapic;
        r = ferry_vm_state_set(in->vm, now, err);
    }
    free(now);
    if (r == 0)
        r = boot_image(in, err);
    if (r < 0) {
        ferry_error_prefix(err, "reset: ");
        goto resume;
    }
    /* The irqchip restore dropped the line; the machine's level is low after a reset, but
     * re-assert whatever it says so the two cannot disagree. */
    pthread_mutex_lock(&in->lock);
    ferry_vm_set_irq(in->vm, FERRY_FW_HOTPLUG_GSI, ferry_machine_irq_level(in->machine), NULL);
    pthread_mutex_unlock(&in->lock);
    for (uint32_t i = 0; i < in->ncpu; i++)
        if (in->cpu[i].online)
            ferry_vcpu_start(in->cpu[i].vcpu);
    FerryInstanceEventInfo info = {
        .event = FERRY_INSTANCE_EV_RESET, .guest = guest, .reason = reason};
    notify(in, &info);
resume:
    if (ferry_instance_runstate(in) == FERRY_RUN_RUNNING)
        ferry_vcpus_resume(in->vcpus);
out:
    pthread_mutex_unlock(&in->ops);
    return r;
}

int ferry_instance_shutdown(FerryInstance *in, bool guest, const char *reason, FerryError *err)
{
    pthread_mutex_lock(&in->ops);
    int r = run_event(in, FERRY_RUN_EV_SHUTDOWN, err);
    if (r == 0) {
        ferry_vcpus_pause(in->vcpus);
        FerryInstanceEventInfo info = {
            .event = FERRY_INSTANCE_EV_SHUTDOWN, .guest = guest, .reason = reason};
        notify(in, &info);
    }
    pthread_mutex_unlock(&in->ops);
    return r;
}

/* ---- devices ---- */

uint64_t ferry_instance_mem_block_gpa(const FerryInstance *in, uint32_t slot)
{
    (void)in;
    return HP_MEM_BASE + (uint64_t)slot * FERRY_MEM_BLOCK_SIZE;
}

bool ferry_instance_mem_hotplugged(FerryInstance *in, uint32_t slot)
{
    pthread_mutex_lock(&in->lock);
    bool h = slot < in->nmem && in->mem[slot].hotplugged;
    pthread_mutex_unlock(&in->lock);
    return h;
}

static unsigned mapped_blocks(const FerryInstance *in)
{
    unsigned n = 0;
    for (uint32_t s = 0; s < in->nmem; s++)
        n += in->mem[s].mapped;
    return n;
}

/* Map the memslot of memory block `slot` before the machine learns of the device, so the
 * guest can never see the block before its RAM exists. Lock held. */
static int mem_prepare(FerryInstance *in, const char *id, const FerryParam *params, size_t nparams,
                       int *slot_out, FerryError *err)
{
    const FerryDeviceType *t = ferry_device_type_find("mem-block");
    *slot_out = -1;
    uint64_t slot = UINT64_MAX;
    for (size_t i = 0; i < nparams; i++)
        if (params[i].name && !strcmp(params[i].name, "slot")) {
            int r = ferry_param_parse(&t->params[0], id ? id : "",
                                      params[i].value ? params[i].value : "", &slot, err);
            if (r < 0)
                return r;
        }
    if (slot == UINT64_MAX)
        return 0; /* the machine reports the missing parameter */
    if (slot >= in->nmem || in->mem[slot].mapped)
        return 0; /* out of range / slot used: the machine's error */
    uint64_t plugged = in->cfg.ram_size + (uint64_t)(mapped_blocks(in) + 1) * FERRY_MEM_BLOCK_SIZE;
    if (plugged > in->cfg.maxmem)
        return ferry_error_set(err, -ENOSPC,
                               "device '%s': memory block would exceed maxmem "
                               "(%llu MiB; start with a larger --maxmem)",
                               id ? id : "", (unsigned long long)(in->cfg.maxmem >> 20));
    MemSlot *ms = &in->mem[slot];
    int r = ferry_vm_ram_add(in->vm, ferry_instance_mem_block_gpa(in, (uint32_t)slot),
                             FERRY_MEM_BLOCK_SIZE, &ms->memslot, err);
    if (r < 0)
        return ferry_error_prefix(err, "device '%s': ", id ? id : "");
    ms->mapped = true;
    *slot_out = (int)slot;
    return 0;
}

int ferry_instance_device_add(FerryInstance *in, const char *driver, const char *id,
                              const FerryParam *params, size_t nparams, FerryError *err)
{
    pthread_mutex_lock(&in->ops);
    FerryVcpu *stop[MAX_SLOTS];
    pthread_mutex_lock(&in->lock);
    int slot = -1, r = 0;
    bool mem =
        driver && !strcmp(driver, "mem-block") && !ferry_machine_migration_active(in->machine);
    if (mem)
        r = mem_prepare(in, id, params, nparams, &slot, err);
    if (r == 0)
        r = ferry_machine_device_add(in->machine, driver, id, params, nparams, err);
    if (r < 0 && slot >= 0) {
        ferry_vm_ram_remove(in->vm, in->mem[slot].memslot, NULL);
        in->mem[slot].mapped = false;
    }
    if (r == 0 && slot >= 0) {
        FerryRunState s = ferry_machine_runstate(in->machine);
        in->mem[slot].hotplugged =
            s == FERRY_RUN_RUNNING || s == FERRY_RUN_PAUSED || s == FERRY_RUN_POSTMIGRATE;
    }
    unsigned n = apply_locked(in, stop);
    unlock_and_stop(in, stop, n);
    pthread_mutex_unlock(&in->ops);
    return r;
}

int ferry_instance_device_add_opts(FerryInstance *in, const char *opts, FerryError *err)
{
    FerryDeviceOpts o;
    int r = ferry_device_opts_parse(opts, &o, err);
    return r < 0 ? r : ferry_instance_device_add(in, o.driver, o.id, o.params, o.nparams, err);
}

int ferry_instance_device_del(FerryInstance *in, const char *id, FerryError *err)
{
    pthread_mutex_lock(&in->ops);
    FerryVcpu *stop[MAX_SLOTS];
    pthread_mutex_lock(&in->lock);
    int r = 0;
    for (size_t i = 0; id && i < ferry_machine_device_count(in->machine); i++) {
        FerryDeviceInfo d;
        if (ferry_machine_device_info(in->machine, i, &d) == 0 && !strcmp(d.id, id) &&
            d.connector == FERRY_CONN_INDEX(FERRY_CONN_CPU, 0))
            r = ferry_error_set(err, -EPERM, "Boot CPU is unpluggable");
    }
    if (r == 0)
        r = ferry_machine_device_del(in->machine, id, err);
    unsigned n = apply_locked(in, stop);
    unlock_and_stop(in, stop, n);
    pthread_mutex_unlock(&in->ops);
    return r;
}

void ferry_instance_set_migration_active(FerryInstance *in, bool active)
{
    FerryVcpu *stop[MAX_SLOTS];
    pthread_mutex_lock(&in->lock);
    ferry_machine_set_migration_active(in->machine, active);
    unsigned n = apply_locked(in, stop); /* deferred memslot removals happen now */
    unlock_and_stop(in, stop, n);
    if (!active)
        switchover_set(in, false); /* a completed migration ends its switchover here */
}

/* ---- vCPUs ---- */

unsigned ferry_instance_vcpu_count(FerryInstance *in)
{
    pthread_mutex_lock(&in->lock);
    unsigned n = 0;
    for (uint32_t i = 0; i < in->ncpu; i++)
        n += in->cpu[i].online;
    pthread_mutex_unlock(&in->lock);
    return n;
}

FerryVcpu *ferry_instance_vcpu_at(FerryInstance *in, unsigned index)
{
    FerryVcpu *v = NULL;
    pthread_mutex_lock(&in->lock);
    for (uint32_t i = 0; i < in->ncpu && !v; i++)
        if (in->cpu[i].online && index-- == 0)
            v = in->cpu[i].vcpu;
    pthread_mutex_unlock(&in->lock);
    return v;
}

FerryVcpu *ferry_instance_vcpu_adopt(FerryInstance *in, uint32_t id, FerryError *err)
{
    if (id >= in->ncpu) {
        ferry_error_set(err, -EINVAL, "vCPU %u: beyond maxcpus=%u", id, in->ncpu);
        return NULL;
    }
    pthread_mutex_lock(&in->lock);
    FerryVcpu *v = vcpu_create(in, id, err);
    if (v && !in->cpu[id].online) {
        in->cpu[id].online = true;
        ferry_vcpu_start(v); /* runs when the set is resumed */
    }
    pthread_mutex_unlock(&in->lock);
    return v;
}

int ferry_instance_incoming_done(FerryInstance *in, bool run, FerryError *err)
{
    pthread_mutex_lock(&in->ops);
    FerryVcpu *stop[MAX_SLOTS];
    pthread_mutex_lock(&in->lock);
    bool autostart = in->autostart;
    int r = ferry_machine_run_event(
        in->machine, run || autostart ? FERRY_RUN_EV_INCOMING_RUN : FERRY_RUN_EV_INCOMING_PAUSE,
        err);
    if (r == 0)
        ferry_vm_set_irq(in->vm, FERRY_FW_HOTPLUG_GSI, ferry_machine_irq_level(in->machine), NULL);
    unsigned n = r == 0 ? apply_locked(in, stop) : 0;
    unlock_and_stop(in, stop, n);
    if (r == 0 && ferry_instance_runstate(in) == FERRY_RUN_RUNNING) {
        ferry_vcpus_resume(in->vcpus);
        FerryInstanceEventInfo info = {.event = FERRY_INSTANCE_EV_RESUME};
        notify(in, &info);
    }
    pthread_mutex_unlock(&in->ops);
    return r;
}

void ferry_instance_migration_stop(FerryInstance *in)
{
    pthread_mutex_lock(&in->ops); /* after any control command under way */
    switchover_set(in, true);
    pthread_mutex_unlock(&in->ops);
    ferry_vcpus_pause(in->vcpus);
    if (ferry_instance_runstate(in) == FERRY_RUN_RUNNING) {
        FerryInstanceEventInfo info = {.event = FERRY_INSTANCE_EV_STOP};
        notify(in, &info);
    }
}

void ferry_instance_migration_resume(FerryInstance *in)
{
    if (ferry_instance_runstate(in) == FERRY_RUN_RUNNING) {
        ferry_vcpus_resume(in->vcpus);
        FerryInstanceEventInfo info = {.event = FERRY_INSTANCE_EV_RESUME};
        notify(in, &info);
    }
    switchover_set(in, false);
}

int ferry_instance_outgoing_done(FerryInstance *in, FerryError *err)
{
    pthread_mutex_lock(&in->ops);
    ferry_vcpus_pause(in->vcpus);
    int r = run_event(in, FERRY_RUN_EV_OUTGOING_DONE, err);
    switchover_set(in, false);
    pthread_mutex_unlock(&in->ops);
    return r;
}

int ferry_instance_incoming_failed(FerryInstance *in, FerryError *err)
{
    pthread_mutex_lock(&in->ops);
    int r = run_event(in, FERRY_RUN_EV_INCOMING_FAIL, err);
    pthread_mutex_unlock(&in->ops);
    return r;
}
