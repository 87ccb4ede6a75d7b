/* QMP handlers of live migration: argument shapes and answers follow QEMU 7.2
 * (qapi/migration.json) so libvirt-style clients drive Ferry unchanged. */
#include "ferry/control/qmp-migration.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct FerryQmpMigration {
    FerryMigration *mig;
    FerryQmpIncomingFn incoming;
    void *opaque;
};
typedef struct FerryQmpMigration MigCtx;

static int qmp_migrate(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    (void)ret;
    MigCtx *c = ctx;
    FerryError ferr = {0};
    if (json_is_true(json_object_get(args, "blk")) || json_is_true(json_object_get(args, "inc")))
        return ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC,
                                   "block migration is not supported by Ferry");
    if (json_is_true(json_object_get(args, "resume")))
        return ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC, "Ferry has no postcopy to resume");
    const char *uri = json_string_value(json_object_get(args, "uri"));
    if (ferry_migration_start(c->mig, uri, &ferr) < 0)
        return ferry_qmp_error_from(err, &ferr);
    return 0;
}

static int qmp_migrate_incoming(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    (void)ret;
    MigCtx *c = ctx;
    FerryError ferr = {0};
    const char *uri = json_string_value(json_object_get(args, "uri"));
    int r = c->incoming ? c->incoming(c->opaque, uri, &ferr)
                        : ferry_migration_incoming(c->mig, uri, &ferr);
    if (r < 0)
        return ferry_qmp_error_from(err, &ferr);
    return 0;
}

static int qmp_migrate_cancel(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    (void)args;
    (void)ret;
    (void)err;
    MigCtx *c = ctx;
    ferry_migration_cancel(c->mig);
    return 0;
}

json_t *ferry_qmp_migration_info_json(const FerryMigInfo *in)
{
    json_t *j = json_object();
    if (in->status == FERRY_MIG_NONE)
        return j; /* QEMU answers {} before any migration */
    json_object_set_new(j, "status", json_string(ferry_mig_status_name(in->status)));
    json_object_set_new(j, "total-time", json_integer((json_int_t)in->total_time_ms));
    /* QEMU shows it only while the throttle runs (cpu_throttle_active()). */
    if (!in->incoming && in->throttle_active && ferry_mig_status_active(in->status))
        json_object_set_new(j, "cpu-throttle-percentage", json_integer(in->throttle_pct));
    if (!in->incoming) {
        json_object_set_new(j, "setup-time", json_integer((json_int_t)in->setup_time_ms));
        if (in->status == FERRY_MIG_COMPLETED)
            json_object_set_new(j, "downtime", json_integer((json_int_t)in->downtime_ms));
        else
            json_object_set_new(j, "expected-downtime",
                                json_integer((json_int_t)in->expected_downtime_ms));
        json_t *ram = json_object();
        json_object_set_new(ram, "transferred", json_integer((json_int_t)in->ram_transferred));
        json_object_set_new(ram, "remaining", json_integer((json_int_t)in->ram_remaining));
        json_object_set_new(ram, "total", json_integer((json_int_t)in->ram_total));
        json_object_set_new(ram, "duplicate", json_integer((json_int_t)in->duplicate));
        json_object_set_new(ram, "skipped", json_integer(0));
        json_object_set_new(ram, "normal", json_integer((json_int_t)in->normal));
        json_object_set_new(ram, "normal-bytes", json_integer((json_int_t)in->normal_bytes));
        json_object_set_new(ram, "dirty-sync-count",
                            json_integer((json_int_t)in->dirty_sync_count));
        json_object_set_new(ram, "mbps", json_real(in->mbps));
        json_object_set_new(ram, "pages-per-second",
                            json_integer((json_int_t)in->pages_per_second));
        json_object_set_new(ram, "dirty-pages-rate",
                            json_integer((json_int_t)in->dirty_pages_rate));
        json_object_set_new(j, "ram", ram);
        json_t *x = json_object();
        json_object_set_new(x, "delta-pages", json_integer((json_int_t)in->delta_pages));
        json_object_set_new(x, "throttle-percent", json_integer(in->throttle_pct));
        if (in->status == FERRY_MIG_COMPLETED)
            json_object_set_new(x, "downtime-us", json_integer((json_int_t)in->downtime_us));
        json_t *passes = json_array();
        for (uint32_t i = 0; i < in->npasses; i++) {
            const FerryMigPass *p = &in->passes[i];
            json_array_append_new(passes, json_pack("{s:I, s:I, s:I, s:I, s:b}", "pages-sent",
                                                    (json_int_t)p->pages_sent, "bytes",
                                                    (json_int_t)p->bytes_sent, "pages-dirtied",
                                                    (json_int_t)p->pages_dirtied, "duration-us",
                                                    (json_int_t)p->duration_us, "final", p->final));
        }
        json_object_set_new(x, "passes", passes);
        json_object_set_new(j, "x-ferry", x);
    }
    if (in->incoming)
        json_object_set_new(j, "x-ferry", json_pack("{s:b}", "prefault-done", in->prefault_done));
    if (in->status == FERRY_MIG_FAILED && in->error[0])
        json_object_set_new(j, "error-desc", json_string(in->error));
    return j;
}

static int qmp_query_migrate(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    (void)args;
    (void)err;
    MigCtx *c = ctx;
    static __thread FerryMigInfo info; /* large (pass history): not on the server's stack */
    ferry_migration_info(c->mig, &info);
    *ret = ferry_qmp_migration_info_json(&info);
    return 0;
}

