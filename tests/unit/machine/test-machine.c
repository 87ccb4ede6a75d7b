/* Machine model, host side: device validation, device_add/device_del per run state, reset,
 * inventory comparison, clone/equal/hash, and a codec round trip of the machine's registry. */
#include "ferry/machine/guest.h"
#include "ferry/machine/hotplug.h"
#include "ferry/machine/inventory.h"
#include "ferry/machine/machine.h"
#include "ferry/state/schema.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static FerryMachine *mk(const char *type, bool incoming)
{
    FerryError err = {0};
    FerryMachineConfig cfg = {.type = type, .boot_cpus = 1, .incoming = incoming};
    FerryMachine *m = ferry_machine_new(&cfg, &err);
    if (!m)
        fail_msg("ferry_machine_new: %s", err.msg);
    return m;
}

static void add_ok(FerryMachine *m, const char *opts)
{
    FerryError err = {0};
    if (ferry_machine_device_add_opts(m, opts, &err) < 0)
        fail_msg("device_add %s: %s", opts, err.msg);
}

static void add_fails(FerryMachine *m, const char *opts, const char *msg)
{
    FerryError err = {0};
    assert_true(ferry_machine_device_add_opts(m, opts, &err) < 0);
    if (!strstr(err.msg, msg))
        fail_msg("device_add %s: got '%s', expected '%s'", opts, err.msg, msg);
}

static FerryConnectorInfo conn(FerryMachine *m, uint32_t kind, uint32_t slot)
{
    FerryConnectorInfo ci;
    assert_int_equal(ferry_machine_connector_find(m, FERRY_CONN_INDEX(kind, slot), &ci), 0);
    return ci;
}

static void validation_errors(void **state)
{
    (void)state;
    FerryMachine *m = mk(NULL, false);
    add_fails(m, "cpu,id=cpu2,slot=2,foo=1", "device 'cpu2': unknown parameter 'foo'");
    add_fails(m, "mem-block,id=mem1,slot=0,size=256M",
              "device 'mem1': memory block size must be 128M");
    add_fails(m, "cpu,id=cpu9,slot=9", "device 'cpu9': slot 9 out of range (4 cpu slots)");
    add_fails(m, "card,id=c9,slot=9", "device 'c9': slot 9 out of range (4 card slots)");
    add_fails(m, "cpu,id=cpu0,slot=1", "duplicate device id 'cpu0'");
    add_fails(m, "cpu,id=cpuX,slot=0", "cpu slot 0 is already used by 'cpu0'");
    add_fails(m, "cpu,slot=1", "parameter 'id' is required");
    add_fails(m, "cpu,id=c1", "device 'c1': parameter 'slot' is required");
    /* the -device string itself */
    add_fails(m, "id=x,cpu", "device 'id=x,cpu': must start with a driver name");
    add_fails(m, "cpu,id=c2,slot", "device 'cpu,id=c2,slot': 'slot' is not name=value");
    add_fails(m, "", "device '': driver missing");
    add_fails(m, "card,id=c3,a=1,a=1,a=1,a=1,a=1,a=1,a=1,a=1,a=1,a=1,a=1,a=1,a=1,a=1,a=1,a=1,a=1",
              "more than 16 parameters");
    add_fails(m, "cpu,id=c1,slot=1,pmu=maybe", "parameter 'pmu' expects on or off");
    add_fails(m, "cpu,id=c1,slot=x", "parameter 'slot' expects an unsigned number");
    add_fails(m, "gpu,id=g", "unknown driver 'gpu'");
    add_fails(m, "cpu,id=1cpu,slot=1", "must start with a letter");
    add_fails(m, "cpu,id=c1,slot=1,slot=2", "given twice");
    assert_int_equal(ferry_machine_device_count(m), 1);
    add_ok(m, "mem-block,id=mem1,slot=0,size=128M");
    char buf[32];
    FerryError err = {0};
    assert_int_equal(ferry_machine_device_param(m, "mem1", "size", buf, sizeof(buf), &err), 0);
    assert_string_equal(buf, "128M");
    ferry_machine_free(m);
    /* configuration errors */
    FerryMachineConfig bad = {.type = "ferry-9.9"};
    assert_null(ferry_machine_new(&bad, &err));
    assert_non_null(strstr(err.msg, "unknown machine type 'ferry-9.9'"));
    FerryMachineConfig many = {.boot_cpus = 5, .cpu_slots = 4};
    assert_null(ferry_machine_new(&many, &err));
}

