/* Scenario harness: a source and a destination machine, each with a guest played through the
 * register interface, migrated through the real Ferry stream (handshake, records, end). */
#ifndef FERRY_SCENARIO_HARNESS_H
#define FERRY_SCENARIO_HARNESS_H

#include "ferry/machine/guest.h"
#include "ferry/machine/hotplug.h"
#include "ferry/machine/inventory.h"
#include "ferry/machine/machine.h"
#include "ferry/stream/stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct Side {
    FerryMachine *m;
    FerryGuest *g;
    int deleted;           /* DEVICE_DELETED count */
    char deleted_ids[256]; /* "id;id;" in order */
    int irq_changes;
    bool irq;
} Side;

static void side_on_deleted(void *opaque, const char *id, const char *path)
{
    (void)path;
    Side *s = opaque;
    s->deleted++;
    strncat(s->deleted_ids, id, sizeof(s->deleted_ids) - strlen(s->deleted_ids) - 2);
    strcat(s->deleted_ids, ";");
}

static void side_on_irq(void *opaque, bool level)
{
    Side *s = opaque;
    s->irq_changes++;
    s->irq = level;
}

static void side_wire(Side *s)
{
    ferry_machine_set_device_deleted(s->m, side_on_deleted, s);
    ferry_machine_set_irq(s->m, side_on_irq, s);
}

/* A machine of `type` with one boot vCPU and `devices` on its command line; running unless
 * `incoming` (then inmigrate). Aborts the test on error. */
static Side *side_new(const char *type, bool incoming, const char *const *devices, size_t n)
{
    Side *s = calloc(1, sizeof(*s));
    FerryError err = {0};
    FerryMachineConfig cfg = {
        .type = type, .boot_cpus = 1, .incoming = incoming, .devices = devices, .ndevices = n};
    s->m = ferry_machine_new(&cfg, &err);
    if (!s->m) {
        fprintf(stderr, "machine: %s\n", err.msg);
        abort();
    }
    side_wire(s);
    if (!incoming) {
        if (ferry_machine_run_event(s->m, FERRY_RUN_EV_CONT, &err) < 0)
            abort();
        s->g = ferry_guest_new(s->m);
    }
    return s;
}

static void side_free(Side *s)
{
    if (!s)
        return;
    ferry_guest_free(s->g);
    ferry_machine_free(s->m);
    free(s);
}

static int side_add(Side *s, const char *opts, FerryError *err)
{
    return ferry_machine_device_add_opts(s->m, opts, err);
}

typedef FerryRegistry *(*RegistryFn)(FerryMachine *m, FerryError *err);

typedef struct MigOpts {
    RegistryFn src_registry; /* NULL: ferry_machine_registry */
    RegistryFn dst_registry; /* NULL: ferry_machine_registry (an "old binary" otherwise) */
    bool skip_prepare;       /* S12: rely on the per-section pre_load hooks alone */
    void (*during)(Side *src, void *ctx); /* runs while the outgoing migration is active */
    void *ctx;
    const char *tamper_model; /* S16: rewrite the source inventory's first card model */
} MigOpts;

typedef struct MigResult {
    char warnings[1024];
    size_t stream_len;
    uint8_t *stream; /* copy of the bytes sent (caller frees via mig_result_fini) */
} MigResult;

static void mig_warn(void *ctx, const char *msg)
{
    MigResult *r = ctx;
    strncat(r->warnings, msg, sizeof(r->warnings) - strlen(r->warnings) - 2);
    strcat(r->warnings, "\n");
}

static void mig_result_fini(MigResult *r)
{
    free(r->stream);
}

/* Handshake, then device state through a FerryStreamWriter into memory and a FerryStreamReader
 * into the destination. Success: destination running with the guest's memory (a clone of the
 * source guest), source in postmigrate. Failure: source running and unchanged, destination
 * never runs (DESIGN §5). */
