/* QMP handlers bound to a FerryInstance, with QEMU 7.2's argument shapes, return values and
 * error classes, and the instance's events turned into QMP events. */
#include "ferry/control/vm-commands.h"

#include "ferry/machine/device.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct FerryVmCommands {
    FerryInstance *inst;
    FerryQmpServer *srv;
    FerryVmQuitFn quit;
    void *quit_opaque;
};

static int qmp_query_status(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    (void)args;
    (void)err;
    FerryVmCommands *vc = ctx;
    FerryRunState s = ferry_instance_runstate(vc->inst);
    *ret = json_pack("{s:b, s:b, s:s}", "running", s == FERRY_RUN_RUNNING, "singlestep", 0,
                     "status", ferry_runstate_name(s));
    return 0;
}

static int qmp_stop(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    (void)args;
    (void)ret;
    FerryVmCommands *vc = ctx;
    FerryError e = {0};
    if (ferry_instance_stop(vc->inst, &e) < 0)
        return ferry_qmp_error_from(err, &e);
    return 0;
}

static int qmp_cont(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    (void)args;
    (void)ret;
    FerryVmCommands *vc = ctx;
    FerryError e = {0};
    if (ferry_instance_cont(vc->inst, &e) < 0)
        return ferry_qmp_error_from(err, &e);
    return 0;
}

static int qmp_system_reset(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    (void)args;
    (void)ret;
    FerryVmCommands *vc = ctx;
    FerryError e = {0};
    if (ferry_instance_reset(vc->inst, false, "host-qmp-system-reset", &e) < 0)
        return ferry_qmp_error_from(err, &e);
    return 0;
}

static int qmp_quit(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    (void)args;
    (void)ret;
    (void)err;
    FerryVmCommands *vc = ctx;
    FerryError e = {0};
    /* Already shut down (guest power-off): quitting still works, without a second event. */
    if (ferry_instance_runstate(vc->inst) != FERRY_RUN_SHUTDOWN)
        ferry_instance_shutdown(vc->inst, false, "host-qmp-quit", &e);
    if (vc->quit)
        vc->quit(vc->quit_opaque);
    return 0;
}

/* A free-form device property as device_add's text syntax (QEMU accepts strings, numbers and
 * booleans for qdev properties). */
static int prop_text(const char *name, json_t *v, char *buf, size_t len, FerryQmpError *err)
{
    if (json_is_string(v))
        snprintf(buf, len, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_boolean(v))
        snprintf(buf, len, "%s", json_is_true(v) ? "on" : "off");
    else
        return ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC,
                                   "Invalid parameter type for '%s', expected: string, number "
                                   "or boolean",
                                   name);
    return 0;
}

#define MAX_PROPS 16
#define PROP_TEXT 64

static int qmp_device_add(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    (void)ret;
    FerryVmCommands *vc = ctx;
    const char *driver = json_string_value(json_object_get(args, "driver"));
    const char *id = json_string_value(json_object_get(args, "id"));
    FerryParam params[MAX_PROPS];
    char text[MAX_PROPS][PROP_TEXT];
    size_t n = 0;
    const char *key;
    json_t *val;
    json_object_foreach(args, key, val)
    {
        if (!strcmp(key, "driver") || !strcmp(key, "id") || !strcmp(key, "bus"))
            continue;
        if (n == MAX_PROPS)
            return ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC,
                                       "device_add: too many properties (at most %d)", MAX_PROPS);
        if (prop_text(key, val, text[n], PROP_TEXT, err) < 0)
            return -EINVAL;
        params[n] = (FerryParam){key, text[n]};
        n++;
    }
    if (!ferry_device_type_find(driver))
        return ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC,
                                   "'%s' is not a valid device model name", driver);
    if (json_object_get(args, "bus"))
        return ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC, "Bus '%s' not found",
                                   json_string_value(json_object_get(args, "bus")));
    FerryError e = {0};
    if (ferry_instance_device_add(vc->inst, driver, id, params, n, &e) < 0)
        return ferry_qmp_error_from(err, &e);
    return 0;
}

static int qmp_device_del(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    (void)ret;
    FerryVmCommands *vc = ctx;
    const char *id = json_string_value(json_object_get(args, "id"));
    FerryError e = {0};
    int r = ferry_instance_device_del(vc->inst, id, &e);
    if (r == -ENOENT)
        return ferry_qmp_error_set(err, FERRY_QMP_ERROR_DEVICE_NOT_FOUND, "Device '%s' not found",
                                   id);
    ferry_instance_lock(vc->inst);
    bool migrating = ferry_machine_migration_active(ferry_instance_machine(vc->inst));
    ferry_instance_unlock(vc->inst);
    if (r == -EBUSY && !migrating) /* QEMU's wording for a repeated device_del */
        return ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC,
                                   "Device %s is already in the process of unplug", id);
    if (r < 0)
        return ferry_qmp_error_from(err, &e);
    return 0;
}

/* The device in connector `index`, if any (lock held). */
static const char *conn_device(FerryMachine *m, uint32_t index, char *path, size_t len)
{
    FerryConnectorInfo ci;
    if (ferry_machine_connector_find(m, index, &ci) < 0 || !ci.device_id)
        return NULL;
    for (size_t i = 0; i < ferry_machine_device_count(m); i++) {
        FerryDeviceInfo d;
        if (ferry_machine_device_info(m, i, &d) == 0 && d.connector == index) {
            snprintf(path, len, "%s/%s", d.parent, d.id);
            return d.id;
        }
    }
    return NULL;
}