/* Compat properties: the same command line gives different effective parameters per type. */
static void compat_properties(void **state)
{
    (void)state;
    char buf[16];
    FerryError err = {0};
    FerryMachine *old = mk("ferry-1.0", false), *new = mk("ferry-2.0", false);
    add_ok(old, "card,id=nic,slot=1");
    add_ok(new, "card,id=nic,slot=1");
    assert_int_equal(ferry_machine_device_param(old, "nic", "ext-status", buf, sizeof(buf), &err),
                     0);
    assert_string_equal(buf, "off");
    assert_int_equal(ferry_machine_device_param(new, "nic", "ext-status", buf, sizeof(buf), &err),
                     0);
    assert_string_equal(buf, "on");
    /* Device-tree layout differs (vCPUs moved under a cluster in 2.0) */
    FerryDeviceInfo a, b;
    assert_int_equal(ferry_machine_device_info(old, 0, &a), 0);
    assert_int_equal(ferry_machine_device_info(new, 0, &b), 0);
    assert_string_equal(a.parent, "/machine");
    assert_string_equal(b.parent, "/machine/cpu-cluster");
    ferry_machine_free(old);
    ferry_machine_free(new);
}

static int deleted_count;
static char deleted_id[64];
static void on_deleted(void *opaque, const char *id, const char *path)
{
    (void)opaque;
    (void)path;
    deleted_count++;
    strncpy(deleted_id, id, sizeof(deleted_id) - 1);
}

static void plug_modes(void **state)
{
    (void)state;
    FerryError err = {0};
    /* prelaunch: coldplug, no event */
    FerryMachine *m = mk(NULL, false);
    add_ok(m, "cpu,id=cpu1,slot=1");
    assert_int_equal(conn(m, FERRY_CONN_CPU, 1).state, FERRY_CONN_CONFIGURED);
    assert_int_equal(ferry_machine_event_count(m), 0);
    /* running: hotplug, event queued, connector unusable until the guest allocates */
    assert_int_equal(ferry_machine_run_event(m, FERRY_RUN_EV_CONT, &err), 0);
    add_ok(m, "cpu,id=cpu2,slot=2");
    assert_int_equal(conn(m, FERRY_CONN_CPU, 2).state, FERRY_CONN_UNUSABLE);
    assert_int_equal(ferry_machine_event_count(m), 1);
    FerryEventInfo ev;
    assert_int_equal(ferry_machine_event_at(m, 0, &ev), 0);
    assert_int_equal(ev.action, FERRY_HP_ACTION_ADD);
    assert_int_equal(ev.index, FERRY_CONN_INDEX(FERRY_CONN_CPU, 2));
    /* outgoing migration: refused, nothing changes */
    ferry_machine_set_migration_active(m, true);
    add_fails(m, "cpu,id=cpu3,slot=3", "device_add is blocked while migration is active");
    assert_true(ferry_machine_device_del(m, "cpu1", &err) < 0);
    assert_string_equal(err.msg, "device_del is blocked while migration is active");
    assert_int_equal(ferry_machine_device_count(m), 3);
    ferry_machine_set_migration_active(m, false);
    /* paused is hotplug too */
    assert_int_equal(ferry_machine_run_event(m, FERRY_RUN_EV_STOP, &err), 0);
    add_ok(m, "card,id=c0,slot=0");
    assert_int_equal(ferry_machine_event_count(m), 2);
    ferry_machine_free(m);
    /* inmigrate: coldplug (QEMU 94fd9cbaa3) */
    m = mk(NULL, true);
    add_ok(m, "cpu,id=cpu1,slot=1");
    assert_int_equal(conn(m, FERRY_CONN_CPU, 1).state, FERRY_CONN_CONFIGURED);
    assert_int_equal(ferry_machine_event_count(m), 0);
    assert_true(ferry_machine_run_event(m, FERRY_RUN_EV_CONT, &err) < 0);
    assert_non_null(strstr(err.msg, "cannot cont in run state 'inmigrate'"));
    ferry_machine_free(m);
}

