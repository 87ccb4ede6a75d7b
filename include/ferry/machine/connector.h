/* Hotplug connectors (modelled on PAPR dynamic reconfiguration connectors): one per hotpluggable
 * slot, with the logical states the guest drives through the register interface. */
#ifndef FERRY_MACHINE_CONNECTOR_H
#define FERRY_MACHINE_CONNECTOR_H

#include <stdbool.h>
#include <stdint.h>

/* Logical connector states; the numbers are LoPAPR's and are the values on the wire and in the
 * guest registers (docs/guest-interface.md). */
typedef enum FerryConnState {
    FERRY_CONN_UNUSABLE = 1,   /* empty, or a device attached that the guest has not allocated */
    FERRY_CONN_AVAILABLE = 2,  /* allocated by the guest, isolated */
    FERRY_CONN_UNISOLATE = 3,  /* unisolated; configure-connector may run */
    FERRY_CONN_CONFIGURED = 4, /* in use by the guest */
} FerryConnState;

/* Resource kinds; the connector index is (kind << 28) | slot. */
typedef enum FerryConnKind {
    FERRY_CONN_CPU = 1,
    FERRY_CONN_MEM = 2,
    FERRY_CONN_SLOT = 3,
} FerryConnKind;

#define FERRY_CONN_INDEX(kind, slot) (((uint32_t)(kind) << 28) | ((uint32_t)(slot)&0x0fffffffu))
#define FERRY_CONN_INDEX_KIND(index) ((uint32_t)(index) >> 28)
#define FERRY_CONN_INDEX_SLOT(index) ((uint32_t)(index)&0x0fffffffu)

/* A snapshot of one connector for the host side (tests, QMP, explorer). Plain value. */
typedef struct FerryConnectorInfo {
    uint32_t index;
    FerryConnKind kind;
    uint32_t slot;
    FerryConnState state;
    bool unplug_requested;
    bool session_active;   /* a configure-connector session is in progress */
    uint32_t session_pos;  /* tokens already handed to the guest in that session */
    const char *device_id; /* borrowed from the machine; NULL when the slot is empty */
} FerryConnectorInfo;

/* "unusable", "available", "unisolate", "configured"; "invalid" otherwise. */
const char *ferry_connector_state_name(uint32_t state);
/* "cpu", "mem", "slot"; "invalid" otherwise. */
const char *ferry_connector_kind_name(uint32_t kind);

#endif
