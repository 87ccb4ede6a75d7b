/* The machine model: devices on hotplug connectors, the hotplug event queue, guest readiness and
 * run states, as pure logic (no KVM). The VMM binds it to a vCPU's port I/O and an IRQ line;
 * migration moves it with the registry it builds; the explorer clones, compares and hashes it. */
#ifndef FERRY_MACHINE_MACHINE_H
#define FERRY_MACHINE_MACHINE_H

#include "ferry/error.h"
#include "ferry/machine/connector.h"
#include "ferry/machine/device.h"
#include "ferry/machine/runstate.h"
#include "ferry/state/schema.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A machine is not thread-safe: the VMM serialises every call on one machine (vCPU port I/O,
 * QMP commands, migration) under one lock. Callbacks run synchronously inside the call that
 * caused them, e.g. DEVICE_DELETED inside the guest's port write that released the device. */
typedef struct FerryMachine FerryMachine;

#define FERRY_MACHINE_MAX_SLOTS 64 /* per resource kind */

typedef struct FerryMachineConfig {
    const char *type;           /* machine type name; NULL = newest */
    uint32_t cpu_slots;         /* hotpluggable vCPU slots (max cpus); 0 = 4 */
    uint32_t boot_cpus;         /* vCPUs "cpu0".."cpuN-1" created at start in slots 0..N-1 */
    uint32_t mem_slots;         /* 128 MiB memory block slots; 0 = 4 */
    uint32_t card_slots;        /* device slots; 0 = 4 */
    bool incoming;              /* start in inmigrate (--incoming), else prelaunch */
    const char *const *devices; /* -device option strings ("card,id=c1,slot=1"), coldplugged */
    size_t ndevices;
} FerryMachineConfig;

/* Seeded bad policies, for testing the explorer (docs/explorer.md). All false (the default) is
 * Ferry's real behaviour; each switch replaces one rule of DESIGN §4/§5 by what QEMU or a naive
 * implementation did. Never set outside explorers and their tests. */
typedef struct FerryMachinePolicy {
    /* QEMU's QTAILQ loader: the destination's event queue is not cleared before the load
     * (neither by incoming_prepare nor by the section's pre_load) and the stream's events are
     * appended to it instead of replacing it. */
    bool events_load_append;
    /* QEMU before 94fd9cbaa3: device_add in inmigrate takes the hotplug path (connector left
     * unusable, add event queued) instead of coldplugging. */
    bool inmigrate_hotplug;
    /* The notification is a pulse when an event is queued while the guest is ready (latched
     * until the guest drains the queue), not a level: nothing re-asserts it at ready, and the
     * latch is not migrated. */
    bool edge_notify;
    /* Every machine type sends connector state only in a subsection when it differs from the
     * presence default (ferry-1.0's rule applied to ferry-2.0). */
    bool conn_state_subsection;
    /* The destination keeps its own pre-stream connector states (no reset from presence in
     * incoming_prepare or the connector's pre_load): what the stream omits stays as built. */
    bool keep_dest_connectors;
    /* The destination keeps its pre-stream event queue (no purge before the load); a loaded
     * queue still replaces it. */
    bool keep_dest_events;
} FerryMachinePolicy;

/* Level of the guest notification line changed (asserted iff events queued && guest ready). */
typedef void (*FerryIrqFn)(void *opaque, bool level);
/* A device was unrealized and freed (QMP DEVICE_DELETED); `id` and `path` valid during the call. */
typedef void (*FerryDeviceDeletedFn)(void *opaque, const char *id, const char *path);

/* Caller frees with ferry_machine_free. Errors: unknown machine type, slot counts out of range. */
FerryMachine *ferry_machine_new(const FerryMachineConfig *cfg, FerryError *err);
void ferry_machine_free(FerryMachine *m);

const FerryMachineType *ferry_machine_type(const FerryMachine *m);
FerryRunState ferry_machine_runstate(const FerryMachine *m);
/* Apply a run-state event through the table; -EINVAL "cannot <event> in state <state>" if refused.
 * RESET also performs the machine reset (ferry_machine_reset). */
int ferry_machine_run_event(FerryMachine *m, FerryRunEvent ev, FerryError *err);
/* Machine reset (DESIGN §4): connectors from presence (unplug requested -> released now),
 * events and sessions purged, readiness cleared. Does not change the run state. */
void ferry_machine_reset(FerryMachine *m);

/* An outgoing migration is in setup or active: device_add/device_del are refused meanwhile. */
void ferry_machine_set_migration_active(FerryMachine *m, bool active);
bool ferry_machine_migration_active(const FerryMachine *m);

/* Switch seeded bad policies (copied by ferry_machine_clone; not part of equality or hash).
 * Set it before adding devices or loading a stream. */
void ferry_machine_set_policy(FerryMachine *m, const FerryMachinePolicy *p);
FerryMachinePolicy ferry_machine_policy(const FerryMachine *m);

/* Callbacks (may be NULL). Not copied by ferry_machine_clone. */
void ferry_machine_set_irq(FerryMachine *m, FerryIrqFn fn, void *opaque);
void ferry_machine_set_device_deleted(FerryMachine *m, FerryDeviceDeletedFn fn, void *opaque);
bool ferry_machine_irq_level(const FerryMachine *m);

