/* DESIGN §7 scenarios S1-S16: source and destination machines driven by the guest model through
 * the register interface and migrated through the Ferry stream. Each asserts what the guest saw
 * (in order) and what the host sees (connectors, events, devices, notifications). */
#include "harness.h"
#include "machine-int.h" /* S12/S13/S14: emulate stale state and other binaries' descriptions */

#include <fnmatch.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define CARD1 FERRY_CONN_INDEX(FERRY_CONN_SLOT, 1)
#define CPU1  FERRY_CONN_INDEX(FERRY_CONN_CPU, 1)
#define MEM0  FERRY_CONN_INDEX(FERRY_CONN_MEM, 0)

static void add(Side *s, const char *opts)
{
    FerryError err = {0};
    if (side_add(s, opts, &err) < 0)
        fail_msg("device_add %s: %s", opts, err.msg);
}

static void mig_ok(Side *src, Side *dst, const MigOpts *o, MigResult *res)
{
    FerryError err = {0};
    MigResult local;
    if (migrate(src, dst, o, res ? res : &local, &err) < 0)
        fail_msg("migration failed: %s", err.msg);
    if (!res)
        mig_result_fini(&local);
}

static void assert_same(Side *a, Side *b)
{
    char why[256];
    if (!same_host_state(a->m, b->m, why, sizeof(why)))
        fail_msg("source and destination differ: %s", why);
}

static FerryConnectorInfo conn(Side *s, uint32_t index)
{
    FerryConnectorInfo ci;
    assert_int_equal(ferry_machine_connector_find(s->m, index, &ci), 0);
    return ci;
}

static void assert_log(Side *s, const char *want)
{
    char *log = ferry_guest_log_text(s->g);
    if (strcmp(log, want))
        fail_msg("guest saw:\n%s\nexpected:\n%s", log, want);
    free(log);
}

static void assert_guest_clean(Side *s)
{
    assert_int_equal(ferry_guest_log_find(s->g, FERRY_GUEST_OBS_DUPLICATE, UINT32_MAX), 0);
    assert_int_equal(ferry_guest_log_find(s->g, FERRY_GUEST_OBS_ERROR, UINT32_MAX), 0);
    assert_int_equal(ferry_guest_log_find(s->g, FERRY_GUEST_OBS_STALE, UINT32_MAX), 0);
}

/* Boot the source guest completely (ready + enumeration), then forget that part of its log. */
static void boot(Side *s)
{
    ferry_guest_run(s->g, 100);
    ferry_guest_log_clear(s->g);
}

static const char *card_tokens = "token 0x30000001 node-start card@1\n"
                                 "token 0x30000001 prop model\n"
                                 "token 0x30000001 prop slot\n"
                                 "token 0x30000001 prop ext-status\n"
                                 "token 0x30000001 node-end\n"
                                 "configured 0x30000001 card@1\n";

/* S1: device_add in prelaunch == the same device on the command line. */
static void s01_prelaunch_is_coldplug(void **state)
{
    (void)state;
    const char *cmdline[] = {"card,id=c1,slot=1"};
    FerryError err = {0};
    FerryMachineConfig cfg = {.boot_cpus = 1};
    FerryMachine *qmp = ferry_machine_new(&cfg, &err);
    assert_int_equal(ferry_machine_device_add_opts(qmp, "card,id=c1,slot=1", &err), 0);
    cfg.devices = cmdline;
    cfg.ndevices = 1;
    FerryMachine *cli = ferry_machine_new(&cfg, &err);
    assert_true(ferry_machine_equal(qmp, cli));
    assert_int_equal(ferry_machine_event_count(qmp), 0);
    assert_int_equal(ferry_machine_run_event(qmp, FERRY_RUN_EV_CONT, &err), 0);
    assert_int_equal(ferry_machine_run_event(cli, FERRY_RUN_EV_CONT, &err), 0);
    FerryGuest *g1 = ferry_guest_new(qmp), *g2 = ferry_guest_new(cli);
    ferry_guest_run(g1, 100);
    ferry_guest_run(g2, 100);
    assert_true(ferry_guest_equal(g1, g2));
    assert_true(ferry_machine_equal(qmp, cli));
    char *log = ferry_guest_log_text(g1);
    assert_string_equal(log, "ready\nboot cpu 0x10000000\nboot slot 0x30000001\n");
    free(log);
    ferry_guest_free(g1);
    ferry_guest_free(g2);
    ferry_machine_free(qmp);
    ferry_machine_free(cli);
}

