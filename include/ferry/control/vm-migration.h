/* Live migration of a FerryInstance: the FerryMigration engine bound to the instance (lock,
 * vCPUs, run states, migration-active flag), its QMP commands and events, and the incoming
 * side of `ferry run --incoming URI` / `--restore FILE`. */
#ifndef FERRY_CONTROL_VM_MIGRATION_H
#define FERRY_CONTROL_VM_MIGRATION_H

#include "ferry/control/qmp.h"
#include "ferry/error.h"
#include "ferry/migration/migration.h"
#include "ferry/vmm/instance.h"

typedef struct FerryVmMigration FerryVmMigration;

/* An incoming migration failed: the instance is shut down (it never ran); the owner exits with
 * `msg` (borrowed for the call). Called on an engine thread. */
typedef void (*FerryVmMigrationFailFn)(void *opaque, const char *msg);

/* Bind a migration engine to `inst` (borrowed; must outlive the object) and, when `cmds` is
 * not NULL, implement the migration QMP commands on it. After a verified incoming stream the VM
 * runs when `autostart` (no -S) or a `cont` arrived meanwhile. Caller frees with
 * ferry_vm_migration_destroy after the QMP server and before the instance. */
FerryVmMigration *ferry_vm_migration_create(FerryQmpCommands *cmds, FerryInstance *inst,
                                            bool autostart, FerryVmMigrationFailFn fail,
                                            void *opaque, FerryError *err);
void ferry_vm_migration_destroy(FerryVmMigration *vm);
/* Where MIGRATION / MIGRATION_PASS go (borrowed; NULL drops them). */
void ferry_vm_migration_set_server(FerryVmMigration *vm, FerryQmpServer *srv);
/* Start listening / reading (--incoming URI, --restore FILE = file:FILE; QMP migrate-incoming
 * after --incoming defer goes the same way). Refused, in QEMU's words, once one was started or
 * when the instance is not in inmigrate; a failure to start (bad URI, address in use) allows a
 * new attempt. The VM emits STOP when its vCPUs stop for switchover, RESUME if a failure or
 * cancel resumes them. */
int ferry_vm_migration_incoming(FerryVmMigration *vm, const char *uri, FerryError *err);
FerryMigration *ferry_vm_migration_engine(FerryVmMigration *vm); /* borrowed */

#endif