static void unplug_and_replug(void **state)
{
    (void)state;
    FerryError err = {0};
    FerryMachine *m = mk(NULL, false);
    ferry_machine_set_device_deleted(m, on_deleted, NULL);
    deleted_count = 0;
    add_ok(m, "cpu,id=cpu1,slot=1");
    /* prelaunch: removed at once */
    assert_int_equal(ferry_machine_device_del(m, "cpu1", &err), 0);
    assert_int_equal(deleted_count, 1);
    assert_false(ferry_machine_has_device(m, "cpu1"));
    add_ok(m, "cpu,id=cpu1,slot=1");
    assert_int_equal(ferry_machine_run_event(m, FERRY_RUN_EV_CONT, &err), 0);
    /* running, configured: request, event, second request refused */
    assert_int_equal(ferry_machine_device_del(m, "cpu1", &err), 0);
    assert_true(conn(m, FERRY_CONN_CPU, 1).unplug_requested);
    assert_int_equal(ferry_machine_event_count(m), 1);
    assert_int_equal(ferry_machine_device_del(m, "cpu1", &err), -EBUSY);
    assert_non_null(strstr(err.msg, "unplug already in progress"));
    assert_int_equal(ferry_machine_device_del(m, "nope", &err), -ENOENT);
    assert_int_equal(deleted_count, 1);
    /* hotplugged but never allocated by the guest: released at once, its add event purged */
    add_ok(m, "cpu,id=cpu2,slot=2");
    assert_int_equal(ferry_machine_event_count(m), 2);
    assert_int_equal(ferry_machine_device_del(m, "cpu2", &err), 0);
    assert_int_equal(deleted_count, 2);
    assert_string_equal(deleted_id, "cpu2");
    assert_int_equal(ferry_machine_event_count(m), 1);
    add_ok(m, "cpu,id=cpu2,slot=2");
    ferry_machine_free(m);
}

/* DESIGN §4 Reset: present -> configured, unplug requested -> released, empty -> unusable;
 * events, sessions and readiness purged. */
static void reset_rules(void **state)
{
    (void)state;
    FerryError err = {0};
    FerryMachine *m = mk(NULL, false);
    ferry_machine_set_device_deleted(m, on_deleted, NULL);
    deleted_count = 0;
    add_ok(m, "cpu,id=cpu1,slot=1");
    assert_int_equal(ferry_machine_run_event(m, FERRY_RUN_EV_CONT, &err), 0);
    FerryGuest *g = ferry_guest_new(m);
    ferry_guest_run(g, 100);
    assert_true(ferry_machine_guest_ready(m));
    add_ok(m, "cpu,id=cpu2,slot=2");
    assert_int_equal(ferry_machine_device_del(m, "cpu1", &err), 0);
    add_ok(m, "mem-block,id=mem0,slot=0");
    ferry_guest_step(g); /* fetch the add of cpu2 */
    ferry_guest_step(g); /* allocate */
    ferry_guest_step(g); /* unisolate */
    ferry_guest_step(g); /* first configure token: session in progress */
    assert_true(conn(m, FERRY_CONN_CPU, 2).session_active);
    assert_int_equal(ferry_machine_run_event(m, FERRY_RUN_EV_RESET, &err), 0);
    assert_int_equal(ferry_machine_runstate(m), FERRY_RUN_RUNNING);
    assert_int_equal(deleted_count, 1);
    assert_false(ferry_machine_has_device(m, "cpu1"));
    assert_int_equal(conn(m, FERRY_CONN_CPU, 1).state, FERRY_CONN_UNUSABLE);
    assert_int_equal(conn(m, FERRY_CONN_CPU, 2).state, FERRY_CONN_CONFIGURED);
    assert_false(conn(m, FERRY_CONN_CPU, 2).session_active);
    assert_int_equal(conn(m, FERRY_CONN_MEM, 0).state, FERRY_CONN_CONFIGURED);
    assert_int_equal(conn(m, FERRY_CONN_MEM, 1).state, FERRY_CONN_UNUSABLE);
    assert_int_equal(ferry_machine_event_count(m), 0);
    assert_false(ferry_machine_guest_ready(m));
    assert_false(ferry_machine_irq_level(m));
    ferry_guest_free(g);
    ferry_machine_free(m);
}

