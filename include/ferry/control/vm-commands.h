/* QMP commands and events of a running VM (FerryInstance): query-status, stop, cont,
 * system_reset, quit, device_add, device_del, query-hotpluggable-cpus, query-memory-devices;
 * events STOP, RESUME, RESET, SHUTDOWN, DEVICE_DELETED, with QEMU's shapes (docs/qmp.md). */
#ifndef FERRY_CONTROL_VM_COMMANDS_H
#define FERRY_CONTROL_VM_COMMANDS_H

#include "ferry/control/qmp.h"
#include "ferry/error.h"
#include "ferry/vmm/instance.h"

typedef struct FerryVmCommands FerryVmCommands;

/* `quit` calls this (on the QMP server thread) after the VM is shut down; the owner then
 * leaves its loop and destroys the server and the instance. */
typedef void (*FerryVmQuitFn)(void *opaque);

/* Implement the commands above on `cmds` for `inst` (both borrowed; they must outlive the
 * returned object, which the registry refers to). Caller frees with ferry_vm_commands_destroy
 * after the server is gone. */
FerryVmCommands *ferry_vm_commands_create(FerryQmpCommands *cmds, FerryInstance *inst,
                                          FerryVmQuitFn quit, void *opaque, FerryError *err);
void ferry_vm_commands_destroy(FerryVmCommands *vc);

/* Where events go (borrowed; NULL drops them). */
void ferry_vm_commands_set_server(FerryVmCommands *vc, FerryQmpServer *srv);

/* Emit the QMP event for an instance event (STOP, RESUME, RESET, SHUTDOWN, DEVICE_DELETED;
 * others are ignored). Call it from the instance listener; any thread. */
void ferry_vm_commands_event(FerryVmCommands *vc, const FerryInstanceEventInfo *info);

#endif