/* S2: device added on the destination in inmigrate is coldplugged; after migration its
 * connector equals the source's, for a device the source guest configured and for one whose
 * hotplug is still being handled. */
static void s02_inmigrate_device_add(void **state)
{
    (void)state;
    Side *src = side_new("ferry-2.0", false, NULL, 0), *dst = side_new("ferry-2.0", true, NULL, 0);
    boot(src);
    add(src, "card,id=c1,slot=1");
    add(src, "cpu,id=cpu1,slot=1");
    ferry_guest_run(src->g, 100);
    add(src, "mem-block,id=mem0,slot=0"); /* still pending on the source */
    add(dst, "card,id=c1,slot=1");
    add(dst, "cpu,id=cpu1,slot=1");
    add(dst, "mem-block,id=mem0,slot=0");
    assert_int_equal(conn(dst, CARD1).state, FERRY_CONN_CONFIGURED); /* coldplug */
    assert_int_equal(ferry_machine_event_count(dst->m), 0);
    mig_ok(src, dst, NULL, NULL);
    assert_same(src, dst);
    assert_int_equal(conn(dst, CARD1).state, FERRY_CONN_CONFIGURED);
    assert_int_equal(conn(dst, MEM0).state, FERRY_CONN_UNUSABLE);
    assert_int_equal(ferry_machine_runstate(dst->m), FERRY_RUN_RUNNING);
    assert_int_equal(ferry_machine_runstate(src->m), FERRY_RUN_POSTMIGRATE);
    /* The destination guest handles the pending memory block once and nothing else again. */
    ferry_guest_log_clear(dst->g);
    ferry_guest_run(dst->g, 100);
    assert_int_equal(ferry_guest_log_find(dst->g, FERRY_GUEST_OBS_EVENT, MEM0), 1);
    assert_int_equal(ferry_guest_log_find(dst->g, FERRY_GUEST_OBS_EVENT, CARD1), 0);
    assert_int_equal(ferry_guest_log_find(dst->g, FERRY_GUEST_OBS_EVENT, CPU1), 0);
    assert_true(ferry_guest_has(dst->g, MEM0));
    assert_true(ferry_guest_has(dst->g, CARD1));
    assert_true(ferry_guest_has(dst->g, CPU1));
    assert_int_equal(conn(dst, MEM0).state, FERRY_CONN_CONFIGURED);
    assert_int_equal(ferry_machine_event_count(dst->m), 0);
    assert_guest_clean(dst);
    side_free(src);
    side_free(dst);
}

/* S3: hotplug completed by the guest, then migration to a destination built by device_add:
 * configured there, no duplicate event. */
static void s03_completed_hotplug_then_migrate(void **state)
{
    (void)state;
    Side *src = side_new("ferry-2.0", false, NULL, 0), *dst = side_new("ferry-2.0", true, NULL, 0);
    boot(src);
    add(src, "card,id=c1,slot=1");
    ferry_guest_run(src->g, 100);
    char want[512];
    snprintf(want, sizeof(want), "event add slot 0x30000001\n%s", card_tokens);
    assert_log(src, want);
    add(dst, "card,id=c1,slot=1");
    mig_ok(src, dst, NULL, NULL);
    assert_same(src, dst);
    assert_false(dst->irq);
    assert_false(ferry_guest_step(dst->g)); /* idle: nothing to do, nothing presented again */
    assert_log(dst, want);
    assert_true(ferry_guest_has(dst->g, CARD1));
    assert_int_equal(conn(dst, CARD1).state, FERRY_CONN_CONFIGURED);
    assert_guest_clean(dst);
    side_free(src);
    side_free(dst);
}

/* S4: migrate before the guest handled the add event: handled once on the destination. */
static void s04_pending_event_migrates(void **state)
{
    (void)state;
    Side *src = side_new("ferry-2.0", false, NULL, 0), *dst = side_new("ferry-2.0", true, NULL, 0);
    boot(src);
    add(src, "card,id=c1,slot=1");
    assert_true(src->irq);
    add(dst, "card,id=c1,slot=1");
    mig_ok(src, dst, NULL, NULL);
    assert_same(src, dst);
    assert_int_equal(ferry_machine_event_count(dst->m), 1);
    assert_true(dst->irq); /* the level is raised on the destination's line */
    ferry_guest_run(dst->g, 100);
    char want[512];
    snprintf(want, sizeof(want), "event add slot 0x30000001\n%s", card_tokens);
    assert_log(dst, want);
    assert_false(dst->irq);
    assert_int_equal(ferry_machine_event_count(dst->m), 0);
    assert_guest_clean(dst);
    side_free(src);
    side_free(dst);
}

