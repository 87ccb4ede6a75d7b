/* QMP session, splitter and registry tests without sockets: the same request stream cut at
 * every byte gives the same answers, QMP's single-quote extension, argument specs of the
 * standard command set, and registry rules. */
#include "ferry/control/qmp.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cmocka.h needs setjmp.h, stdarg.h and stddef.h first. */
#include <cmocka.h>

typedef struct Sink {
    char *buf;
    size_t len;
} Sink;

static void sink_write(void *opaque, const char *data, size_t len)
{
    Sink *s = opaque;
    s->buf = realloc(s->buf, s->len + len + 1);
    assert_non_null(s->buf);
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    s->buf[s->len] = '\0';
}

static const FerryQmpArg echo_args[] = {
    FERRY_QMP_ARG("s", FERRY_QMP_T_STR),
    FERRY_QMP_ARG_END,
};
static const FerryQmpCommandSpec echo_spec = {.name = "x-echo", .args = echo_args};

static int do_echo(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    (void)ctx;
    (void)err;
    *ret = json_incref(json_object_get(args, "s"));
    return 0;
}

static int do_fail_silently(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    (void)ctx;
    (void)args;
    (void)ret;
    (void)err;
    return -EBUSY; /* no desc: the session must still say something */
}

static FerryQmpCommands *make_cmds(void)
{
    FerryQmpCommands *cmds = ferry_qmp_commands_create();
    FerryError err;
    assert_non_null(cmds);
    assert_int_equal(ferry_qmp_commands_add(cmds, &echo_spec, do_echo, NULL, &err), 0);
    assert_int_equal(ferry_qmp_commands_implement(cmds, "quit", do_fail_silently, NULL, &err), 0);
    return cmds;
}

/* Feed `in` in two writes cut at `cut` (SIZE_MAX: one write) to a fresh session. */
static char *run_session(FerryQmpCommands *cmds, const char *in, size_t len, size_t cut)
{
    Sink sink = {0};
    FerryQmpSession *s = ferry_qmp_session_create(cmds, NULL, sink_write, &sink);
    assert_non_null(s);
    if (cut >= len) {
        ferry_qmp_session_feed(s, in, len);
    } else {
        ferry_qmp_session_feed(s, in, cut);
        ferry_qmp_session_feed(s, in + cut, len - cut);
    }
    ferry_qmp_session_destroy(s);
    return sink.buf ? sink.buf : strdup("");
}

static const char stream[] =
    "{\"execute\": \"qmp_capabilities\"}\r\n"
    "{'execute': 'x-echo', 'arguments': {'s': 'it\\'s \"q\" \\u00e9'}, 'id': 'sq'}"
    "{\"execute\": \"x-echo\", \"arguments\": {\"s\": \"{[}]\\\\\\\"\"}, \"id\": [1]}\n"
    "[\"not an object\"] 17 true \"str\"\n"
    "{\"execute\": \"quit\", \"id\": 4}"
    "{\"execute\": \"x-echo\", \"arguments\": {\"s\": 5}}"
    "} {\"execute\": \"query-version\", \"id\": \"last\"}";

static void test_every_cut_gives_the_same_answers(void **state)
{
    (void)state;
    FerryQmpCommands *cmds = make_cmds();
    size_t len = strlen(stream);
    char *whole = run_session(cmds, stream, len, SIZE_MAX);
    /* The answers, line by line. */
    const char *want[] = {
        "{\"return\": {}}",
        "{\"return\": \"it's \\\"q\\\" \\u00E9\", \"id\": \"sq\"}",
        "{\"return\": \"{[}]\\\\\\\"\", \"id\": [1]}",
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input must be a JSON object\"}}",
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input must be a JSON object\"}}",
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input must be a JSON object\"}}",
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input must be a JSON object\"}}",
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"quit failed: Device or resource "
        "busy\"}, \"id\": 4}",
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Invalid parameter type for 's', "
        "expected: string\"}}",
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, expecting "
        "value\"}}",
        NULL,
    };
    const char *p = whole;
    for (int i = 0; want[i]; i++) {
        const char *eol = strstr(p, "\r\n");
        assert_non_null(eol);
        if ((size_t)(eol - p) != strlen(want[i]) || strncmp(p, want[i], strlen(want[i])))
            fail_msg("line %d: got '%.*s', want '%s'", i, (int)(eol - p), p, want[i]);
        p = eol + 2;
    }
    assert_non_null(strstr(p, "\"id\": \"last\""));
    for (size_t cut = 0; cut < len; cut++) {
        char *out = run_session(cmds, stream, len, cut);
        if (strcmp(out, whole))
            fail_msg("cut at %zu changes the answers:\n%s\nvs\n%s", cut, out, whole);
        free(out);
    }
    free(whole);
    ferry_qmp_commands_destroy(cmds);
}