static void inventory_compare(void **state)
{
    (void)state;
    FerryMachine *a = mk("ferry-2.0", false), *b = mk("ferry-2.0", true);
    add_ok(a, "card,id=nic,slot=1");
    add_ok(a, "mem-block,id=mem0,slot=0");
    add_ok(b, "card,id=nic,slot=1,ext-status=off");
    add_ok(b, "cpu,id=extra,slot=3");
    FerryInventory *ia = ferry_machine_inventory(a), *ib = ferry_machine_inventory(b);
    char *report = NULL;
    assert_int_equal(ferry_inventory_compare(ia, ib, &report), 3);
    assert_non_null(strstr(report, "device 'nic': parameter 'ext-status' is 'on' on the source, "
                                   "'off' on the destination"));
    assert_non_null(
        strstr(report, "device 'mem0' (mem-block, model ferry-mem-block-v1) is missing"));
    assert_non_null(strstr(report, "device 'extra' (cpu) exists only on the destination"));
    free(report);
    /* JSON round trip, and a model unknown to this binary */
    json_t *j = ferry_inventory_to_json(ia);
    FerryError err = {0};
    FerryInventory *back = ferry_inventory_from_json(j, &err);
    assert_non_null(back);
    assert_int_equal(ferry_inventory_compare(ia, back, NULL), 0);
    json_t *dev0 = json_array_get(json_object_get(j, "devices"), 0);
    json_object_set_new(dev0, "model", json_string("ferry-cpu-v9"));
    FerryInventory *alien = ferry_inventory_from_json(j, &err);
    assert_true(ferry_inventory_check(alien, back, &err) < 0);
    assert_non_null(strstr(err.msg, "handshake refused: 1 mismatch: device 'cpu0': model "
                                    "'ferry-cpu-v9' is unknown to the destination"));
    /* several mismatches, the machine type first, "; "-separated on one line */
    FerryMachine *c = mk("ferry-1.0", true);
    add_ok(c, "card,id=nic,slot=1,ext-status=off");
    FerryInventory *ic = ferry_machine_inventory(c);
    assert_true(ferry_inventory_check(ia, ic, &err) < 0);
    assert_string_equal(err.msg,
                        "handshake refused: 3 mismatches: machine type 'ferry-2.0' on the source, "
                        "'ferry-1.0' on the destination; device 'mem0' (mem-block, model "
                        "ferry-mem-block-v1) is missing on the destination; device 'nic': "
                        "parameter 'ext-status' is 'on' on the source, 'off' on the destination");
    ferry_inventory_free(ic);
    ferry_machine_free(c);
    json_object_set_new(j, "devices", json_integer(3));
    assert_null(ferry_inventory_from_json(j, &err));
    assert_non_null(strstr(err.msg, ".devices"));
    json_decref(j);
    ferry_inventory_free(alien);
    ferry_inventory_free(back);
    ferry_inventory_free(ia);
    ferry_inventory_free(ib);
    ferry_machine_free(a);
    ferry_machine_free(b);
}