/* S5: migrate in the middle of a configure-connector session (both machine types): the
 * destination guest resumes where it stopped, every token seen exactly once. */
static void s05_mid_session(void **state)
{
    (void)state;
    const char *types[] = {"ferry-1.0", "ferry-2.0"};
    for (int t = 0; t < 2; t++) {
        Side *src = side_new(types[t], false, NULL, 0), *dst = side_new(types[t], true, NULL, 0);
        boot(src);
        add(src, "card,id=c1,slot=1");
        for (int i = 0; i < 5; i++) /* fetch, allocate, unisolate, 2 tokens */
            assert_true(ferry_guest_step(src->g));
        assert_int_equal(conn(src, CARD1).session_pos, 2);
        add(dst, "card,id=c1,slot=1");
        mig_ok(src, dst, NULL, NULL);
        assert_same(src, dst);
        assert_int_equal(conn(dst, CARD1).session_pos, 2);
        assert_int_equal(conn(dst, CARD1).state, FERRY_CONN_UNISOLATE);
        ferry_guest_run(dst->g, 100);
        char want[512];
        snprintf(want, sizeof(want), "event add slot 0x30000001\n%s", card_tokens);
        assert_log(dst, want);
        assert_int_equal(conn(dst, CARD1).state, FERRY_CONN_CONFIGURED);
        assert_false(conn(dst, CARD1).session_active);
        assert_guest_clean(dst);
        side_free(src);
        side_free(dst);
    }
}

/* S6: unplug requested, migrate before the guest released: the destination completes it and
 * emits DEVICE_DELETED (both before and after the guest isolated it). */
static void s06_pending_unplug(void **state)
{
    (void)state;
    for (int isolated = 0; isolated < 2; isolated++) {
        const char *cl[] = {"card,id=c1,slot=1"};
        Side *src = side_new("ferry-1.0", false, cl, 1),
             *dst = side_new("ferry-1.0", true, NULL, 0);
        boot(src);
        FerryError err = {0};
        assert_int_equal(ferry_machine_device_del(src->m, "c1", &err), 0);
        if (isolated) {
            assert_true(ferry_guest_step(src->g)); /* fetch */
            assert_true(ferry_guest_step(src->g)); /* query */
            assert_true(ferry_guest_step(src->g)); /* isolate */
            assert_int_equal(conn(src, CARD1).state, FERRY_CONN_AVAILABLE);
        }
        add(dst, "card,id=c1,slot=1");
        mig_ok(src, dst, NULL, NULL);
        assert_same(src, dst);
        assert_true(conn(dst, CARD1).unplug_requested);
        assert_int_equal(dst->deleted, 0);
        ferry_guest_run(dst->g, 100);
        assert_log(dst, "event remove slot 0x30000001\nreleased 0x30000001\n");
        assert_int_equal(dst->deleted, 1);
        assert_string_equal(dst->deleted_ids, "c1;");
        assert_false(ferry_machine_has_device(dst->m, "c1"));
        assert_int_equal(conn(dst, CARD1).state, FERRY_CONN_UNUSABLE);
        assert_int_equal(src->deleted, 0); /* the source never completed it */
        side_free(src);
        side_free(dst);
    }
}

/* S7: hotplug before the guest is ready; the event survives (here even a migration) and the
 * guest configures the device once after ready. */
static void s07_hotplug_before_ready(void **state)
{
    (void)state;
    Side *src = side_new("ferry-2.0", false, NULL, 0), *dst = side_new("ferry-2.0", true, NULL, 0);
    add(src, "card,id=c1,slot=1");
    assert_false(src->irq); /* not ready: line low, event queued */
    assert_int_equal(ferry_machine_event_count(src->m), 1);
    add(dst, "card,id=c1,slot=1");
    mig_ok(src, dst, NULL, NULL);
    assert_false(dst->irq);
    ferry_guest_run(dst->g, 100);
    char want[512];
    snprintf(want, sizeof(want), "ready\nboot cpu 0x10000000\nevent add slot 0x30000001\n%s",
             card_tokens);
    assert_log(dst, want); /* not in the boot list, configured once through its event */
    assert_guest_clean(dst);
    side_free(src);
    side_free(dst);
}