static void test_small_limit(void **state)
{
    (void)state;
    FerryQmpCommands *cmds = make_cmds();
    FerryQmpConfig cfg = {.max_message = 64};
    Sink sink = {0};
    FerryQmpSession *s = ferry_qmp_session_create(cmds, &cfg, sink_write, &sink);
    const char *in = "{\"execute\": \"qmp_capabilities\"}"
                     "{\"execute\": \"x-echo\", \"arguments\": {\"s\": \"0123456789012345678901234"
                     "567890123456789\"}}"
                     "{\"execute\": \"x-echo\", \"arguments\": {\"s\": \"ok\"}}";
    ferry_qmp_session_feed(s, in, strlen(in));
    assert_true(ferry_qmp_session_negotiated(s));
    assert_string_equal(sink.buf, "{\"return\": {}}\r\n"
                                  "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON "
                                  "message exceeds the limit of 64 bytes\"}}\r\n"
                                  "{\"return\": \"ok\"}\r\n");
    ferry_qmp_session_destroy(s);
    free(sink.buf);
    ferry_qmp_commands_destroy(cmds);
}

static void check_args(const char *cmd, const char *args_json, const char *want_desc)
{
    FerryQmpCommands *cmds = ferry_qmp_commands_create();
    const FerryQmpCommandSpec *spec = ferry_qmp_commands_spec(cmds, cmd);
    assert_non_null(spec);
    json_t *args = json_loads(args_json, 0, NULL);
    assert_non_null(args);
    FerryQmpError err = {0};
    int rc = ferry_qmp_args_check(spec, args, &err);
    if (!want_desc) {
        if (rc != 0)
            fail_msg("%s %s: unexpected error '%s'", cmd, args_json, err.desc);
    } else {
        assert_int_equal(rc, -EINVAL);
        assert_int_equal(err.cls, FERRY_QMP_ERROR_GENERIC);
        assert_string_equal(err.desc, want_desc);
    }
    json_decref(args);
    ferry_qmp_commands_destroy(cmds);
}

static void test_standard_shapes(void **state)
{
    (void)state;
    check_args("device_add", "{\"driver\": \"ferry-cpu\", \"id\": \"c1\", \"core-id\": 3}", NULL);
    check_args("device_add", "{\"driver\": \"x\", \"bus\": 1}",
               "Invalid parameter type for 'bus', expected: string");
    check_args("device_del", "{}", "Parameter 'id' is missing");
    check_args("device_del", "{\"id\": 4}", "Invalid parameter type for 'id', expected: string");
    check_args("device_del", "{\"id\": \"a\", \"force\": true}", "Parameter 'force' is unexpected");
    check_args("migrate", "{\"uri\": \"unix:/tmp/m\", \"detach\": true}", NULL);
    check_args("migrate", "{\"uri\": \"tcp:h:1\", \"blk\": \"no\"}",
               "Invalid parameter type for 'blk', expected: boolean");
    check_args("migrate-incoming", "{}", "Parameter 'uri' is missing");
    check_args("migrate-set-parameters",
               "{\"downtime-limit\": 300, \"max-bandwidth\": 1000000, \"multifd-channels\": 4}",
               NULL);
    check_args("migrate-set-parameters", "{\"multifd-channels\": 256}",
               "Parameter 'multifd-channels' expects uint8_t");
    check_args("migrate-set-parameters", "{\"downtime-limit\": -1}",
               "Parameter 'downtime-limit' expects uint64");
    check_args("migrate-set-parameters", "{\"max-bandwidth\": 1.5}",
               "Parameter 'max-bandwidth' expects uint64");
    check_args("migrate-set-parameters", "{\"multifd-channels\": \"4\"}",
               "Parameter 'multifd-channels' expects uint64");
    check_args("migrate-set-parameters",
               "{\"x-ferry-converge\": \"throttle\", \"x-ferry-max-passes\": 5}", NULL);
    check_args("migrate-set-parameters", "{\"x-ferry-converge\": \"faster\"}",
               "Parameter 'x-ferry-converge' does not accept value 'faster'");
    check_args("migrate-set-parameters", "{\"x-ferry-converge\": 1}",
               "Invalid parameter type for 'x-ferry-converge', expected: string");
    check_args("migrate-set-parameters", "{\"x-ferry-max-passes\": -3}",
               "Parameter 'x-ferry-max-passes' expects uint64");
    check_args("migrate-set-parameters", "{\"compress-level\": 1}",
               "Parameter 'compress-level' is unexpected");
    check_args("query-status", "{\"verbose\": true}", "Parameter 'verbose' is unexpected");
    check_args("qmp_capabilities", "{\"enable\": \"oob\"}",
               "Invalid parameter type for 'enable', expected: array");
    check_args("qmp_capabilities", "{\"enable\": [1]}",
               "Invalid parameter type for 'enable[0]', expected: string");
    const char *names[] = {"query-status",
                           "stop",
                           "cont",
                           "system_reset",
                           "quit",
                           "device_add",
                           "device_del",
                           "query-hotpluggable-cpus",
                           "query-memory-devices",
                           "migrate",
                           "migrate-incoming",
                           "query-migrate",
                           "migrate_cancel",
                           "migrate-set-parameters",
                           "query-migrate-parameters"};
    FerryQmpCommands *cmds = ferry_qmp_commands_create();
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        assert_non_null(ferry_qmp_commands_spec(cmds, names[i]));
        assert_false(ferry_qmp_commands_available(cmds, names[i])); /* declared only */
    }
    const char *events[] = {"DEVICE_DELETED", "RESET",     "STOP",          "RESUME",
                            "SHUTDOWN",       "MIGRATION", "MIGRATION_PASS"};
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++)
        assert_non_null(ferry_qmp_commands_event_spec(cmds, events[i]));
    assert_true(ferry_qmp_commands_available(cmds, "query-version"));
    ferry_qmp_commands_destroy(cmds);
}