static int qmp_query_hotpluggable_cpus(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    (void)args;
    (void)err;
    FerryVmCommands *vc = ctx;
    FerryMachine *m = ferry_instance_machine(vc->inst);
    const FerryDeviceType *t = ferry_device_type_find("cpu");
    json_t *list = json_array();
    ferry_instance_lock(vc->inst);
    /* QEMU lists the highest slot first; props are what device_add needs to fill the slot. */
    size_t nconn = ferry_machine_connector_count(m);
    for (size_t i = nconn; i-- > 0;) {
        FerryConnectorInfo ci;
        if (ferry_machine_connector_info(m, i, &ci) < 0 || ci.kind != FERRY_CONN_CPU)
            continue;
        json_t *o = json_pack("{s:s, s:i, s:{s:i}}", "type", t->driver, "vcpus-count", 1, "props",
                              "slot", (json_int_t)ci.slot);
        char path[256];
        if (conn_device(m, ci.index, path, sizeof(path)))
            json_object_set_new(o, "qom-path", json_string(path));
        json_array_append_new(list, o);
    }
    ferry_instance_unlock(vc->inst);
    *ret = list;
    return 0;
}

static int qmp_query_memory_devices(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    (void)args;
    (void)err;
    FerryVmCommands *vc = ctx;
    FerryMachine *m = ferry_instance_machine(vc->inst);
    json_t *list = json_array();
    ferry_instance_lock(vc->inst);
    for (size_t i = 0; i < ferry_machine_connector_count(m); i++) {
        FerryConnectorInfo ci;
        char path[256], node[32];
        if (ferry_machine_connector_info(m, i, &ci) < 0 || ci.kind != FERRY_CONN_MEM)
            continue;
        const char *id = conn_device(m, ci.index, path, sizeof(path));
        if (!id)
            continue;
        if (ferry_machine_device_param(m, id, "node", node, sizeof(node), NULL) < 0)
            snprintf(node, sizeof(node), "0");
        char memdev[128];
        snprintf(memdev, sizeof(memdev), "/objects/%s", id);
        json_t *data =
            json_pack("{s:s, s:I, s:I, s:i, s:i, s:s, s:b, s:b}", "id", id, "addr",
                      (json_int_t)ferry_instance_mem_block_gpa(vc->inst, ci.slot), "size",
                      (json_int_t)FERRY_MEM_BLOCK_SIZE, "slot", (int)ci.slot, "node", atoi(node),
                      "memdev", memdev, "hotplugged", 0, "hotpluggable", 1);
        json_array_append_new(list, json_pack("{s:s, s:o}", "type", "dimm", "data", data));
    }
    ferry_instance_unlock(vc->inst);
    /* hotplugged needs the instance lock itself: fill it after. */
    size_t idx;
    json_t *e;
    json_array_foreach(list, idx, e)
    {
        json_t *data = json_object_get(e, "data");
        uint32_t slot = (uint32_t)json_integer_value(json_object_get(data, "slot"));
        json_object_set_new(data, "hotplugged",
                            json_boolean(ferry_instance_mem_hotplugged(vc->inst, slot)));
    }
    *ret = list;
    return 0;
}

static const struct {
    const char *name;
    FerryQmpHandler fn;
} handlers[] = {
    {"query-status", qmp_query_status},
    {"stop", qmp_stop},
    {"cont", qmp_cont},
    {"system_reset", qmp_system_reset},
    {"quit", qmp_quit},
    {"device_add", qmp_device_add},
    {"device_del", qmp_device_del},
    {"query-hotpluggable-cpus", qmp_query_hotpluggable_cpus},
    {"query-memory-devices", qmp_query_memory_devices},
};

FerryVmCommands *ferry_vm_commands_create(FerryQmpCommands *cmds, FerryInstance *inst,
                                          FerryVmQuitFn quit, void *opaque, FerryError *err)
{
    FerryVmCommands *vc = calloc(1, sizeof(*vc));
    if (!vc) {
        ferry_error_set(err, -ENOMEM, "QMP VM commands: out of memory");
        return NULL;
    }
    vc->inst = inst;
    vc->quit = quit;
    vc->quit_opaque = opaque;
    for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
        if (ferry_qmp_commands_implement(cmds, handlers[i].name, handlers[i].fn, vc, err) < 0) {
            free(vc);
            return NULL;
        }
    return vc;
}

void ferry_vm_commands_destroy(FerryVmCommands *vc)
{
    free(vc);
}

void ferry_vm_commands_set_server(FerryVmCommands *vc, FerryQmpServer *srv)
{
    vc->srv = srv;
}

void ferry_vm_commands_event(FerryVmCommands *vc, const FerryInstanceEventInfo *info)
{
    if (!vc || !vc->srv)
        return;
    json_t *data = NULL;
    const char *name = NULL;
    switch (info->event) {
    case FERRY_INSTANCE_EV_STOP:
        name = "STOP";
        break;
    case FERRY_INSTANCE_EV_RESUME:
        name = "RESUME";
        break;
    case FERRY_INSTANCE_EV_RESET:
    case FERRY_INSTANCE_EV_SHUTDOWN:
        name = info->event == FERRY_INSTANCE_EV_RESET ? "RESET" : "SHUTDOWN";
        data = json_pack("{s:b, s:s}", "guest", info->guest, "reason",
                         info->reason ? info->reason : "none");
        break;
    case FERRY_INSTANCE_EV_DEVICE_DELETED:
        name = "DEVICE_DELETED";
        data = json_pack("{s:s, s:s}", "device", info->device, "path", info->path);
        break;
    default:
        return;
    }
    ferry_qmp_emit(vc->srv, name, data, NULL);
    json_decref(data);
}
