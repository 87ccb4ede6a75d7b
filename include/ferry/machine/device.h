/* Device types and machine types: the catalogue of hardware a Ferry machine can host.
 * A device type has a driver name, a model id (stable name of its hardware interface) and
 * parameters whose defaults mean "feature off"; a machine type pins defaults (compat props). */
#ifndef FERRY_MACHINE_DEVICE_H
#define FERRY_MACHINE_DEVICE_H

#include "ferry/error.h"
#include "ferry/machine/connector.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FERRY_DEVICE_ID_MAX    64 /* including NUL */
#define FERRY_DEVICE_PARAM_MAX 4
#define FERRY_MEM_BLOCK_SIZE   (128ull << 20)

typedef enum FerryParamKind {
    FERRY_PARAM_BOOL, /* "on"/"off" (also true/false, yes/no, 1/0) */
    FERRY_PARAM_UINT, /* decimal or 0x hex */
    FERRY_PARAM_SIZE, /* bytes with optional K/M/G suffix; printed like "128M" */
} FerryParamKind;

typedef struct FerryParamSpec {
    const char *name;
    FerryParamKind kind;
    bool required; /* no default: must be given (placement, e.g. slot) */
    uint64_t def;  /* default when not required: always "feature off" */
} FerryParamSpec;

typedef struct FerryDeviceType {
    const char *driver;           /* name used by device_add ("cpu") */
    const char *model;            /* stable id of the hardware interface ("ferry-vcpu-v1") */
    const char *section;          /* migration section name; instance id = slot */
    FerryConnKind kind;           /* which connectors it plugs into */
    const FerryParamSpec *params; /* FERRY_DEVICE_PARAM_MAX at most, NULL-name terminated */
} FerryDeviceType;

/* A compat property: on machines of this type, `driver`.`param` defaults to `value`. */
typedef struct FerryCompatProp {
    const char *driver, *param, *value;
} FerryCompatProp;

typedef struct FerryMachineType {
    const char *name; /* "ferry-2.0" */
    const char *summary;
    bool connector_state_always;   /* send every connector's state (>= 2.0, DESIGN §5) */
    const char *cpu_parent;        /* device-tree parent of vCPUs (moved in 2.0: S15) */
    const FerryCompatProp *compat; /* terminated by {NULL} */
} FerryMachineType;

/* Lookups in the built-in catalogues (borrowed, static). NULL when unknown. */
const FerryDeviceType *ferry_device_type_find(const char *driver);
const FerryDeviceType *ferry_device_type_find_model(const char *model);
const FerryDeviceType *ferry_device_type_at(size_t i); /* NULL past the end */
const FerryMachineType *ferry_machine_type_find(const char *name);
const FerryMachineType *ferry_machine_type_at(size_t i);
const FerryMachineType *ferry_machine_type_default(void); /* the newest */

/* Index of parameter `name` in t->params, or -1. */
int ferry_device_type_param_index(const FerryDeviceType *t, const char *name);
/* Parse `text` as a value of `spec`; errors name the device id and parameter. */
int ferry_param_parse(const FerryParamSpec *spec, const char *dev_id, const char *text,
                      uint64_t *out, FerryError *err);
/* Canonical text of a value ("on", "2", "128M") into buf. Returns buf. */
char *ferry_param_format(const FerryParamSpec *spec, uint64_t v, char *buf, size_t len);

#endif
