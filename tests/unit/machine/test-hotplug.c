/* The hotplug register block and the guest model: register map, every (state, target) pair of
 * SET_STATE, configure-connector tokens, events, readiness and the level-triggered line. */
#include "ferry/machine/guest.h"
#include "ferry/machine/hotplug.h"
#include "ferry/machine/machine.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static FerryMachine *mk_running(void)
{
    FerryError err = {0};
    FerryMachineConfig cfg = {.boot_cpus = 1};
    FerryMachine *m = ferry_machine_new(&cfg, &err);
    assert_non_null(m);
    assert_int_equal(ferry_machine_run_event(m, FERRY_RUN_EV_CONT, &err), 0);
    return m;
}

static void add(FerryMachine *m, const char *opts)
{
    FerryError err = {0};
    if (ferry_machine_device_add_opts(m, opts, &err) < 0)
        fail_msg("%s: %s", opts, err.msg);
}

static uint32_t cmd(FerryMachine *m, uint32_t c, uint32_t sel, uint32_t arg)
{
    ferry_hotplug_io_write(m, FERRY_HP_REG_SELECTOR, 4, sel);
    ferry_hotplug_io_write(m, FERRY_HP_REG_ARG, 4, arg);
    ferry_hotplug_io_write(m, FERRY_HP_REG_CMD, 4, c);
    return ferry_hotplug_io_read(m, FERRY_HP_REG_STATUS, 4);
}

static void register_map(void **state)
{
    (void)state;
    FerryMachine *m = mk_running();
    assert_int_equal(ferry_hotplug_io_read(m, FERRY_HP_REG_MAGIC, 4), FERRY_HP_MAGIC_VALUE);
    assert_int_equal(ferry_hotplug_io_read(m, FERRY_HP_REG_VERSION, 4), 1);
    assert_int_equal(ferry_hotplug_io_read(m, FERRY_HP_REG_NCONN, 4), 12);
    /* undefined accesses: all-ones, never a crash; writes ignored */
    assert_int_equal(ferry_hotplug_io_read(m, FERRY_HP_REG_MAGIC, 2), 0xffff);
    assert_int_equal(ferry_hotplug_io_read(m, 0x01, 4), 0xffffffffu);
    assert_int_equal(ferry_hotplug_io_read(m, 0x7e, 4), 0xffffffffu);
    assert_int_equal(ferry_hotplug_io_read(m, 0x200, 1), 0xff);
    assert_int_equal(ferry_hotplug_io_read(m, 0x7f, 1), 0); /* last window byte */
    assert_int_equal(ferry_hotplug_io_read(m, 0x00, 3), 0xffffffffu);
    assert_int_equal(ferry_hotplug_io_read(m, 0x30, 4), 0xffffffffu);
    ferry_hotplug_io_write(m, FERRY_HP_REG_SELECTOR, 2, 7);
    assert_int_equal(ferry_hotplug_io_read(m, FERRY_HP_REG_SELECTOR, 4), 0);
    ferry_hotplug_io_write(m, 0xffff, 4, 7);
    assert_int_equal(cmd(m, 0x99, 0, 0), FERRY_HP_ST_BAD_COMMAND);
    assert_int_equal(cmd(m, FERRY_HP_CMD_GET_STATE, 0x70000000, 0), FERRY_HP_ST_NO_CONNECTOR);
    assert_int_equal(cmd(m, FERRY_HP_CMD_GET_STATE, FERRY_CONN_INDEX(1, 4), 0),
                     FERRY_HP_ST_NO_CONNECTOR);
    assert_int_equal(cmd(m, FERRY_HP_CMD_FETCH_EVENT, 0, 0), FERRY_HP_ST_EMPTY);
    /* GET_STATE of the boot vCPU */
    assert_int_equal(cmd(m, FERRY_HP_CMD_GET_STATE, FERRY_CONN_INDEX(1, 0), 0), FERRY_HP_ST_OK);
    assert_int_equal(ferry_hotplug_io_read(m, FERRY_HP_REG_RESULT0, 4), FERRY_CONN_CONFIGURED);
    assert_int_equal(ferry_hotplug_io_read(m, FERRY_HP_REG_RESULT1, 4), FERRY_HP_FLAG_PRESENT);
    assert_int_equal(ferry_hotplug_io_read(m, FERRY_HP_REG_RESULT2, 4), FERRY_CONN_CPU);
    ferry_machine_free(m);
}