static int migrate(Side *src, Side *dst, const MigOpts *o, MigResult *res, FerryError *err)
{
    MigOpts none = {0};
    MigResult dummy;
    if (!o)
        o = &none;
    if (!res)
        res = &dummy;
    memset(res, 0, sizeof(*res));
    int rc;
    FerryRegistry *rs = NULL, *rd = NULL;
    FerryIO *w = NULL, *r = NULL;
    FerryStreamWriter *sw = NULL;
    FerryStreamReader *sr = NULL;
    ferry_machine_set_migration_active(src->m, true);

    /* handshake: the inventory travels as JSON text */
    FerryInventory *is = ferry_machine_inventory(src->m);
    json_t *j = ferry_inventory_to_json(is);
    ferry_inventory_free(is);
    if (o->tamper_model) {
        json_t *devs = json_object_get(j, "devices");
        for (size_t i = 0; i < json_array_size(devs); i++) {
            json_t *d = json_array_get(devs, i);
            if (!strcmp(json_string_value(json_object_get(d, "driver")), "card")) {
                json_object_set_new(d, "model", json_string(o->tamper_model));
                break;
            }
        }
    }
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    json_t *jr = json_loads(text, 0, NULL);
    free(text);
    FerryInventory *remote = ferry_inventory_from_json(jr, err);
    json_decref(jr);
    if (!remote) {
        rc = err->code;
        goto fail;
    }
    FerryInventory *local = ferry_machine_inventory(dst->m);
    rc = ferry_inventory_check(remote, local, err);
    ferry_inventory_free(remote);
    ferry_inventory_free(local);
    if (rc < 0)
        goto fail;

    if (o->during)
        o->during(src, o->ctx);

    rs = (o->src_registry ? o->src_registry : ferry_machine_registry)(src->m, err);
    if (!rs) {
        rc = err->code;
        goto fail;
    }
    w = ferry_io_mem_writer();
    sw = ferry_stream_writer_new(w, ferry_machine_type(src->m)->name, err);
    if (!sw || (rc = ferry_stream_write_registry(sw, rs, err)) < 0 ||
        (rc = ferry_stream_write_end(sw, err)) < 0) {
        rc = sw ? rc : err->code;
        goto fail;
    }
    const uint8_t *data = ferry_io_mem_data(w, &res->stream_len);
    res->stream = malloc(res->stream_len);
    memcpy(res->stream, data, res->stream_len);

    if (!o->skip_prepare)
        ferry_machine_incoming_prepare(dst->m);
    rd = (o->dst_registry ? o->dst_registry : ferry_machine_registry)(dst->m, err);
    if (!rd) {
        rc = err->code;
        goto fail;
    }
    r = ferry_io_mem_reader(res->stream, res->stream_len);
    sr = ferry_stream_reader_new(r, err);
    if (!sr) {
        rc = err->code;
        goto fail;
    }
    if (strcmp(ferry_stream_machine_type(sr), ferry_machine_type(dst->m)->name)) {
        rc = ferry_error_set(err, -EPROTO, "stream machine type %s, destination %s",
                             ferry_stream_machine_type(sr), ferry_machine_type(dst->m)->name);
        goto fail;
    }
    FerryLoadOpts lo = {.warn = mig_warn, .warn_ctx = res};
    if ((rc = ferry_stream_read_registry(sr, rd, &lo, err)) < 0)
        goto fail;
    if ((rc = ferry_machine_incoming_finish(dst->m, err)) < 0)
        goto fail;
    ferry_machine_run_event(dst->m, FERRY_RUN_EV_INCOMING_RUN, NULL);
    ferry_machine_run_event(src->m, FERRY_RUN_EV_OUTGOING_DONE, NULL);
    ferry_machine_set_migration_active(src->m, false);
    ferry_guest_free(dst->g);
    dst->g = src->g ? ferry_guest_clone(src->g, dst->m) : NULL; /* guest RAM moved */
    rc = 0;
    goto out;

fail:
    ferry_machine_set_migration_active(src->m, false); /* the source keeps running */
    ferry_machine_run_event(dst->m, FERRY_RUN_EV_INCOMING_FAIL, NULL);
out:
    ferry_stream_reader_free(sr);
    ferry_stream_writer_free(sw);
    ferry_io_destroy(r);
    ferry_io_destroy(w);
    ferry_registry_free(rs);
    ferry_registry_free(rd);
    if (res == &dummy)
        mig_result_fini(&dummy);
    return rc;
}

/* Host-visible state equal on both sides (run state excepted): connectors, devices, events,
 * readiness. Reports the first difference. */
static bool same_host_state(const FerryMachine *a, const FerryMachine *b, char *why, size_t len)
{
    if (ferry_machine_connector_count(a) != ferry_machine_connector_count(b)) {
        snprintf(why, len, "connector count");
        return false;
    }
    for (size_t i = 0; i < ferry_machine_connector_count(a); i++) {
        FerryConnectorInfo x, y;
        ferry_machine_connector_info(a, i, &x);
        ferry_machine_connector_info(b, i, &y);
        if (x.state != y.state || x.unplug_requested != y.unplug_requested ||
            x.session_pos != y.session_pos || !x.device_id != !y.device_id ||
            (x.device_id && strcmp(x.device_id, y.device_id))) {
            snprintf(why, len, "connector 0x%08x: %s/%d/%u/%s vs %s/%d/%u/%s", x.index,
                     ferry_connector_state_name(x.state), x.unplug_requested, x.session_pos,
                     x.device_id ? x.device_id : "-", ferry_connector_state_name(y.state),
                     y.unplug_requested, y.session_pos, y.device_id ? y.device_id : "-");
            return false;
        }
    }
    if (ferry_machine_event_count(a) != ferry_machine_event_count(b)) {
        snprintf(why, len, "%zu events vs %zu", ferry_machine_event_count(a),
                 ferry_machine_event_count(b));
        return false;
    }
    for (size_t i = 0; i < ferry_machine_event_count(a); i++) {
        FerryEventInfo x, y;
        ferry_machine_event_at(a, i, &x);
        ferry_machine_event_at(b, i, &y);
        if (memcmp(&x, &y, sizeof(x))) {
            snprintf(why, len, "event %zu differs", i);
            return false;
        }
    }
    if (ferry_machine_guest_ready(a) != ferry_machine_guest_ready(b)) {
        snprintf(why, len, "readiness");
        return false;
    }
    return true;
}

#endif