static int qmp_set_parameters(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    (void)ret;
    MigCtx *c = ctx;
    FerryMigParams p;
    ferry_migration_get_params(c->mig, &p);
    json_t *v;
    if ((v = json_object_get(args, "downtime-limit")))
        p.downtime_limit_ms = (uint64_t)json_integer_value(v);
    if ((v = json_object_get(args, "max-bandwidth")))
        p.max_bandwidth = (uint64_t)json_integer_value(v);
    if ((v = json_object_get(args, "multifd-channels")))
        p.multifd_channels = (uint32_t)json_integer_value(v);
    if ((v = json_object_get(args, "x-ferry-converge"))) /* the spec restricts the values */
        p.converge = strcmp(json_string_value(v), "throttle") ? FERRY_MIG_CONVERGE_SWITCHOVER
                                                              : FERRY_MIG_CONVERGE_THROTTLE;
    if ((v = json_object_get(args, "x-ferry-max-passes"))) {
        json_int_t n = json_integer_value(v);
        if (n < FERRY_MIG_MAX_PASSES_MIN || n > FERRY_MIG_MAX_PASSES_MAX) /* QEMU's wording */
            return ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC,
                                       "Parameter 'x-ferry-max-passes' expects a value between "
                                       "%d and %d",
                                       FERRY_MIG_MAX_PASSES_MIN, FERRY_MIG_MAX_PASSES_MAX);
        p.max_passes = (uint32_t)n;
    }
    if ((v = json_object_get(args, "x-ferry-test-no-subsections"))) /* test only (S13) */
        p.x_test_no_subsections = json_is_true(v);
    if ((v = json_object_get(args, "x-ferry-test-subsection"))) { /* test only (S14) */
        const char *s = json_string_value(v);
        if (!strcmp(s, "none"))
            p.x_test_subsection = FERRY_MIG_TEST_SUB_NONE;
        else if (!strcmp(s, "optional"))
            p.x_test_subsection = FERRY_MIG_TEST_SUB_OPTIONAL;
        else if (!strcmp(s, "mandatory"))
            p.x_test_subsection = FERRY_MIG_TEST_SUB_MANDATORY;
        else {
            FerryError bad = {0};
            ferry_error_set(&bad, -EINVAL,
                            "x-ferry-test-subsection '%s': none, optional or "
                            "mandatory",
                            s);
            return ferry_qmp_error_from(err, &bad);
        }
    }
    FerryError ferr = {0};
    if (ferry_migration_set_params(c->mig, &p, &ferr) < 0)
        return ferry_qmp_error_from(err, &ferr);
    return 0;
}

static int qmp_query_parameters(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    (void)args;
    (void)err;
    MigCtx *c = ctx;
    FerryMigParams p;
    ferry_migration_get_params(c->mig, &p);
    *ret = json_pack("{s:I, s:I, s:i, s:s, s:i, s:{s:b}}", "downtime-limit",
                     (json_int_t)p.downtime_limit_ms, "max-bandwidth", (json_int_t)p.max_bandwidth,
                     "multifd-channels", (int)p.multifd_channels, "x-ferry-converge",
                     p.converge == FERRY_MIG_CONVERGE_THROTTLE ? "throttle" : "switchover",
                     "x-ferry-max-passes", (int)p.max_passes, "x-ferry", "delta", p.delta);
    return 0;
}

FerryQmpMigration *ferry_qmp_migration_register(FerryQmpCommands *cmds, FerryMigration *mig,
                                                FerryQmpIncomingFn incoming, void *opaque,
                                                FerryError *err)
{
    MigCtx *c = calloc(1, sizeof(*c));
    if (!c) {
        ferry_error_set(err, -ENOMEM, "out of memory");
        return NULL;
    }
    c->mig = mig;
    c->incoming = incoming;
    c->opaque = opaque;
    static const struct {
        const char *name;
        FerryQmpHandler fn;
    } table[] = {
        {"migrate", qmp_migrate},
        {"migrate-incoming", qmp_migrate_incoming},
        {"query-migrate", qmp_query_migrate},
        {"migrate_cancel", qmp_migrate_cancel},
        {"migrate-set-parameters", qmp_set_parameters},
        {"query-migrate-parameters", qmp_query_parameters},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        /* On failure the registry may already reference c: the caller destroys the
         * registry first, then frees c, as on success. */
        if (ferry_qmp_commands_implement(cmds, table[i].name, table[i].fn, c, err) < 0)
            return NULL;
    }
    return c;
}

void ferry_qmp_migration_free(FerryQmpMigration *q)
{
    free(q);
}

void ferry_qmp_migration_emit_status(FerryQmpServer *srv, FerryMigStatus status)
{
    if (!srv)
        return;
    json_t *d = json_pack("{s:s}", "status", ferry_mig_status_name(status));
    ferry_qmp_emit(srv, "MIGRATION", d, NULL);
    json_decref(d);
}

void ferry_qmp_migration_emit_pass(FerryQmpServer *srv, uint64_t pass)
{
    if (!srv)
        return;
    json_t *d = json_pack("{s:I}", "pass", (json_int_t)pass);
    ferry_qmp_emit(srv, "MIGRATION_PASS", d, NULL);
    json_decref(d);
}
