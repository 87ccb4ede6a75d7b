/* Handshake inventory: what devices a machine has (id, driver, model, effective parameters),
 * serialised as JSON and compared so the destination can refuse with every mismatch at once. */
#include "ferry/machine/inventory.h"

#include "machine-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VALUE_MAX 32

typedef struct InvParam {
    char name[32];
    char value[VALUE_MAX];
} InvParam;

typedef struct InvDevice {
    char id[FERRY_DEVICE_ID_MAX];
    char driver[32];
    char model[64];
    InvParam params[FERRY_DEVICE_PARAM_MAX];
    size_t nparams;
} InvDevice;

struct FerryInventory {
    char machine[32];
    InvDevice *dev;
    size_t n;
};

FerryInventory *ferry_machine_inventory(const FerryMachine *m)
{
    FerryInventory *inv = calloc(1, sizeof(*inv));
    if (!inv)
        return NULL;
    snprintf(inv->machine, sizeof(inv->machine), "%s", m->type->name);
    inv->dev = calloc(m->nconn ? m->nconn : 1, sizeof(*inv->dev));
    if (!inv->dev) {
        free(inv);
        return NULL;
    }
    for (uint32_t i = 0; i < m->nconn; i++) {
        const FerryDevice *d = m->conn[i].dev;
        if (!d)
            continue;
        InvDevice *o = &inv->dev[inv->n++];
        snprintf(o->id, sizeof(o->id), "%s", d->id);
        snprintf(o->driver, sizeof(o->driver), "%s", d->type->driver);
        snprintf(o->model, sizeof(o->model), "%s", d->type->model);
        for (int p = 0; d->type->params[p].name; p++) {
            InvParam *ip = &o->params[o->nparams++];
            snprintf(ip->name, sizeof(ip->name), "%s", d->type->params[p].name);
            ferry_param_format(&d->type->params[p], d->params[p], ip->value, sizeof(ip->value));
        }
    }
    return inv;
}

void ferry_inventory_free(FerryInventory *inv)
{
    if (!inv)
        return;
    free(inv->dev);
    free(inv);
}

const char *ferry_inventory_machine(const FerryInventory *inv)
{
    return inv->machine;
}
size_t ferry_inventory_count(const FerryInventory *inv)
{
    return inv->n;
}

json_t *ferry_inventory_to_json(const FerryInventory *inv)
{
    json_t *devs = json_array();
    for (size_t i = 0; i < inv->n; i++) {
        const InvDevice *d = &inv->dev[i];
        json_t *params = json_object();
        for (size_t p = 0; p < d->nparams; p++)
            json_object_set_new(params, d->params[p].name, json_string(d->params[p].value));
        json_array_append_new(devs, json_pack("{s:s, s:s, s:s, s:o}", "id", d->id, "driver",
                                              d->driver, "model", d->model, "params", params));
    }
    return json_pack("{s:s, s:o}", "machine", inv->machine, "devices", devs);
}

static int copy_str(char *dst, size_t cap, const json_t *v, const char *path, FerryError *err)
{
    if (!json_is_string(v))
        return ferry_error_set(err, -EINVAL, "inventory %s: expected a string", path);
    const char *s = json_string_value(v);
    if (strlen(s) >= cap || strlen(s) != json_string_length(v))
        return ferry_error_set(err, -EINVAL, "inventory %s: string too long or contains NUL", path);
    memcpy(dst, s, strlen(s) + 1);
    return 0;
}

FerryInventory *ferry_inventory_from_json(const json_t *j, FerryError *err)
{
    if (!json_is_object(j)) {
        ferry_error_set(err, -EINVAL, "inventory: expected an object");
        return NULL;
    }
    const json_t *devs = json_object_get(j, "devices");
    if (!json_is_array(devs)) {
        ferry_error_set(err, -EINVAL, "inventory .devices: expected an array");
        return NULL;
    }
    size_t n = json_array_size(devs);
    if (n > 3 * FERRY_MACHINE_MAX_SLOTS) {
        ferry_error_set(err, -EINVAL, "inventory .devices: %zu devices, at most %d", n,
                        3 * FERRY_MACHINE_MAX_SLOTS);
        return NULL;
    }
    FerryInventory *inv = calloc(1, sizeof(*inv));
    if (!inv || !(inv->dev = calloc(n ? n : 1, sizeof(*inv->dev)))) {
        free(inv);
        ferry_error_set(err, -ENOMEM, "inventory: out of memory");
        return NULL;
    }
    if (copy_str(inv->machine, sizeof(inv->machine), json_object_get(j, "machine"), ".machine",
                 err) < 0)
        goto err_free_inv;
    for (size_t i = 0; i < n; i++) {
        const json_t *jd = json_array_get(devs, i);
        InvDevice *d = &inv->dev[i];
        char path[64];
        if (!json_is_object(jd)) {
            ferry_error_set(err, -EINVAL, "inventory .devices[%zu]: expected an object", i);
            goto err_free_inv;
        }
        snprintf(path, sizeof(path), ".devices[%zu].id", i);
        if (copy_str(d->id, sizeof(d->id), json_object_get(jd, "id"), path, err) < 0)
            goto err_free_inv;
        snprintf(path, sizeof(path), ".devices[%zu].driver", i);
        if (copy_str(d->driver, sizeof(d->driver), json_object_get(jd, "driver"), path, err) < 0)
            goto err_free_inv;
        snprintf(path, sizeof(path), ".devices[%zu].model", i);
        if (copy_str(d->model, sizeof(d->model), json_object_get(jd, "model"), path, err) < 0)
            goto err_free_inv;
        const json_t *params = json_object_get(jd, "params");
        if (!json_is_object(params) || json_object_size(params) > FERRY_DEVICE_PARAM_MAX) {
            ferry_error_set(err, -EINVAL,
                            "inventory .devices[%zu].params: expected an object of at most %d "
                            "members",
                            i, FERRY_DEVICE_PARAM_MAX);
            goto err_free_inv;
        }
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)params, key, val)
        {
            InvParam *p = &d->params[d->nparams++];
            snprintf(path, sizeof(path), ".devices[%zu].params.%.20s", i, key);
            if (strlen(key) >= sizeof(p->name)) {
                ferry_error_set(err, -EINVAL, "inventory %s: name too long", path);
                goto err_free_inv;
            }
            strcpy(p->name, key);
            if (copy_str(p->value, sizeof(p->value), val, path, err) < 0)
                goto err_free_inv;
        }
        inv->n++;
    }
    return inv;