static void test_registry_rules(void **state)
{
    (void)state;
    FerryQmpCommands *cmds = ferry_qmp_commands_create();
    FerryError err;
    assert_int_equal(ferry_qmp_commands_implement(cmds, "x-nothing", do_echo, NULL, &err), -ENOENT);
    assert_int_equal(ferry_qmp_commands_implement(cmds, "query-version", do_echo, NULL, &err),
                     -EEXIST);
    assert_int_equal(ferry_qmp_commands_implement(cmds, "cont", do_echo, NULL, &err), 0);
    assert_true(ferry_qmp_commands_available(cmds, "cont"));
    assert_int_equal(ferry_qmp_commands_implement(cmds, "cont", do_echo, NULL, &err), -EEXIST);
    assert_int_equal(ferry_qmp_commands_add(cmds, &echo_spec, do_echo, NULL, &err), 0);
    assert_int_equal(ferry_qmp_commands_add(cmds, &echo_spec, do_echo, NULL, &err), -EEXIST);
    static const FerryQmpCommandSpec dup_event = {.name = "STOP"};
    assert_int_equal(ferry_qmp_commands_add_event(cmds, &dup_event, &err), -EEXIST);
    /* Declared without a handler, implemented later by another layer. */
    static const FerryQmpCommandSpec later = {.name = "x-later"};
    assert_int_equal(ferry_qmp_commands_add(cmds, &later, NULL, NULL, &err), 0);
    assert_false(ferry_qmp_commands_available(cmds, "x-later"));
    assert_int_equal(ferry_qmp_commands_implement(cmds, "x-later", do_echo, NULL, &err), 0);
    assert_true(ferry_qmp_commands_available(cmds, "x-later"));
    ferry_qmp_commands_destroy(cmds);

    assert_string_equal(ferry_qmp_error_class_name(FERRY_QMP_ERROR_GENERIC), "GenericError");
    assert_string_equal(ferry_qmp_error_class_name(FERRY_QMP_ERROR_COMMAND_NOT_FOUND),
                        "CommandNotFound");
    assert_string_equal(ferry_qmp_error_class_name(FERRY_QMP_ERROR_DEVICE_NOT_ACTIVE),
                        "DeviceNotActive");
    assert_string_equal(ferry_qmp_error_class_name(FERRY_QMP_ERROR_DEVICE_NOT_FOUND),
                        "DeviceNotFound");
    assert_string_equal(ferry_qmp_error_class_name(FERRY_QMP_ERROR_KVM_MISSING_CAP),
                        "KVMMissingCap");
    assert_string_equal(ferry_qmp_error_class_name(FERRY_QMP_ERROR_MIGRATION_EXPECTED),
                        "MigrationExpected");
    FerryError ferr;
    FerryQmpError qerr;
    ferry_error_set(&ferr, -ENODEV, "device 'd1' has no slot");
    assert_int_equal(ferry_qmp_error_from(&qerr, &ferr), -ENODEV);
    assert_string_equal(qerr.desc, "device 'd1' has no slot");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_cut_gives_the_same_answers),
        cmocka_unit_test(test_small_limit),
        cmocka_unit_test(test_standard_shapes),
        cmocka_unit_test(test_registry_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
