/* QMP commands of live migration (DESIGN §6): migrate, migrate-incoming, query-migrate,
 * migrate_cancel, migrate-set-parameters, query-migrate-parameters, on a FerryMigration; and
 * the MIGRATION / MIGRATION_PASS events a host emits from its FerryMigHost hooks. */
#ifndef FERRY_CONTROL_QMP_MIGRATION_H
#define FERRY_CONTROL_QMP_MIGRATION_H

#include "ferry/control/qmp.h"
#include "ferry/migration/migration.h"

#include <jansson.h>

typedef struct FerryQmpMigration FerryQmpMigration;
/* Start an incoming migration on `uri` for QMP migrate-incoming, or refuse with a message
 * (the QMP error's desc). */
typedef int (*FerryQmpIncomingFn)(void *opaque, const char *uri, FerryError *err);

/* Implement the six commands on `cmds` with `mig` (borrowed; must outlive the registry).
 * migrate-incoming calls `incoming` (NULL: ferry_migration_incoming on `mig`, always allowed),
 * which checks the host's state, like QEMU's "-incoming defer". Returns the handlers' context;
 * the caller frees it with ferry_qmp_migration_free after destroying the server and registry. */
FerryQmpMigration *ferry_qmp_migration_register(FerryQmpCommands *cmds, FerryMigration *mig,
                                                FerryQmpIncomingFn incoming, void *opaque,
                                                FerryError *err);
void ferry_qmp_migration_free(FerryQmpMigration *q);

/* query-migrate's answer for `info` in QEMU's shape, plus "x-ferry" (passes, delta pages,
 * throttle). New reference. */
json_t *ferry_qmp_migration_info_json(const FerryMigInfo *info);

/* Events, for a host's FerryMigHost.on_status / on_pass hooks. `srv` may be NULL (no-op). */
void ferry_qmp_migration_emit_status(FerryQmpServer *srv, FerryMigStatus status);
void ferry_qmp_migration_emit_pass(FerryQmpServer *srv, uint64_t pass);

#endif