/* S8: hotplug, then reset before the guest handled it: present as coldplugged, no stale event. */
static void s08_reset_before_handled(void **state)
{
    (void)state;
    Side *s = side_new("ferry-2.0", false, NULL, 0);
    boot(s);
    add(s, "card,id=c1,slot=1");
    assert_true(ferry_guest_step(s->g)); /* fetched, then the reboot interrupts it */
    FerryError err = {0};
    assert_int_equal(ferry_machine_run_event(s->m, FERRY_RUN_EV_RESET, &err), 0);
    assert_false(s->irq);
    assert_int_equal(ferry_machine_event_count(s->m), 0);
    assert_int_equal(conn(s, CARD1).state, FERRY_CONN_CONFIGURED);
    ferry_guest_reboot(s->g);
    ferry_guest_log_clear(s->g);
    ferry_guest_run(s->g, 100);
    assert_log(s, "ready\nboot cpu 0x10000000\nboot slot 0x30000001\n");
    assert_false(ferry_guest_step(s->g));
    side_free(s);
}

/* S9: hotplug, reset, then migrate: destination state equals source state. */
static void s09_reset_then_migrate(void **state)
{
    (void)state;
    Side *src = side_new("ferry-1.0", false, NULL, 0), *dst = side_new("ferry-1.0", true, NULL, 0);
    boot(src);
    add(src, "card,id=c1,slot=1");
    add(src, "cpu,id=cpu1,slot=1");
    FerryError err = {0};
    assert_int_equal(ferry_machine_run_event(src->m, FERRY_RUN_EV_RESET, &err), 0);
    ferry_guest_reboot(src->g);
    ferry_guest_run(src->g, 3); /* ready + part of the enumeration */
    add(dst, "cpu,id=cpu1,slot=1");
    add(dst, "card,id=c1,slot=1");
    mig_ok(src, dst, NULL, NULL);
    assert_same(src, dst);
    ferry_guest_log_clear(dst->g);
    ferry_guest_run(dst->g, 100);
    assert_log(dst, "boot slot 0x30000001\n"); /* the enumeration resumes after cpu1 */
    assert_true(ferry_guest_has(dst->g, CPU1));
    side_free(src);
    side_free(dst);
}

/* S10: device_add/device_del during the outgoing migration are refused; migration unaffected. */
static char s10_add_err[FERRY_ERROR_MSG_MAX], s10_del_err[FERRY_ERROR_MSG_MAX];

static void s10_attempt(Side *s, void *ctx)
{
    (void)ctx;
    FerryError err = {0};
    assert_true(ferry_machine_device_add_opts(s->m, "cpu,id=cpu1,slot=1", &err) < 0);
    snprintf(s10_add_err, sizeof(s10_add_err), "%s", err.msg);
    assert_true(ferry_machine_device_del(s->m, "c1", &err) < 0);
    snprintf(s10_del_err, sizeof(s10_del_err), "%s", err.msg);
}

static void s10_refused_during_migration(void **state)
{
    (void)state;
    const char *cl[] = {"card,id=c1,slot=1"};
    Side *src = side_new("ferry-2.0", false, cl, 1), *dst = side_new("ferry-2.0", true, cl, 1);
    boot(src);
    MigOpts o = {.during = s10_attempt};
    mig_ok(src, dst, &o, NULL);
    assert_string_equal(s10_add_err, "device_add is blocked while migration is active");
    assert_string_equal(s10_del_err, "device_del is blocked while migration is active");
    assert_same(src, dst);
    assert_false(ferry_machine_has_device(dst->m, "cpu1"));
    assert_true(ferry_machine_has_device(dst->m, "c1"));
    assert_false(ferry_machine_migration_active(src->m));
    /* The guest on the destination still has the card and never hears of the refused vCPU. */
    ferry_guest_run(dst->g, 100);
    assert_true(ferry_guest_has(dst->g, CARD1));
    assert_false(ferry_guest_has(dst->g, CPU1));
    assert_int_equal(ferry_guest_log_find(dst->g, FERRY_GUEST_OBS_EVENT, UINT32_MAX), 0);
    assert_guest_clean(dst);
    side_free(src);
    side_free(dst);
}