static void clone_equal_hash(void **state)
{
    (void)state;
    FerryError err = {0};
    FerryMachine *m = mk(NULL, false);
    add_ok(m, "card,id=c1,slot=1");
    assert_int_equal(ferry_machine_run_event(m, FERRY_RUN_EV_CONT, &err), 0);
    add_ok(m, "cpu,id=cpu1,slot=1");
    FerryGuest *g = ferry_guest_new(m);
    ferry_guest_run(g, 5);
    FerryMachine *c = ferry_machine_clone(m);
    FerryGuest *gc = ferry_guest_clone(g, c);
    assert_true(ferry_machine_equal(m, c));
    assert_int_equal(ferry_machine_hash(m), ferry_machine_hash(c));
    assert_true(ferry_guest_equal(g, gc));
    assert_int_equal(ferry_guest_hash(g), ferry_guest_hash(gc));
    /* advancing one diverges both; advancing the other the same way converges again */
    ferry_guest_step(g);
    assert_false(ferry_machine_equal(m, c));
    assert_false(ferry_guest_equal(g, gc));
    assert_int_not_equal(ferry_machine_hash(m), ferry_machine_hash(c));
    ferry_guest_step(gc);
    assert_true(ferry_machine_equal(m, c));
    assert_true(ferry_guest_equal(g, gc));
    ferry_guest_run(g, 100);
    ferry_guest_run(gc, 100);
    assert_true(ferry_machine_equal(m, c));
    assert_int_equal(ferry_machine_hash(m), ferry_machine_hash(c));
    /* independent: changing the clone leaves the original alone */
    assert_int_equal(ferry_machine_device_del(c, "c1", &err), 0);
    assert_true(ferry_machine_has_device(m, "c1"));
    assert_false(ferry_machine_equal(m, c));
    /* a fresh machine built the same way is equal (no hidden state, deterministic) */
    FerryMachine *x = mk(NULL, false), *y = mk(NULL, false);
    assert_true(ferry_machine_equal(x, y));
    assert_int_equal(ferry_machine_hash(x), ferry_machine_hash(y));
    ferry_machine_free(x);
    ferry_machine_free(y);
    ferry_guest_free(gc);
    ferry_guest_free(g);
    ferry_machine_free(c);
    ferry_machine_free(m);
}

/* Each registry entry saved and loaded through the codec into a second machine. */
static void registry_round_trip(void **state)
{
    (void)state;
    FerryError err = {0};
    FerryMachine *src = mk("ferry-1.0", false);
    add_ok(src, "card,id=c1,slot=1");
    assert_int_equal(ferry_machine_run_event(src, FERRY_RUN_EV_CONT, &err), 0);
    add_ok(src, "cpu,id=cpu1,slot=1");
    FerryGuest *g = ferry_guest_new(src);
    ferry_guest_run(g, 100);
    assert_int_equal(ferry_machine_device_del(src, "c1", &err), 0); /* unplug in flight */

    FerryMachine *dst = mk("ferry-1.0", true);
    add_ok(dst, "card,id=c1,slot=1");
    add_ok(dst, "cpu,id=cpu1,slot=1");
    FerryRegistry *rs = ferry_machine_registry(src, &err), *rd = ferry_machine_registry(dst, &err);
    assert_non_null(rs);
    assert_non_null(rd);
    assert_int_equal(ferry_registry_count(rs), ferry_registry_count(rd));
    ferry_machine_incoming_prepare(dst);
    for (size_t i = 0; i < ferry_registry_count(rs); i++) {
        const char *sec;
        uint32_t inst;
        void *so, *dobj;
        const FerryDesc *d = ferry_registry_entry(rs, i, &sec, &inst, &so);
        assert_non_null(ferry_registry_find(rd, sec, inst, &dobj));
        FerryIO *w = ferry_io_mem_writer();
        if (ferry_state_save(d, so, w, &err) < 0)
            fail_msg("save %s %u: %s", sec, inst, err.msg);
        size_t len;
        const uint8_t *data = ferry_io_mem_data(w, &len);
        FerryIO *r = ferry_io_mem_reader(data, len);
        if (ferry_state_load(d, dobj, r, d->version, NULL, &err) < 0)
            fail_msg("load %s %u: %s", sec, inst, err.msg);
        ferry_io_destroy(r);
        ferry_io_destroy(w);
    }
    assert_int_equal(ferry_machine_incoming_finish(dst, &err), 0);
    assert_int_equal(ferry_machine_run_event(dst, FERRY_RUN_EV_INCOMING_RUN, &err), 0);
    assert_int_equal(ferry_machine_run_event(src, FERRY_RUN_EV_OUTGOING_DONE, &err), 0);
    /* the destination is the source, but for run state */
    assert_int_equal(ferry_machine_run_event(dst, FERRY_RUN_EV_STOP, &err), 0);
    assert_int_equal(ferry_machine_run_event(dst, FERRY_RUN_EV_OUTGOING_DONE, &err), 0);
    assert_true(ferry_machine_equal(src, dst));
    ferry_registry_free(rs);
    ferry_registry_free(rd);
    ferry_guest_free(g);
    ferry_machine_free(src);
    ferry_machine_free(dst);
}