/* SET_STATE over every (current state, target) pair, with and without an unplug request. */
static void set_state_table(void **state)
{
    (void)state;
    static const struct {
        uint32_t from, to, status, after;
    } want[] = {
        {1, 1, 3, 1}, {1, 2, 0, 2}, {1, 3, 3, 1}, {1, 4, 3, 1}, {2, 1, 0, 1}, {2, 2, 3, 2},
        {2, 3, 0, 3}, {2, 4, 3, 2}, {3, 1, 3, 3}, {3, 2, 0, 2}, {3, 3, 3, 3}, {3, 4, 3, 3},
        {4, 1, 3, 4}, {4, 2, 0, 2}, {4, 3, 3, 4}, {4, 4, 3, 4},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        FerryMachine *m = mk_running();
        add(m, "card,id=c,slot=0");
        uint32_t idx = FERRY_CONN_INDEX(FERRY_CONN_SLOT, 0);
        /* drive the connector to `from` through the protocol */
        if (want[i].from >= 2)
            assert_int_equal(cmd(m, FERRY_HP_CMD_SET_STATE, idx, 2), 0);
        if (want[i].from >= 3)
            assert_int_equal(cmd(m, FERRY_HP_CMD_SET_STATE, idx, 3), 0);
        if (want[i].from == 4)
            while (cmd(m, FERRY_HP_CMD_CC_STEP, idx, 0) == 0 &&
                   ferry_hotplug_io_read(m, FERRY_HP_REG_RESULT0, 4) != FERRY_HP_TOK_DONE)
                ;
        FerryConnectorInfo ci;
        ferry_machine_connector_find(m, idx, &ci);
        assert_int_equal(ci.state, want[i].from);
        uint32_t st = cmd(m, FERRY_HP_CMD_SET_STATE, idx, want[i].to);
        ferry_machine_connector_find(m, idx, &ci);
        if (st != want[i].status || ci.state != want[i].after)
            fail_msg("%u -> %u: status %u state %u, expected %u %u", want[i].from, want[i].to, st,
                     ci.state, want[i].status, want[i].after);
        assert_int_equal(cmd(m, FERRY_HP_CMD_SET_STATE, idx, 0), FERRY_HP_ST_BAD_ARG);
        assert_int_equal(cmd(m, FERRY_HP_CMD_SET_STATE, idx, 5), FERRY_HP_ST_BAD_ARG);
        ferry_machine_free(m);
    }
    /* empty connector: allocate -> NO_DEVICE; unplug pending -> UNPLUG_PENDING */
    FerryMachine *m = mk_running();
    assert_int_equal(cmd(m, FERRY_HP_CMD_SET_STATE, FERRY_CONN_INDEX(3, 1), 2),
                     FERRY_HP_ST_NO_DEVICE);
    add(m, "card,id=c,slot=0");
    uint32_t idx = FERRY_CONN_INDEX(FERRY_CONN_SLOT, 0);
    assert_int_equal(cmd(m, FERRY_HP_CMD_SET_STATE, idx, 2), 0);
    FerryError err = {0};
    assert_int_equal(ferry_machine_device_del(m, "c", &err), 0);
    assert_int_equal(cmd(m, FERRY_HP_CMD_SET_STATE, idx, 3), FERRY_HP_ST_UNPLUG_PENDING);
    assert_int_equal(cmd(m, FERRY_HP_CMD_CC_STEP, idx, 0), FERRY_HP_ST_BAD_STATE);
    assert_int_equal(cmd(m, FERRY_HP_CMD_SET_STATE, idx, 1), 0);
    assert_false(ferry_machine_has_device(m, "c"));
    ferry_machine_free(m);
}

static int irq_changes;
static bool irq_level;
static void on_irq(void *opaque, bool level)
{
    (void)opaque;
    irq_changes++;
    irq_level = level;
}