/* S11: unplug then re-plug the same id, repeated device_del: no stale objects, no crash. */
static void s11_unplug_replug(void **state)
{
    (void)state;
    Side *src = side_new("ferry-2.0", false, NULL, 0), *dst = side_new("ferry-2.0", true, NULL, 0);
    boot(src);
    FerryError err = {0};
    for (int round = 0; round < 3; round++) {
        add(src, "card,id=c1,slot=1");
        ferry_guest_run(src->g, 100);
        assert_int_equal(ferry_machine_device_del(src->m, "c1", &err), 0);
        assert_int_equal(ferry_machine_device_del(src->m, "c1", &err), -EBUSY);
        assert_int_equal(ferry_machine_device_del(src->m, "c1", &err), -EBUSY);
        ferry_guest_run(src->g, 100);
        assert_int_equal(ferry_machine_device_del(src->m, "c1", &err), -ENOENT);
        assert_int_equal(src->deleted, round + 1);
    }
    add(src, "card,id=c1,slot=1"); /* plugged again, pending */
    assert_int_equal(ferry_guest_log_find(src->g, FERRY_GUEST_OBS_CONFIGURED, CARD1), 3);
    assert_int_equal(ferry_guest_log_find(src->g, FERRY_GUEST_OBS_RELEASED, CARD1), 3);
    assert_guest_clean(src);
    assert_int_equal(ferry_machine_event_count(src->m), 1);
    add(dst, "card,id=c1,slot=1");
    mig_ok(src, dst, NULL, NULL);
    assert_same(src, dst);
    ferry_guest_run(dst->g, 100);
    assert_int_equal(ferry_guest_log_find(dst->g, FERRY_GUEST_OBS_CONFIGURED, CARD1), 4);
    assert_guest_clean(dst);
    side_free(src);
    side_free(dst);
}

/* S12: stale events queued on the destination before the stream are replaced, not appended
 * (even without the explicit prepare step: the section's own pre_load and list load do it). */
static void inject_stale(FerryMachine *m, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        FerryHotplugEvent *e = calloc(1, sizeof(*e));
        e->action = FERRY_HP_ACTION_ADD;
        e->kind = FERRY_CONN_SLOT;
        e->index = CARD1;
        ferry_list_push_tail(&m->hp.events, &e->link);
    }
}

static void s12_stale_destination_events(void **state)
{
    (void)state;
    for (int src_events = 0; src_events < 2; src_events++) {
        Side *src = side_new("ferry-2.0", false, NULL, 0),
             *dst = side_new("ferry-2.0", true, NULL, 0);
        boot(src);
        add(src, "card,id=c1,slot=1");
        if (!src_events)
            ferry_guest_run(src->g, 100); /* handled: queue empty on the source */
        add(dst, "card,id=c1,slot=1");
        inject_stale(dst->m, 3);
        MigOpts o = {.skip_prepare = true};
        mig_ok(src, dst, &o, NULL);
        assert_int_equal(ferry_machine_event_count(dst->m), (size_t)src_events);
        assert_same(src, dst);
        ferry_guest_run(dst->g, 100);
        assert_int_equal(ferry_guest_log_find(dst->g, FERRY_GUEST_OBS_CONFIGURED, CARD1), 1);
        assert_guest_clean(dst);
        side_free(src);
        side_free(dst);
    }
}

/* ---- S13: an older binary that knows only ferry-1.0's base state (no connector/state, no
 * hotplug/events subsections). Same structs, older tables. ---- */
static const FerryField old_hotplug_fields[] = {
    FERRY_FIELD(FerryHotplugState, ready),
    FERRY_FIELD(FerryHotplugState, selector),
    FERRY_FIELD(FerryHotplugState, arg),
    FERRY_FIELD(FerryHotplugState, status),
    FERRY_ARRAY(FerryHotplugState, result),
    FERRY_BUFFER(FerryHotplugState, window),
    FERRY_END,
};
static const FerryDesc old_hotplug = {.name = "hotplug",
                                      .version = 1,
                                      .min_version = 1,
                                      .size = sizeof(FerryHotplugState),
                                      .fields = old_hotplug_fields};
