/* Catalogues of device types and machine types, and parameter parsing/formatting.
 * Every parameter default means "feature off"; machine types turn features on (compat props). */
#include "ferry/machine/device.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const FerryParamSpec cpu_params[] = {
    {.name = "slot", .kind = FERRY_PARAM_UINT, .required = true},
    {.name = "pmu", .kind = FERRY_PARAM_BOOL, .def = 0},
    {.name = NULL},
};
static const FerryParamSpec mem_params[] = {
    {.name = "slot", .kind = FERRY_PARAM_UINT, .required = true},
    {.name = "size", .kind = FERRY_PARAM_SIZE, .def = FERRY_MEM_BLOCK_SIZE},
    {.name = "node", .kind = FERRY_PARAM_UINT, .def = 0},
    {.name = NULL},
};
static const FerryParamSpec card_params[] = {
    {.name = "slot", .kind = FERRY_PARAM_UINT, .required = true},
    {.name = "ext-status", .kind = FERRY_PARAM_BOOL, .def = 0},
    {.name = NULL},
};

static const FerryDeviceType device_types[] = {
    {.driver = "cpu",
     .model = "ferry-vcpu-v1",
     .section = "cpu",
     .kind = FERRY_CONN_CPU,
     .params = cpu_params},
    {.driver = "mem-block",
     .model = "ferry-mem-block-v1",
     .section = "mem-block",
     .kind = FERRY_CONN_MEM,
     .params = mem_params},
    {.driver = "card",
     .model = "ferry-card-v1",
     .section = "card",
     .kind = FERRY_CONN_SLOT,
     .params = card_params},
};

/* ferry-1.0 is what the first release shipped: no extended card status, connector state only
 * when it differs from the presence default, vCPUs directly under /machine. */
static const FerryCompatProp compat_1_0[] = {{NULL}};
static const FerryCompatProp compat_2_0[] = {
    {"card", "ext-status", "on"},
    {NULL},
};

static const FerryMachineType machine_types[] = {
    {.name = "ferry-1.0",
     .summary = "Ferry machine, first release",
     .connector_state_always = false,
     .cpu_parent = "/machine",
     .compat = compat_1_0},
    {.name = "ferry-2.0",
     .summary = "Ferry machine, connector state always migrated",
     .connector_state_always = true,
     .cpu_parent = "/machine/cpu-cluster",
     .compat = compat_2_0},
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

const FerryDeviceType *ferry_device_type_at(size_t i)
{
    return i < N(device_types) ? &device_types[i] : NULL;
}

const FerryDeviceType *ferry_device_type_find(const char *driver)
{
    for (size_t i = 0; driver && i < N(device_types); i++)
        if (!strcmp(device_types[i].driver, driver))
            return &device_types[i];
    return NULL;
}

const FerryDeviceType *ferry_device_type_find_model(const char *model)
{
    for (size_t i = 0; model && i < N(device_types); i++)
        if (!strcmp(device_types[i].model, model))
            return &device_types[i];
    return NULL;
}

const FerryMachineType *ferry_machine_type_at(size_t i)
{
    return i < N(machine_types) ? &machine_types[i] : NULL;
}

const FerryMachineType *ferry_machine_type_find(const char *name)
{
    for (size_t i = 0; name && i < N(machine_types); i++)
        if (!strcmp(machine_types[i].name, name))
            return &machine_types[i];
    return NULL;
}

const FerryMachineType *ferry_machine_type_default(void)
{
    return &machine_types[N(machine_types) - 1];
}

int ferry_device_type_param_index(const FerryDeviceType *t, const char *name)
{
    for (int i = 0; t->params[i].name; i++)
        if (!strcmp(t->params[i].name, name))
            return i;
    return -1;
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (!*s || *s == '-' || *s == '+' || *s == ' ')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

int ferry_param_parse(const FerryParamSpec *spec, const char *dev_id, const char *text,
                      uint64_t *out, FerryError *err)
{
    switch (spec->kind) {
    case FERRY_PARAM_BOOL:
        if (!strcasecmp(text, "on") || !strcasecmp(text, "true") || !strcasecmp(text, "yes") ||
            !strcmp(text, "1")) {
            *out = 1;
            return 0;
        }
        if (!strcasecmp(text, "off") || !strcasecmp(text, "false") || !strcasecmp(text, "no") ||
            !strcmp(text, "0")) {
            *out = 0;
            return 0;
        }
        return ferry_error_set(err, -EINVAL,
                               "device '%s': parameter '%s' expects on or off, got '%s'", dev_id,
                               spec->name, text);
    case FERRY_PARAM_UINT:
        if (parse_u64(text, out) == 0 && *out <= UINT32_MAX)
            return 0;
        return ferry_error_set(err, -EINVAL,
                               "device '%s': parameter '%s' expects an unsigned number, got '%s'",
                               dev_id, spec->name, text);
    case FERRY_PARAM_SIZE: {
        char num[32];
        size_t len = strlen(text);
        uint64_t mult = 1;
        if (len > 0 && len < sizeof(num)) {
            memcpy(num, text, len + 1);
            switch (num[len - 1]) {
            case 'K':
            case 'k':
                mult = 1ull << 10;
                num[--len] = 0;
                break;
            case 'M':
            case 'm':
                mult = 1ull << 20;
                num[--len] = 0;
                break;
            case 'G':
            case 'g':
                mult = 1ull << 30;
                num[--len] = 0;
                break;
            default:
                break;
            }
            uint64_t v;
            if (parse_u64(num, &v) == 0 && v <= UINT64_MAX / mult) {
                *out = v * mult;
                return 0;
            }
        }
        return ferry_error_set(err, -EINVAL, "device '%s': parameter '%s' expects a size, got '%s'",
                               dev_id, spec->name, text);
    }
    }
    return ferry_error_set(err, -EINVAL, "device '%s': parameter '%s' has no kind", dev_id,
                           spec->name);
}

char *ferry_param_format(const FerryParamSpec *spec, uint64_t v, char *buf, size_t len)
{
    switch (spec->kind) {
    case FERRY_PARAM_BOOL:
        snprintf(buf, len, "%s", v ? "on" : "off");
        break;
    case FERRY_PARAM_UINT:
        snprintf(buf, len, "%" PRIu64, v);
        break;
    case FERRY_PARAM_SIZE:
        if (v && !(v & ((1ull << 30) - 1)))
            snprintf(buf, len, "%" PRIu64 "G", v >> 30);
        else if (v && !(v & ((1ull << 20) - 1)))
            snprintf(buf, len, "%" PRIu64 "M", v >> 20);
        else if (v && !(v & ((1ull << 10) - 1)))
            snprintf(buf, len, "%" PRIu64 "K", v >> 10);
        else
            snprintf(buf, len, "%" PRIu64, v);
        break;
    }
    return buf;
}