static void hotplug_flow_with_guest(void **state)
{
    (void)state;
    FerryMachine *m = mk_running();
    irq_changes = 0;
    ferry_machine_set_irq(m, on_irq, NULL);
    FerryGuest *g = ferry_guest_new(m);
    /* hotplug before ready: event queued, line stays low (S7) */
    add(m, "mem-block,id=mem0,slot=1,node=2");
    assert_int_equal(ferry_machine_event_count(m), 1);
    assert_int_equal(irq_changes, 0);
    assert_false(ferry_machine_irq_level(m));
    assert_true(ferry_guest_step(g)); /* ready: line rises */
    assert_int_equal(irq_changes, 1);
    assert_true(irq_level);
    ferry_guest_run(g, 100);
    assert_false(irq_level); /* the queue drained */
    char *log = ferry_guest_log_text(g);
    assert_string_equal(log, "ready\n"
                             "boot cpu 0x10000000\n"
                             "event add mem 0x20000001\n"
                             "token 0x20000001 node-start memory@108000000\n"
                             "token 0x20000001 prop device_type\n"
                             "token 0x20000001 prop reg\n"
                             "token 0x20000001 prop numa-node\n"
                             "token 0x20000001 node-end\n"
                             "configured 0x20000001 memory@108000000\n");
    free(log);
    assert_true(ferry_guest_has(g, 0x20000001));
    FerryConnectorInfo ci;
    ferry_machine_connector_find(m, 0x20000001, &ci);
    assert_int_equal(ci.state, FERRY_CONN_CONFIGURED);
    assert_false(ci.session_active);
    /* the reg property carries base and size, little-endian */
    assert_int_equal(cmd(m, FERRY_HP_CMD_CC_STEP, 0x20000001, 0), 0);
    assert_int_equal(cmd(m, FERRY_HP_CMD_CC_STEP, 0x20000001, 0), 0);
    assert_int_equal(cmd(m, FERRY_HP_CMD_CC_STEP, 0x20000001, 0), 0);
    assert_int_equal(ferry_hotplug_io_read(m, FERRY_HP_REG_RESULT2, 4), 16);
    assert_int_equal(ferry_hotplug_io_read(m, FERRY_HP_WINDOW + FERRY_HP_WINDOW_VALUE, 4),
                     0x08000000);
    assert_int_equal(ferry_hotplug_io_read(m, FERRY_HP_WINDOW + FERRY_HP_WINDOW_VALUE + 4, 1), 1);
    assert_int_equal(ferry_hotplug_io_read(m, FERRY_HP_WINDOW + FERRY_HP_WINDOW_VALUE + 8, 4),
                     0x08000000);
    assert_int_equal(ferry_hotplug_io_read(m, FERRY_HP_WINDOW + FERRY_HP_WINDOW_NAME, 2),
                     'r' | 'e' << 8);

    /* unplug: event, guest isolates and releases, DEVICE_DELETED path via callback */
    FerryError err = {0};
    assert_int_equal(ferry_machine_device_del(m, "mem0", &err), 0);
    assert_true(irq_level);
    ferry_guest_log_clear(g);
    ferry_guest_run(g, 100);
    log = ferry_guest_log_text(g);
    assert_string_equal(log, "event remove mem 0x20000001\nreleased 0x20000001\n");
    free(log);
    assert_false(ferry_machine_has_device(m, "mem0"));
    assert_false(ferry_guest_has(g, 0x20000001));
    /* same id again */
    add(m, "mem-block,id=mem0,slot=1");
    ferry_guest_run(g, 100);
    assert_true(ferry_guest_has(g, 0x20000001));
    assert_int_equal(ferry_guest_log_find(g, FERRY_GUEST_OBS_DUPLICATE, UINT32_MAX), 0);
    assert_int_equal(ferry_guest_log_find(g, FERRY_GUEST_OBS_ERROR, UINT32_MAX), 0);
    ferry_guest_free(g);
    ferry_machine_free(m);
}

/* The boot enumeration lists only configured connectors; a hotplug pending at ready is
 * presented once, by its event. */
static void nothing_presented_twice(void **state)
{
    (void)state;
    FerryMachine *m = mk_running();
    FerryGuest *g = ferry_guest_new(m);
    add(m, "cpu,id=cpu1,slot=1");
    add(m, "card,id=c2,slot=2");
    ferry_guest_run(g, 200);
    assert_int_equal(ferry_guest_log_find(g, FERRY_GUEST_OBS_BOOT, UINT32_MAX), 1);
    assert_int_equal(ferry_guest_log_find(g, FERRY_GUEST_OBS_CONFIGURED, UINT32_MAX), 2);
    assert_int_equal(ferry_guest_log_find(g, FERRY_GUEST_OBS_DUPLICATE, UINT32_MAX), 0);
    assert_true(ferry_guest_has(g, FERRY_CONN_INDEX(1, 1)));
    assert_true(ferry_guest_has(g, FERRY_CONN_INDEX(3, 2)));
    /* reboot: everything is present as coldplugged and listed once by enumeration */
    FerryError err = {0};
    assert_int_equal(ferry_machine_run_event(m, FERRY_RUN_EV_RESET, &err), 0);
    ferry_guest_reboot(g);
    ferry_guest_log_clear(g);
    ferry_guest_run(g, 200);
    char *log = ferry_guest_log_text(g);
    assert_string_equal(log,
                        "ready\nboot cpu 0x10000000\nboot cpu 0x10000001\nboot slot 0x30000002\n");
    free(log);
    ferry_guest_free(g);
    ferry_machine_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(register_map),
        cmocka_unit_test(set_state_table),
        cmocka_unit_test(hotplug_flow_with_guest),
        cmocka_unit_test(nothing_presented_twice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