/* Loaded connector state is outside input: impossible or hostile values are refused with the
 * connector named, before any guest command can act on them. */
static int load_conn(FerryMachine *dst, const uint8_t *payload, size_t len, FerryError *err)
{
    FerryRegistry *rd = ferry_machine_registry(dst, err);
    void *obj;
    const FerryDesc *d = ferry_registry_find(rd, "connector", 0x30000001, &obj);
    FerryIO *r = ferry_io_mem_reader(payload, len);
    int rc = ferry_state_load(d, obj, r, d->version, NULL, err);
    ferry_io_destroy(r);
    ferry_registry_free(rd);
    return rc;
}

static void hostile_connector_state(void **state)
{
    (void)state;
    FerryError err = {0};
    FerryMachine *src = mk("ferry-2.0", false);
    add_ok(src, "card,id=c1,slot=1");
    FerryRegistry *rs = ferry_machine_registry(src, &err);
    void *obj;
    const FerryDesc *d = ferry_registry_find(rs, "connector", 0x30000001, &obj);
    FerryIO *w = ferry_io_mem_writer();
    assert_int_equal(ferry_state_save(d, obj, w, &err), 0);
    size_t len;
    uint8_t payload[64];
    const uint8_t *bytes = ferry_io_mem_data(w, &len);
    assert_true(len <= sizeof(payload));
    memcpy(payload, bytes, len);
    ferry_io_destroy(w);
    ferry_registry_free(rs);
    assert_true(len > 8);

    /* the destination has no device in that slot: a configured state cannot be accepted */
    FerryMachine *dst = mk("ferry-2.0", true);
    assert_true(load_conn(dst, payload, len, &err) < 0);
    assert_non_null(strstr(err.msg, "connector 0x30000001: state configured on the source but "
                                    "no device on the destination"));
    add_ok(dst, "card,id=c1,slot=1");
    assert_int_equal(load_conn(dst, payload, len, &err), 0);
    /* find the state (u32 4 = configured) after the index in the payload and corrupt it */
    size_t at = 0;
    for (size_t i = 0; i + 8 <= len; i++)
        if (!memcmp(payload + i, "\x01\x00\x00\x30\x04\x00\x00\x00", 8))
            at = i + 4;
    assert_true(at > 0);
    payload[at] = 7;
    assert_true(load_conn(dst, payload, len, &err) < 0);
    assert_non_null(strstr(err.msg, "connector 0x30000001: invalid state 7"));
    payload[at] = 1; /* unusable ... */
    payload[len - 1] = 0;
    payload[len - 2] = 0;
    payload[len - 3] = 0;
    payload[len - 4] = 0;
    assert_int_equal(load_conn(dst, payload, len, &err), 0);
    /* the index must match the instance */
    payload[at - 1] = 0x20;
    assert_true(load_conn(dst, payload, len, &err) < 0);
    assert_non_null(strstr(err.msg, "stream carries index 0x20000001"));
    ferry_machine_free(src);
    ferry_machine_free(dst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(validation_errors),
        cmocka_unit_test(compat_properties),
        cmocka_unit_test(plug_modes),
        cmocka_unit_test(unplug_and_replug),
        cmocka_unit_test(reset_rules),
        cmocka_unit_test(inventory_compare),
        cmocka_unit_test(clone_equal_hash),
        cmocka_unit_test(registry_round_trip),
        cmocka_unit_test(hostile_connector_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