static const FerryField old_conn_fields[] = {
    FERRY_FIELD(FerryConnector, wire_index, .name = "index"),
    FERRY_END,
};
static const FerryDesc old_conn = {.name = "connector",
                                   .version = 1,
                                   .min_version = 1,
                                   .size = sizeof(FerryConnector),
                                   .fields = old_conn_fields};

static FerryRegistry *old_binary_registry(FerryMachine *m, FerryError *err)
{
    FerryRegistry *reg = ferry_registry_new();
    ferry_registry_add(reg, "hotplug", 0, &old_hotplug, &m->hp, err);
    for (uint32_t i = 0; i < m->nconn; i++) {
        FerryConnector *c = &m->conn[i];
        ferry_registry_add(reg, "connector", c->index, &old_conn, c, err);
        if (c->dev)
            ferry_registry_add(reg, c->dev->type->section, c->slot, ferry_device_desc(c->dev->type),
                               c->dev, err);
    }
    return reg;
}

static bool contains(const MigResult *r, const char *s)
{
    return memmem(r->stream, r->stream_len, s, strlen(s)) != NULL;
}

static void s13_backward_migration(void **state)
{
    (void)state;
    FerryError err = {0};
    /* (a) nothing in flight: the old binary accepts the stream */
    Side *src = side_new("ferry-1.0", false, NULL, 0), *dst = side_new("ferry-1.0", true, NULL, 0);
    boot(src);
    add(src, "card,id=c1,slot=1");
    ferry_guest_run(src->g, 100);
    add(dst, "card,id=c1,slot=1");
    MigOpts old = {.dst_registry = old_binary_registry};
    MigResult res;
    mig_ok(src, dst, &old, &res);
    assert_false(contains(&res, "connector/state"));
    mig_result_fini(&res);
    assert_same(src, dst);
    side_free(src);
    side_free(dst);

    /* (b) a hotplug in flight: clean failure naming the unknown subsection; the source runs on
     * and its guest completes the hotplug */
    src = side_new("ferry-1.0", false, NULL, 0);
    dst = side_new("ferry-1.0", true, NULL, 0);
    boot(src);
    add(src, "card,id=c1,slot=1");
    add(dst, "card,id=c1,slot=1");
    FerryMachine *before = ferry_machine_clone(src->m);
    assert_true(migrate(src, dst, &old, NULL, &err) < 0);
    if (!strstr(err.msg, "unknown subsection 'connector/state' in 'connector'"))
        fail_msg("unexpected error: %s", err.msg);
    assert_int_equal(ferry_machine_runstate(src->m), FERRY_RUN_RUNNING);
    assert_int_equal(ferry_machine_runstate(dst->m), FERRY_RUN_SHUTDOWN);
    assert_true(ferry_machine_equal(before, src->m));
    ferry_guest_run(src->g, 100);
    assert_int_equal(ferry_guest_log_find(src->g, FERRY_GUEST_OBS_CONFIGURED, CARD1), 1);
    ferry_machine_free(before);
    side_free(src);
    side_free(dst);

    /* (c) a configure session in flight but no queued event: connector/state is what fails */
    src = side_new("ferry-1.0", false, NULL, 0);
    dst = side_new("ferry-1.0", true, NULL, 0);
    boot(src);
    add(src, "card,id=c1,slot=1");
    ferry_guest_run(src->g, 4);
    assert_int_equal(ferry_machine_event_count(src->m), 0);
    add(dst, "card,id=c1,slot=1");
    assert_true(migrate(src, dst, &old, &res, &err) < 0);
    assert_true(contains(&res, "connector/state"));
    mig_result_fini(&res);
    if (!strstr(err.msg, "unknown subsection 'connector/state' in 'connector'"))
        fail_msg("unexpected error: %s", err.msg);
    assert_int_equal(ferry_machine_runstate(src->m), FERRY_RUN_RUNNING);
    side_free(src);
    side_free(dst);
}

/* ---- S14: the source sends a subsection the destination does not know ---- */
static const FerryField diag_fields[] = {FERRY_FIELD(FerryDevice, st.card.status, .name = "diag"),
                                         FERRY_END};
static const FerryDesc diag = {.name = "card/diag",
                               .version = 1,
                               .min_version = 1,
                               .size = sizeof(FerryDevice),
                               .fields = diag_fields};