err_free_inv:
    ferry_inventory_free(inv);
    return NULL;
}

static const InvDevice *find(const FerryInventory *inv, const char *id)
{
    for (size_t i = 0; i < inv->n; i++)
        if (!strcmp(inv->dev[i].id, id))
            return &inv->dev[i];
    return NULL;
}

static const char *param_value(const InvDevice *d, const char *name)
{
    for (size_t i = 0; i < d->nparams; i++)
        if (!strcmp(d->params[i].name, name))
            return d->params[i].value;
    return NULL;
}

int ferry_inventory_compare(const FerryInventory *src, const FerryInventory *dst, char **report)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = report ? open_memstream(&text, &len) : NULL;
    int n = 0;
#define MISMATCH(...)                                                                              \
    do {                                                                                           \
        n++;                                                                                       \
        if (f) {                                                                                   \
            fprintf(f, __VA_ARGS__);                                                               \
            fputc('\n', f);                                                                        \
        }                                                                                          \
    } while (0)
    if (strcmp(src->machine, dst->machine))
        MISMATCH("machine type '%s' on the source, '%s' on the destination", src->machine,
                 dst->machine);
    for (size_t i = 0; i < src->n; i++) {
        const InvDevice *s = &src->dev[i];
        const FerryDeviceType *known = ferry_device_type_find_model(s->model);
        const InvDevice *d = find(dst, s->id);
        if (!known) {
            MISMATCH("device '%s': model '%s' is unknown to the destination", s->id, s->model);
            continue;
        }
        if (!d) {
            MISMATCH("device '%s' (%s, model %s) is missing on the destination", s->id, s->driver,
                     s->model);
            continue;
        }
        if (strcmp(s->model, d->model)) {
            MISMATCH("device '%s': model '%s' on the source, '%s' on the destination", s->id,
                     s->model, d->model);
            continue;
        }
        for (size_t p = 0; p < s->nparams; p++) {
            const char *dv = param_value(d, s->params[p].name);
            if (!dv)
                MISMATCH("device '%s': parameter '%s' unknown on the destination", s->id,
                         s->params[p].name);
            else if (strcmp(dv, s->params[p].value))
                MISMATCH("device '%s': parameter '%s' is '%s' on the source, '%s' on the "
                         "destination",
                         s->id, s->params[p].name, s->params[p].value, dv);
        }
        for (size_t p = 0; p < d->nparams; p++)
            if (!param_value(s, d->params[p].name))
                MISMATCH("device '%s': parameter '%s' exists only on the destination", s->id,
                         d->params[p].name);
    }
    for (size_t i = 0; i < dst->n; i++)
        if (!find(src, dst->dev[i].id))
            MISMATCH("device '%s' (%s) exists only on the destination", dst->dev[i].id,
                     dst->dev[i].driver);
#undef MISMATCH
    if (f) {
        fclose(f);
        if (n == 0) {
            free(text);
            text = NULL;
        }
        *report = text;
    }
    return n;
}

int ferry_inventory_check(const FerryInventory *src, const FerryInventory *dst, FerryError *err)
{
    char *report = NULL;
    int n = ferry_inventory_compare(src, dst, &report);
    if (n == 0)
        return 0;
    /* One line per mismatch becomes "; "-separated in the single-line error. */
    char *joined = NULL;
    size_t jlen = 0;
    FILE *f = open_memstream(&joined, &jlen);
    if (f) {
        for (const char *line = report; line && *line;) {
            size_t l = strcspn(line, "\n");
            fprintf(f, "%s%.*s", line == report ? "" : "; ", (int)l, line);
            line += l + (line[l] == '\n');
        }
        fclose(f);
    }
    ferry_error_set(err, -EPROTO, "handshake refused: %d mismatch%s: %s", n, n == 1 ? "" : "es",
                    joined ? joined : "out of memory listing them");
    free(joined);
    free(report);
    return -EPROTO;
}
