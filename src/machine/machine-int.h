/* Private layout of the machine model, shared by the files of src/machine (and by tests that
 * emulate an older binary's descriptions). Not a public API. */
#ifndef FERRY_MACHINE_INT_H
#define FERRY_MACHINE_INT_H

#include "ferry/machine/device.h"
#include "ferry/machine/hotplug-regs.h"
#include "ferry/machine/machine.h"
#include "ferry/state/list.h"
#include "ferry/state/state.h"

#include <stdbool.h>
#include <stdint.h>

#define FERRY_PATH_MAX 128

/* Migrated device state, one struct per device type (sections "cpu", "mem-block", "card"). */
typedef struct FerryCpuState {
    uint32_t core_id;
    bool pmu;
} FerryCpuState;

typedef struct FerryMemState {
    uint64_t base;
    uint64_t size;
    uint32_t node;
} FerryMemState;

typedef struct FerryCardState {
    uint32_t slot;
    uint32_t status;
    uint32_t ext_status; /* subsection card/ext, only with ext-status=on */
    bool ext;            /* not migrated: the ext-status parameter */
} FerryCardState;

typedef struct FerryDevice {
    const FerryDeviceType *type;
    char id[FERRY_DEVICE_ID_MAX];
    char parent[FERRY_PATH_MAX];
    uint64_t params[FERRY_DEVICE_PARAM_MAX]; /* effective values, by index of type->params */
    uint32_t conn;                           /* position in FerryMachine.conn */
    union {
        FerryCpuState cpu;
        FerryMemState mem;
        FerryCardState card;
    } st;
    struct {
        uint64_t u64[3]; /* scratch the loader fills, compared with st in post_load */
    } in;
} FerryDevice;

typedef struct FerryConnector {
    /* migrated (section "connector") */
    uint32_t state; /* FerryConnState */
    bool unplug_requested;
    uint32_t cc_pos;     /* configure-connector cursor; 0 = no session */
    uint32_t wire_index; /* index as sent, checked on load */
    /* fixed by configuration */
    uint32_t index;
    uint32_t kind, slot;
    FerryDevice *dev; /* owned; NULL when empty */
} FerryConnector;

typedef struct FerryHotplugEvent {
    uint32_t action, kind, index;
    FerryLink link;
} FerryHotplugEvent;

/* Section "hotplug": controller registers, readiness, event queue. */
typedef struct FerryHotplugState {
    bool ready;
    uint32_t selector, arg, status;
    uint32_t result[3];
    uint8_t window[FERRY_HP_WINDOW_SIZE];
    FerryList events; /* of FerryHotplugEvent, subsection hotplug/events */
} FerryHotplugState;

struct FerryMachine {
    const FerryMachineType *type;
    FerryRunState run;
    bool migration_active;
    uint32_t nslots[4]; /* by FerryConnKind */
    uint32_t nconn;
    FerryConnector *conn; /* cpus, then memory blocks, then card slots */
    FerryHotplugState hp;
    bool line; /* last level signalled (cache, not state) */
    FerryIrqFn irq;
    void *irq_opaque;
    FerryDeviceDeletedFn deleted;
    void *deleted_opaque;
    FerryMachinePolicy policy; /* all false = real behaviour (seeded bad policies: explorer) */
    bool edge_latch;           /* edge_notify: a pulse is pending until the queue drains */
    FerryList stash;           /* events_load_append: destination events held during a load */
};

/* machine.c */
FerryConnector *ferry_machine_conn_by_index(FerryMachine *m, uint32_t index);
void ferry_machine_update_line(FerryMachine *m);
/* Guest released a device whose unplug was requested: unrealize, free, callback. */
void ferry_machine_finalize_unplug(FerryMachine *m, FerryConnector *c);
void ferry_machine_device_path(const FerryDevice *d, char *buf, size_t len);
void ferry_machine_purge_events(FerryMachine *m, uint32_t index); /* UINT32_MAX = all */
void ferry_machine_conn_reset(FerryMachine *m, FerryConnector *c);

/* hotplug.c: configure-connector description of a device. */
typedef struct FerryToken {
    uint32_t type;
    char name[FERRY_HP_NAME_MAX];
    uint8_t value[FERRY_HP_VALUE_MAX];
    uint32_t value_len;
} FerryToken;
uint32_t ferry_device_token_count(const FerryDevice *d); /* tokens before DONE */
void ferry_device_token(const FerryDevice *d, uint32_t pos, FerryToken *t);

/* state.c: descriptions */
extern const FerryDesc ferry_desc_hotplug;
extern const FerryDesc ferry_desc_connector_v1;
extern const FerryDesc ferry_desc_connector_v2;
/* Seeded bad policies (FerryMachinePolicy): same wire format, different load hooks. */
extern const FerryDesc ferry_desc_connector_v1_keep;
extern const FerryDesc ferry_desc_connector_v2_keep;
extern const FerryDesc ferry_desc_hotplug_keep;
extern const FerryDesc ferry_desc_hotplug_append;
extern const FerryDesc ferry_desc_cpu;
extern const FerryDesc ferry_desc_mem;
extern const FerryDesc ferry_desc_card;
const FerryDesc *ferry_device_desc(const FerryDeviceType *t);
void ferry_hotplug_event_release(void *elem);

#endif
