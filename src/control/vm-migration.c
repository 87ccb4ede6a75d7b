/* FerryInstance <-> FerryMigration glue: host hooks that take the instance lock around machine
 * access, pause vCPUs without a run-state change, adopt incoming vCPUs, and finish or fail the
 * destination; plus the QMP migration commands and events. */
#include "ferry/control/vm-migration.h"

#include "ferry/control/qmp-migration.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

struct FerryVmMigration {
    FerryInstance *inst;
    FerryMigration *mig;
    FerryQmpMigration *qm;
    _Atomic(FerryQmpServer *) srv;
    bool autostart;
    /* Set once an incoming migration was started (--incoming URI, or QMP migrate-incoming after
     * --incoming defer); cleared again when starting it failed, so a corrected URI may follow
     * (QEMU's `once`). */
    atomic_bool incoming_started;
    FerryVmMigrationFailFn fail;
    void *opaque;
};

static void h_lock(void *o)
{
    ferry_instance_lock(((FerryVmMigration *)o)->inst);
}
static void h_unlock(void *o)
{
    ferry_instance_unlock(((FerryVmMigration *)o)->inst);
}
static void h_stop(void *o)
{
    ferry_instance_pause_vcpus(((FerryVmMigration *)o)->inst);
}

static void h_resume(void *o)
{
    FerryVmMigration *vm = o;
    /* Only a running VM gets its vCPUs back (a VM paused before the migration stays paused). */
    if (ferry_instance_runstate(vm->inst) == FERRY_RUN_RUNNING)
        ferry_instance_resume_vcpus(vm->inst);
}

/* QEMU emits STOP when the source stops for the final pass (it enters finish-migrate) and
 * RESUME when a failed or cancelled migration gives the guest back; only for a running VM. The
 * instance emits them (its listener forwards them to QMP); `stop`/`resume` above stay silent
 * because throttling pauses the guest every few milliseconds. */
static void h_switchover_stop(void *o, bool stopped)
{
    FerryVmMigration *vm = o;
    if (stopped)
        ferry_instance_migration_stop(vm->inst);
    else
        ferry_instance_migration_resume(vm->inst);
}

static void h_set_active(void *o, bool active)
{
    ferry_instance_set_migration_active(((FerryVmMigration *)o)->inst, active);
}

static unsigned h_vcpu_count(void *o)
{
    return ferry_instance_vcpu_count(((FerryVmMigration *)o)->inst);
}

static FerryVcpu *h_vcpu_at(void *o, unsigned i)
{
    return ferry_instance_vcpu_at(((FerryVmMigration *)o)->inst, i);
}

static FerryVcpu *h_vcpu_add(void *o, uint32_t id, FerryError *err)
{
    return ferry_instance_vcpu_adopt(((FerryVmMigration *)o)->inst, id, err);
}

static void h_status(void *o, FerryMigStatus st)
{
    FerryVmMigration *vm = o;
    ferry_qmp_migration_emit_status(atomic_load(&vm->srv), st);
    FerryMigInfo *info = NULL;
    if (st == FERRY_MIG_COMPLETED || st == FERRY_MIG_FAILED) {
        info = malloc(sizeof(*info));
        if (info)
            ferry_migration_info(vm->mig, info);
    }
    if (!info || !info->incoming) {
        free(info);
        return;
    }
    FerryError err = {0};
    if (st == FERRY_MIG_COMPLETED) {
        bool run = vm->autostart || ferry_instance_autostart(vm->inst);
        if (ferry_instance_incoming_done(vm->inst, run, &err) < 0 && vm->fail) {
            char msg[FERRY_ERROR_MSG_MAX + 64];
            snprintf(msg, sizeof(msg), "incoming migration: %s", err.msg);
            ferry_instance_incoming_failed(vm->inst, NULL);
            vm->fail(vm->opaque, msg);
        }
    } else {
        ferry_instance_incoming_failed(vm->inst, NULL);
        if (vm->fail) {
            char msg[FERRY_ERROR_MSG_MAX + 64];
            snprintf(msg, sizeof(msg), "incoming migration failed, the VM did not start: %s",
                     info->error);
            vm->fail(vm->opaque, msg);
        }
    }
    free(info);
}

static void h_pass(void *o, uint64_t pass)
{
    FerryVmMigration *vm = o;
    ferry_qmp_migration_emit_pass(atomic_load(&vm->srv), pass);
}

/* Stream warnings on the destination (a skipped optional subsection): on the VMM's stderr. */
static void h_warning(void *o, const char *msg)
{
    (void)o;
    fprintf(stderr, "ferry run: warning: incoming migration: %s\n", msg);
}

/* QEMU 7.2's qmp_migrate_incoming checks, in its order and words: a started incoming
 * migration first (--incoming URI starts one at launch), then the inmigrate run state (only
 * --incoming gives it). */
static int start_incoming(void *o, const char *uri, FerryError *err)
{
    FerryVmMigration *vm = o;
    bool was = false;
    if (!atomic_compare_exchange_strong(&vm->incoming_started, &was, true))
        return ferry_error_set(err, -EBUSY, "The incoming migration has already been started");
    int r;
    if (ferry_instance_runstate(vm->inst) != FERRY_RUN_INMIGRATE)
        r = ferry_error_set(err, -EINVAL, "'-incoming' was not specified on the command line");
    else
        r = ferry_migration_incoming(vm->mig, uri, err);
    if (r < 0)
        atomic_store(&vm->incoming_started, false);
    return r;
}

FerryVmMigration *ferry_vm_migration_create(FerryQmpCommands *cmds, FerryInstance *inst,
                                            bool autostart, FerryVmMigrationFailFn fail,
                                            void *opaque, FerryError *err)
{
    FerryVmMigration *vm = calloc(1, sizeof(*vm));
    if (!vm) {
        ferry_error_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    vm->inst = inst;
    vm->autostart = autostart;
    vm->fail = fail;
    vm->opaque = opaque;
    FerryMigHost h = {
        .vm = ferry_instance_vm(inst),
        .machine = ferry_instance_machine(inst),
        .lock = h_lock,
        .unlock = h_unlock,
        .set_active = h_set_active,
        .vcpu_count = h_vcpu_count,
        .vcpu_at = h_vcpu_at,
        .stop = h_stop,
        .resume = h_resume,
        .on_switchover_stop = h_switchover_stop,
        .on_status = h_status,
        .on_pass = h_pass,
        .on_warning = h_warning,
        .vcpu_add = h_vcpu_add,
        .opaque = vm,
    };
    vm->mig = ferry_migration_new(&h, err);
    if (!vm->mig)
        goto err_free;
    if (cmds) {
        vm->qm = ferry_qmp_migration_register(cmds, vm->mig, start_incoming, vm, err);
        if (!vm->qm)
            goto err_free_mig;
    }
    return vm;
err_free_mig:
    ferry_migration_free(vm->mig);
err_free:
    free(vm);
    return NULL;
}

void ferry_vm_migration_destroy(FerryVmMigration *vm)
{
    if (!vm)
        return;
    ferry_migration_free(vm->mig); /* cancels and joins the engine threads */
    ferry_qmp_migration_free(vm->qm);
    free(vm);
}

void ferry_vm_migration_set_server(FerryVmMigration *vm, FerryQmpServer *srv)
{
    atomic_store(&vm->srv, srv);
}

int ferry_vm_migration_incoming(FerryVmMigration *vm, const char *uri, FerryError *err)
{
    return start_incoming(vm, uri, err);
}

FerryMigration *ferry_vm_migration_engine(FerryVmMigration *vm)
{
    return vm->mig;
}