static const FerrySubsection subs_optional[] = {{.desc = &diag, .optional = true}, {NULL}};
static const FerrySubsection subs_required[] = {{.desc = &diag}, {NULL}};
static FerryDesc card_newer;

static FerryRegistry *newer_source_registry(FerryMachine *m, FerryError *err)
{
    FerryRegistry *reg = ferry_registry_new();
    ferry_registry_add(reg, "hotplug", 0, &ferry_desc_hotplug, &m->hp, err);
    for (uint32_t i = 0; i < m->nconn; i++) {
        FerryConnector *c = &m->conn[i];
        ferry_registry_add(reg, "connector", c->index, &ferry_desc_connector_v2, c, err);
        if (c->dev)
            ferry_registry_add(reg, c->dev->type->section, c->slot,
                               c->dev->type->kind == FERRY_CONN_SLOT
                                   ? &card_newer
                                   : ferry_device_desc(c->dev->type),
                               c->dev, err);
    }
    return reg;
}

static void s14_unknown_subsections(void **state)
{
    (void)state;
    for (int optional = 1; optional >= 0; optional--) {
        card_newer = ferry_desc_card;
        card_newer.subsections = optional ? subs_optional : subs_required;
        const char *cl[] = {"card,id=c1,slot=1"};
        Side *src = side_new("ferry-2.0", false, cl, 1), *dst = side_new("ferry-2.0", true, cl, 1);
        boot(src);
        add(src, "cpu,id=cpu1,slot=1"); /* a hotplug in flight as well */
        add(dst, "cpu,id=cpu1,slot=1");
        MigOpts o = {.src_registry = newer_source_registry};
        MigResult res;
        FerryError err = {0};
        int rc = migrate(src, dst, &o, &res, &err);
        if (optional) {
            if (rc < 0)
                fail_msg("optional subsection: %s", err.msg);
            assert_non_null(strstr(res.warnings, "card/diag"));
            assert_same(src, dst);
            ferry_guest_run(dst->g, 100);
            assert_int_equal(ferry_guest_log_find(dst->g, FERRY_GUEST_OBS_CONFIGURED, CPU1), 1);
        } else {
            assert_true(rc < 0);
            if (!strstr(err.msg, "unknown subsection 'card/diag' in 'card'"))
                fail_msg("unexpected error: %s", err.msg);
            assert_int_equal(ferry_machine_runstate(src->m), FERRY_RUN_RUNNING);
            assert_false(ferry_machine_migration_active(src->m));
            ferry_guest_run(src->g, 100); /* the source guest carries on */
            assert_int_equal(ferry_guest_log_find(src->g, FERRY_GUEST_OBS_CONFIGURED, CPU1), 1);
        }
        mig_result_fini(&res);
        side_free(src);
        side_free(dst);
    }
}

/* S15: a device moved in the device tree keeps its section; the schemas are identical. */
static void s15_moved_device(void **state)
{
    (void)state;
    FerryError err = {0};
    const char *cl[] = {"card,id=c1,slot=1", "cpu,id=cpu1,slot=1"};
    Side *src = side_new("ferry-2.0", false, cl, 2), *dst = side_new("ferry-2.0", true, cl, 2);
    boot(src);
    FerryRegistry *before = ferry_machine_registry(dst->m, &err);
    char *schema_before = ferry_schema_dumps(before, "ferry-2.0");
    assert_int_equal(ferry_machine_device_reparent(dst->m, "c1", "/machine/bridge0", &err), 0);
    assert_int_equal(ferry_machine_device_reparent(dst->m, "cpu1", "/machine/socket1/core0", &err),
                     0);
    FerryDeviceInfo di;
    for (size_t i = 0; ferry_machine_device_info(dst->m, i, &di) == 0; i++)
        if (!strcmp(di.id, "c1"))
            assert_string_equal(di.parent, "/machine/bridge0");
    FerryRegistry *after = ferry_machine_registry(dst->m, &err);
    char *schema_after = ferry_schema_dumps(after, "ferry-2.0");
    assert_string_equal(schema_before, schema_after); /* what `ferry schema check` compares */
    assert_non_null(ferry_registry_find(after, "card", 1, NULL));
    assert_non_null(ferry_registry_find(after, "cpu", 1, NULL));
    mig_ok(src, dst, NULL, NULL); /* the moved devices receive the source's sections */
    assert_same(src, dst);
    /* the same across machine types whose trees differ (vCPUs under a cluster in 2.0) */
    FerryRegistry *t1 =
        ferry_machine_type_schema_registry(ferry_machine_type_find("ferry-1.0"), &err);
    FerryRegistry *t2 =
        ferry_machine_type_schema_registry(ferry_machine_type_find("ferry-2.0"), &err);
    void *o;
    assert_ptr_equal(ferry_registry_find(t1, "cpu", 0, &o), ferry_registry_find(t2, "cpu", 0, &o));
    free(schema_before);
    free(schema_after);
    ferry_registry_free(before);
    ferry_registry_free(after);
    ferry_registry_free(t1);
    ferry_registry_free(t2);
    side_free(src);
    side_free(dst);
}