/* ---- devices ---- */
typedef struct FerryParam {
    const char *name, *value;
} FerryParam;

/* device_add: coldplug in prelaunch/inmigrate, hotplug (event queued) in running/paused/
 * postmigrate, refused in shutdown and while an outgoing migration is active. `id` required.
 * Errors: "device 'cpu2': unknown parameter 'foo'", "device 'mem1': memory block size must be
 * 128M", "duplicate device id 'cpu2'", "device 'cpu9': slot 9 out of range (4 cpu slots)",
 * "device_add is blocked while migration is active". */
int ferry_machine_device_add(FerryMachine *m, const char *driver, const char *id,
                             const FerryParam *params, size_t nparams, FerryError *err);
/* A -device style string ("cpu,id=cpu2,slot=2") split into driver, id and parameters, which
 * point into o->buf (the parsed copy): valid as long as `o` is. Errors name the string. */
#define FERRY_DEVICE_OPTS_MAX 16
typedef struct FerryDeviceOpts {
    char buf[512];
    const char *driver, *id;
    FerryParam params[FERRY_DEVICE_OPTS_MAX];
    size_t nparams;
} FerryDeviceOpts;
int ferry_device_opts_parse(const char *opts, FerryDeviceOpts *o, FerryError *err);
/* ferry_machine_device_add from such a string. */
int ferry_machine_device_add_opts(FerryMachine *m, const char *opts, FerryError *err);
/* device_del: in prelaunch/inmigrate removes at once; otherwise requests the unplug (the guest
 * releases, then the device-deleted callback fires). -EBUSY if already requested, -ENOENT if
 * unknown, refused during an outgoing migration. */
int ferry_machine_device_del(FerryMachine *m, const char *id, FerryError *err);
/* Move a device in the device tree (its section and instance do not change: S15). */
int ferry_machine_device_reparent(FerryMachine *m, const char *id, const char *parent,
                                  FerryError *err);

size_t ferry_machine_device_count(const FerryMachine *m);
/* The i-th device in connector order (borrowed strings). -ENOENT past the end. */
typedef struct FerryDeviceInfo {
    const char *id;
    const FerryDeviceType *type;
    const char *parent; /* device-tree parent; the device's path is parent + "/" + id */
    uint32_t connector; /* connector index */
    bool unplug_requested;
} FerryDeviceInfo;
int ferry_machine_device_info(const FerryMachine *m, size_t i, FerryDeviceInfo *out);
/* Effective parameter value (after defaults and compat props) of device `id`, as text. */
int ferry_machine_device_param(const FerryMachine *m, const char *id, const char *param, char *buf,
                               size_t len, FerryError *err);
bool ferry_machine_has_device(const FerryMachine *m, const char *id);

/* ---- connectors and events (host view) ---- */
size_t ferry_machine_connector_count(const FerryMachine *m);
int ferry_machine_connector_info(const FerryMachine *m, size_t i, FerryConnectorInfo *out);
/* By connector index (FERRY_CONN_INDEX). -ENOENT if none. */
int ferry_machine_connector_find(const FerryMachine *m, uint32_t index, FerryConnectorInfo *out);
bool ferry_machine_guest_ready(const FerryMachine *m);

typedef struct FerryEventInfo {
    uint32_t action; /* FERRY_HP_ACTION_ADD / REMOVE */
    uint32_t kind;   /* FerryConnKind */
    uint32_t index;  /* connector index */
} FerryEventInfo;
size_t ferry_machine_event_count(const FerryMachine *m);
int ferry_machine_event_at(const FerryMachine *m, size_t i, FerryEventInfo *out);

/* ---- migration (DESIGN §5) ---- */
/* A registry of every section of this machine with its object: "hotplug" 0, "connector" <index>
 * per connector, and one section per device ("cpu"/"mem-block"/"card", instance = slot).
 * Descriptions depend on the machine type. Caller frees; entries borrow from `m` and are valid
 * until the next device add/del or ferry_machine_free. */
FerryRegistry *ferry_machine_registry(FerryMachine *m, FerryError *err);
/* Schema-only registry of a machine type (one instance 0 per section kind) for schema dumps. */
FerryRegistry *ferry_machine_type_schema_registry(const FerryMachineType *t, FerryError *err);
/* Destination, before loading: reset every connector from presence, clear events, sessions and
 * readiness. Loading also does this per section (pre_load hooks), so a stream that omits
 * transitional state leaves the presence default. */
void ferry_machine_incoming_prepare(FerryMachine *m);
/* Destination, after loading: cross-check loaded state (connector states vs devices, events vs
 * connectors) and re-evaluate the notification line. Errors name the connector. */
int ferry_machine_incoming_finish(FerryMachine *m, FerryError *err);

/* ---- model properties (explorer) ---- */
/* Deep copy of devices, connectors, events, sessions, registers and run state. Callbacks are not
 * copied. Caller frees. NULL only on allocation failure. */
FerryMachine *ferry_machine_clone(const FerryMachine *m);
/* Same observable state (callbacks and cached line level excluded). */
bool ferry_machine_equal(const FerryMachine *a, const FerryMachine *b);
/* Deterministic (same across processes and runs) 64-bit hash; equal machines hash equal. */
uint64_t ferry_machine_hash(const FerryMachine *m);

#endif