/* S16: the handshake refuses a destination that lacks a device model or has other parameters,
 * listing every mismatch; nothing is loaded and the source keeps running. */
static void s16_handshake_refuses(void **state)
{
    (void)state;
    FerryError err = {0};
    const char *scl[] = {"card,id=c1,slot=1", "mem-block,id=mem0,slot=0,node=1"};
    const char *dcl[] = {"card,id=c1,slot=1", "mem-block,id=mem0,slot=0", "cpu,id=cpu3,slot=3"};
    Side *src = side_new("ferry-2.0", false, scl, 2), *dst = side_new("ferry-2.0", true, dcl, 3);
    boot(src);
    FerryMachine *dst_before = ferry_machine_clone(dst->m);
    assert_true(migrate(src, dst, NULL, NULL, &err) < 0);
    assert_int_equal(err.code, -EPROTO);
    assert_non_null(strstr(err.msg, "handshake refused: 2 mismatches"));
    assert_non_null(strstr(err.msg, "device 'mem0': parameter 'node' is '1' on the source, '0' on "
                                    "the destination"));
    assert_non_null(strstr(err.msg, "device 'cpu3' (cpu) exists only on the destination"));
    assert_int_equal(ferry_machine_runstate(src->m), FERRY_RUN_RUNNING);
    side_free(dst);
    ferry_machine_free(dst_before);

    /* a model this destination binary does not have */
    const char *dcl2[] = {"card,id=c1,slot=1", "mem-block,id=mem0,slot=0,node=1"};
    dst = side_new("ferry-2.0", true, dcl2, 2);
    dst_before = ferry_machine_clone(dst->m);
    MigOpts o = {.tamper_model = "ferry-card-v2"};
    assert_true(migrate(src, dst, &o, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "device 'c1': model 'ferry-card-v2' is unknown to the "
                                    "destination"));
    /* nothing was loaded (run state aside: the destination never runs) */
    char why[128];
    assert_true(same_host_state(dst_before, dst->m, why, sizeof(why)));
    assert_int_equal(ferry_machine_runstate(dst->m), FERRY_RUN_SHUTDOWN);
    assert_int_equal(ferry_machine_runstate(src->m), FERRY_RUN_RUNNING);
    ferry_machine_free(dst_before);
    side_free(src);
    side_free(dst);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(s01_prelaunch_is_coldplug),
        cmocka_unit_test(s02_inmigrate_device_add),
        cmocka_unit_test(s03_completed_hotplug_then_migrate),
        cmocka_unit_test(s04_pending_event_migrates),
        cmocka_unit_test(s05_mid_session),
        cmocka_unit_test(s06_pending_unplug),
        cmocka_unit_test(s07_hotplug_before_ready),
        cmocka_unit_test(s08_reset_before_handled),
        cmocka_unit_test(s09_reset_then_migrate),
        cmocka_unit_test(s10_refused_during_migration),
        cmocka_unit_test(s11_unplug_replug),
        cmocka_unit_test(s12_stale_destination_events),
        cmocka_unit_test(s13_backward_migration),
        cmocka_unit_test(s14_unknown_subsections),
        cmocka_unit_test(s15_moved_device),
        cmocka_unit_test(s16_handshake_refuses),
    };
    if (argc > 1) {
        /* A renamed scenario must not turn its meson test into a silent pass. */
        size_t hits = 0;
        for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
            hits += fnmatch(argv[1], tests[i].name, 0) == 0;
        if (!hits) {
            fprintf(stderr, "test-scenarios: no scenario matches '%s'\n", argv[1]);
            return 1;
        }
        cmocka_set_test_filter(argv[1]);
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
