/* QMP server tests through a real unix socket: greeting, negotiation, id echo, malformed input
 * of every kind, argument checks, events, socket mode, several clients, shutdown. */
#include "ferry/control/qmp-client.h"
#include "ferry/control/qmp.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* cmocka.h needs setjmp.h, stdarg.h and stddef.h first. */
#include <cmocka.h>

#define TIMEOUT 5000

/* ---- a fake command set: a counter ------------------------------------------------------- */

typedef struct Fake {
    atomic_long total;
    atomic_int stops;
    FerryQmpServer *srv;
    json_t *last_device_args; /* device_add's arguments, as the handler saw them */
} Fake;

static const FerryQmpArg counter_add_args[] = {
    FERRY_QMP_ARG("n", FERRY_QMP_T_INT),
    FERRY_QMP_ARG_OPT("label", FERRY_QMP_T_STR),
    FERRY_QMP_ARG_END,
};
static const FerryQmpCommandSpec counter_add = {.name = "x-counter-add", .args = counter_add_args};
static const FerryQmpCommandSpec counter_fail = {.name = "x-counter-fail"};
static const FerryQmpArg counter_event_data[] = {
    FERRY_QMP_ARG("value", FERRY_QMP_T_INT),
    FERRY_QMP_ARG_END,
};
static const FerryQmpCommandSpec counter_event = {.name = "X_COUNTER", .args = counter_event_data};

static int do_counter_add(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    Fake *f = ctx;
    (void)err;
    long v = atomic_fetch_add(&f->total, (long)json_integer_value(json_object_get(args, "n"))) +
             (long)json_integer_value(json_object_get(args, "n"));
    /* Emitted from the handler: must reach the client before this command's response. */
    json_t *data = json_pack("{s:I}", "value", (json_int_t)v);
    ferry_qmp_emit(f->srv, "X_COUNTER", data, NULL);
    json_decref(data);
    *ret = json_pack("{s:I}", "value", (json_int_t)v);
    return 0;
}

static int do_counter_fail(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    (void)ctx;
    (void)args;
    (void)ret;
    return ferry_qmp_error_set(err, FERRY_QMP_ERROR_DEVICE_NOT_FOUND, "Device '%s' not found",
                               "counter0");
}

static int do_stop(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    Fake *f = ctx;
    (void)args;
    (void)ret;
    (void)err;
    atomic_fetch_add(&f->stops, 1);
    return ferry_qmp_emit(f->srv, "STOP", NULL, NULL);
}

static int do_device_add(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    Fake *f = ctx;
    (void)ret;
    (void)err;
    json_decref(f->last_device_args);
    f->last_device_args = json_deep_copy(args);
    return 0;
}

typedef struct Fixture {
    char dir[64];
    char path[128];
    FerryQmpCommands *cmds;
    FerryQmpServer *srv;
    Fake fake;
} Fixture;

static Fixture *fixture_new(unsigned max_clients)
{
    Fixture *fx = calloc(1, sizeof(*fx));
    FerryError err;
    assert_non_null(fx);
    strcpy(fx->dir, "/tmp/ferry-qmp-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->path, sizeof(fx->path), "%s/qmp.sock", fx->dir);
    fx->cmds = ferry_qmp_commands_create();
    assert_non_null(fx->cmds);
    assert_int_equal(
        ferry_qmp_commands_add(fx->cmds, &counter_add, do_counter_add, &fx->fake, &err), 0);
    assert_int_equal(
        ferry_qmp_commands_add(fx->cmds, &counter_fail, do_counter_fail, &fx->fake, &err), 0);
    assert_int_equal(ferry_qmp_commands_add_event(fx->cmds, &counter_event, &err), 0);
    assert_int_equal(ferry_qmp_commands_implement(fx->cmds, "stop", do_stop, &fx->fake, &err), 0);
    assert_int_equal(
        ferry_qmp_commands_implement(fx->cmds, "device_add", do_device_add, &fx->fake, &err), 0);
    FerryQmpConfig cfg = {.max_clients = max_clients, .package = "ferry-test"};
    fx->srv = ferry_qmp_server_create(fx->path, fx->cmds, &cfg, &err);
    if (!fx->srv)
        fail_msg("server: %s", err.msg);
    fx->fake.srv = fx->srv;
    assert_int_equal(ferry_qmp_server_start(fx->srv, &err), 0);
    return fx;
}

static void fixture_free(Fixture *fx)
{
    ferry_qmp_server_destroy(fx->srv);
    ferry_qmp_commands_destroy(fx->cmds);
    json_decref(fx->fake.last_device_args);
    rmdir(fx->dir);
    free(fx);
}

static int setup(void **state)
{
    *state = fixture_new(0);
    return 0;
}

static int teardown(void **state)
{
    fixture_free(*state);
    return 0;
}

static FerryQmpClient *connect_raw(Fixture *fx)
{
    FerryError err;
    FerryQmpClient *c = ferry_qmp_client_connect(fx->path, TIMEOUT, &err);
    if (!c)
        fail_msg("connect: %s", err.msg);
    return c;
}

static FerryQmpClient *connect_neg(Fixture *fx)
{
    FerryError err;
    FerryQmpClient *c = connect_raw(fx);
    if (ferry_qmp_client_negotiate(c, TIMEOUT, &err) < 0)
        fail_msg("negotiate: %s", err.msg);
    return c;
}

static void send_str(FerryQmpClient *c, const char *s)
{
    FerryError err;
    assert_int_equal(ferry_qmp_client_send_raw(c, s, strlen(s), &err), 0);
}

static json_t *recv_msg(FerryQmpClient *c)
{
    FerryError err;
    json_t *msg;
    if (ferry_qmp_client_recv(c, TIMEOUT, &msg, &err) < 0)
        fail_msg("recv: %s", err.msg);
    return msg;
}

/* Receive one message and check it is the error (class, desc). Returns nothing; frees it. */
static void expect_error(FerryQmpClient *c, const char *cls, const char *desc)
{
    json_t *msg = recv_msg(c);
    json_t *e = json_object_get(msg, "error");
    if (!e) {
        char *s = json_dumps(msg, 0);
        fail_msg("expected error '%s', got %s", desc, s);
    }
    assert_string_equal(json_string_value(json_object_get(e, "class")), cls);
    const char *got = json_string_value(json_object_get(e, "desc"));
    if (strncmp(got, desc, strlen(desc)))
        fail_msg("desc '%s' does not start with '%s'", got, desc);
    json_decref(msg);
}

static json_t *expect_return(FerryQmpClient *c)
{
    json_t *msg = recv_msg(c);
    json_t *r = json_object_get(msg, "return");
    if (!r) {
        char *s = json_dumps(msg, 0);
        fail_msg("expected return, got %s", s);
    }
    json_incref(r);
    json_decref(msg);
    return r;
}

static long counter_add_via(FerryQmpClient *c, long n)
{
    FerryError err;
    json_t *args = json_pack("{s:I}", "n", (json_int_t)n), *ret;
    if (ferry_qmp_client_execute(c, "x-counter-add", args, &ret, NULL, TIMEOUT, &err) < 0)
        fail_msg("x-counter-add: %s", err.msg);
    json_decref(args);
    long v = (long)json_integer_value(json_object_get(ret, "value"));
    json_decref(ret);
    return v;
}

/* ---- greeting and negotiation ------------------------------------------------------------ */

static void test_greeting(void **state)
{
    Fixture *fx = *state;
    /* Read the raw bytes: the greeting is one line ending in CRLF. */
    FerryQmpClient *c = connect_raw(fx);
    json_t *g = ferry_qmp_client_greeting(c);
    json_t *qmp = json_object_get(g, "QMP");
    assert_non_null(qmp);
    assert_true(json_is_array(json_object_get(qmp, "capabilities")));
    assert_int_equal(json_array_size(json_object_get(qmp, "capabilities")), 0);
    json_t *v = json_object_get(qmp, "version");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "qemu"), "major")), 7);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "qemu"), "minor")), 2);
    assert_string_equal(json_string_value(json_object_get(v, "package")), "ferry-test");
    ferry_qmp_client_close(c);

    /* The line discipline itself. */
    c = connect_raw(fx);
    send_str(c, "{\"execute\": \"qmp_capabilities\"}");
    char buf[256];
    ssize_t n = recv(ferry_qmp_client_fd(c), buf, sizeof(buf) - 1, 0);
    assert_true(n > 2);
    buf[n] = '\0';
    assert_string_equal(buf, "{\"return\": {}}\r\n");
    ferry_qmp_client_close(c);
}

static void test_negotiation(void **state)
{
    Fixture *fx = *state;
    FerryQmpClient *c = connect_raw(fx);
    send_str(c, "{\"execute\": \"query-version\", \"id\": 1}");
    json_t *msg = recv_msg(c);
    assert_string_equal(json_string_value(json_object_get(json_object_get(msg, "error"), "class")),
                        "CommandNotFound");
    assert_string_equal(json_string_value(json_object_get(json_object_get(msg, "error"), "desc")),
                        "Expecting capabilities negotiation with 'qmp_capabilities'");
    assert_int_equal(json_integer_value(json_object_get(msg, "id")), 1);
    json_decref(msg);
    /* Unknown commands get the same answer before negotiation, as in QEMU. */
    send_str(c, "{\"execute\": \"no-such-command\"}");
    expect_error(c, "CommandNotFound", "Expecting capabilities negotiation");
    /* Events are not delivered before negotiation. */
    assert_int_equal(ferry_qmp_emit(fx->srv, "STOP", NULL, NULL), 0);
    send_str(c, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}");
    expect_error(c, "GenericError", "Capability oob not available");
    send_str(c, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"nope\"]}}");
    expect_error(c, "GenericError", "Parameter 'enable[0]' does not accept value 'nope'");
    send_str(c, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": []}}");
    json_decref(expect_return(c));
    send_str(c, "{\"execute\": \"qmp_capabilities\"}");
    expect_error(c, "CommandNotFound",
                 "Capabilities negotiation is already complete, command ignored");
    /* Now in command mode: the STOP emitted earlier was dropped, the next message is ours. */
    send_str(c, "{\"execute\": \"query-version\"}");
    json_t *r = expect_return(c);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "qemu"), "major")), 7);
    json_decref(r);
    ferry_qmp_client_close(c);
}

static void test_id_echo(void **state)
{
    Fixture *fx = *state;
    FerryQmpClient *c = connect_neg(fx);
    const char *ids[] = {"1", "\"abc\"", "{\"a\": [1, 2]}", "null", "-7.5"};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        char req[128];
        json_t *want = json_loads(ids[i], JSON_DECODE_ANY, NULL);
        /* On success... */
        snprintf(req, sizeof(req), "{\"id\": %s, \"execute\": \"query-version\"}", ids[i]);
        send_str(c, req);
        json_t *msg = recv_msg(c);
        assert_non_null(json_object_get(msg, "return"));
        assert_true(json_equal(json_object_get(msg, "id"), want));
        json_decref(msg);
        /* ...and on error, even one found before the command is looked up. */
        snprintf(req, sizeof(req), "{\"execute\": 3, \"id\": %s}", ids[i]);
        send_str(c, req);
        msg = recv_msg(c);
        assert_non_null(json_object_get(msg, "error"));
        assert_true(json_equal(json_object_get(msg, "id"), want));
        json_decref(msg);
        json_decref(want);
    }
    /* Without an id, no id. */
    send_str(c, "{\"execute\": \"query-version\"}");
    json_t *msg = recv_msg(c);
    assert_null(json_object_get(msg, "id"));
    json_decref(msg);
    ferry_qmp_client_close(c);
}

/* ---- malformed input --------------------------------------------------------------------- */

static void test_malformed_requests(void **state)
{
    Fixture *fx = *state;
    FerryQmpClient *c = connect_neg(fx);
    send_str(c, "{ \"execute\": }");
    expect_error(c, "GenericError", "JSON parse error");
    send_str(c, "[1, 2]");
    expect_error(c, "GenericError", "QMP input must be a JSON object");
    send_str(c, "42\n");
    expect_error(c, "GenericError", "QMP input must be a JSON object");
    send_str(c, "\"text\"");
    expect_error(c, "GenericError", "QMP input must be a JSON object");
    send_str(c, "nonsense ");
    expect_error(c, "GenericError", "JSON parse error");
    send_str(c, "}");
    expect_error(c, "GenericError", "JSON parse error, expecting value");
    send_str(c, "{\"execute\": \"query-version\", \"id\": 1, \"id\": 2}");
    expect_error(c, "GenericError", "JSON parse error, duplicate");
    send_str(c, "{\"arguments\": {}}");
    expect_error(c, "GenericError", "QMP input lacks member 'execute'");
    send_str(c, "{\"execute\": [\"stop\"]}");
    expect_error(c, "GenericError", "QMP input member 'execute' must be a string");
    send_str(c, "{\"execute\": \"stop\", \"arguments\": []}");
    expect_error(c, "GenericError", "QMP input member 'arguments' must be an object");
    send_str(c, "{\"execute\": \"stop\", \"foo\": 1}");
    expect_error(c, "GenericError", "QMP input member 'foo' is unexpected");
    /* Out-of-band execution is not offered, so exec-oob is an unknown member (QEMU's answer). */
    send_str(c, "{\"exec-oob\": \"stop\", \"id\": 9}");
    expect_error(c, "GenericError", "QMP input member 'exec-oob' is unexpected");
    assert_int_equal(atomic_load(&fx->fake.stops), 0);
    /* Invalid UTF-8 inside a string. */
    send_str(c, "{\"execute\": \"\xc3\x28\"}");
    expect_error(c, "GenericError", "JSON parse error");
    /* Still serving. */
    assert_int_equal(counter_add_via(c, 5), 5);
    ferry_qmp_client_close(c);
}

static void test_unknown_and_unimplemented_commands(void **state)
{
    Fixture *fx = *state;
    FerryQmpClient *c = connect_neg(fx);
    send_str(c, "{\"execute\": \"frobnicate\", \"id\": \"u\"}");
    expect_error(c, "CommandNotFound", "The command frobnicate has not been found");
    /* Declared in the standard set but not implemented by any layer in this process. */
    send_str(c, "{\"execute\": \"device_del\", \"arguments\": {\"id\": \"d\"}}");
    expect_error(c, "CommandNotFound", "The command device_del has not been found");
    send_str(c, "{\"execute\": \"query-commands\"}");
    json_t *r = expect_return(c);
    bool has_stop = false, has_del = false, has_caps = false, has_counter = false;
    size_t i;
    json_t *e;
    json_array_foreach(r, i, e)
    {
        const char *n = json_string_value(json_object_get(e, "name"));
        has_stop |= !strcmp(n, "stop");
        has_del |= !strcmp(n, "device_del");
        has_caps |= !strcmp(n, "qmp_capabilities");
        has_counter |= !strcmp(n, "x-counter-add");
    }
    json_decref(r);
    assert_true(has_stop && has_caps && has_counter);
    assert_false(has_del);
    /* A handler's error class reaches the client. */
    FerryQmpError qerr;
    FerryError err;
    assert_int_equal(
        ferry_qmp_client_execute(c, "x-counter-fail", NULL, NULL, &qerr, TIMEOUT, &err),
        -EREMOTEIO);
    assert_int_equal(qerr.cls, FERRY_QMP_ERROR_DEVICE_NOT_FOUND);
    assert_string_equal(qerr.desc, "Device 'counter0' not found");
    ferry_qmp_client_close(c);
}

static void test_argument_errors(void **state)
{
    Fixture *fx = *state;
    FerryQmpClient *c = connect_neg(fx);
    send_str(c, "{\"execute\": \"x-counter-add\"}");
    expect_error(c, "GenericError", "Parameter 'n' is missing");
    send_str(c, "{\"execute\": \"x-counter-add\", \"arguments\": {\"n\": \"1\"}}");
    expect_error(c, "GenericError", "Invalid parameter type for 'n', expected: integer");
    send_str(c, "{\"execute\": \"x-counter-add\", \"arguments\": {\"n\": 1.5}}");
    expect_error(c, "GenericError", "Invalid parameter type for 'n', expected: integer");
    send_str(c, "{\"execute\": \"x-counter-add\", \"arguments\": {\"n\": 1, \"label\": 3}}");
    expect_error(c, "GenericError", "Invalid parameter type for 'label', expected: string");
    send_str(c, "{\"execute\": \"x-counter-add\", \"arguments\": {\"n\": 1, \"foo\": true}}");
    expect_error(c, "GenericError", "Parameter 'foo' is unexpected");
    send_str(c, "{\"execute\": \"stop\", \"arguments\": {\"now\": true}}");
    expect_error(c, "GenericError", "Parameter 'now' is unexpected");
    /* Standard shapes: device_add needs a string driver and keeps free-form properties. */
    send_str(c, "{\"execute\": \"device_add\", \"arguments\": {\"id\": \"d\"}}");
    expect_error(c, "GenericError", "Parameter 'driver' is missing");
    send_str(c, "{\"execute\": \"device_add\", \"arguments\": {\"driver\": 1}}");
    expect_error(c, "GenericError", "Invalid parameter type for 'driver', expected: string");
    send_str(c, "{\"execute\": \"device_add\", \"arguments\": {\"driver\": \"ferry-cpu\", "
                "\"id\": \"cpu1\", \"core-id\": 1, \"node\": \"n0\"}}");
    json_decref(expect_return(c));
    assert_int_equal(json_integer_value(json_object_get(fx->fake.last_device_args, "core-id")), 1);
    assert_string_equal(json_string_value(json_object_get(fx->fake.last_device_args, "node")),
                        "n0");
    /* Nothing ran for the refused requests. */
    assert_int_equal(atomic_load(&fx->fake.total), 0);
    assert_int_equal(atomic_load(&fx->fake.stops), 0);
    ferry_qmp_client_close(c);
}

static void test_split_and_batched_writes(void **state)
{
    Fixture *fx = *state;
    FerryQmpClient *c = connect_neg(fx);
    const char *req = "{\"execute\": \"x-counter-add\", \"arguments\": {\"n\": 2}, \"id\": \"s\"}";
    /* One byte per write; the server must wait for the whole object. */
    for (const char *p = req; *p; p++) {
        FerryError err;
        assert_int_equal(ferry_qmp_client_send_raw(c, p, 1, &err), 0);
        usleep(p - req < 5 ? 2000 : 0); /* let the first reads really be partial */
    }
    json_t *ev = recv_msg(c); /* X_COUNTER from the handler comes first */
    assert_string_equal(json_string_value(json_object_get(ev, "event")), "X_COUNTER");
    json_decref(ev);
    json_t *msg = recv_msg(c);
    assert_string_equal(json_string_value(json_object_get(msg, "id")), "s");
    json_decref(msg);
    /* Three requests, no separators, one write: three answers in order. */
    send_str(c, "{\"execute\":\"query-version\",\"id\":1}{\"execute\":\"nope\",\"id\":2}"
                "{'execute':'query-version','id':3}");
    for (int want = 1; want <= 3; want++) {
        msg = recv_msg(c);
        assert_int_equal(json_integer_value(json_object_get(msg, "id")), want);
        assert_true(want == 2 ? json_object_get(msg, "error") != NULL
                              : json_object_get(msg, "return") != NULL);
        json_decref(msg);
    }
    ferry_qmp_client_close(c);
}

static void test_oversized_message(void **state)
{
    Fixture *fx = *state;
    FerryQmpClient *c = connect_neg(fx);
    size_t big = 2u << 20;
    char *buf = malloc(big + 256);
    assert_non_null(buf);
    size_t off = (size_t)snprintf(buf, 128,
                                  "{\"execute\": \"x-counter-add\", \"arguments\": {\"label\": \"");
    memset(buf + off, 'a', big);
    strcpy(buf + off + big, "\", \"n\": 1}}");
    FerryError err;
    assert_int_equal(ferry_qmp_client_send_raw(c, buf, strlen(buf), &err), 0);
    free(buf);
    expect_error(c, "GenericError", "JSON message exceeds the limit of 1048576 bytes");
    /* The oversized command did not run, and the stream is usable again. */
    assert_int_equal(counter_add_via(c, 3), 3);
    /* Nesting past QEMU's limit is refused the same way. */
    size_t depth = 5000;
    buf = malloc(2 * depth + 1);
    memset(buf, '[', depth);
    memset(buf + depth, ']', depth);
    buf[2 * depth] = '\0';
    send_str(c, buf);
    free(buf);
    expect_error(c, "GenericError", "JSON nesting depth limit exceeded");
    assert_int_equal(counter_add_via(c, 1), 4);
    ferry_qmp_client_close(c);
}

static void test_binary_garbage_and_reset(void **state)
{
    Fixture *fx = *state;
    FerryQmpClient *c = connect_neg(fx);
    unsigned char junk[4096];
    unsigned seed = 12345;
    for (size_t i = 0; i < sizeof(junk); i++) {
        seed = seed * 1103515245u + 12345u;
        junk[i] = (unsigned char)(seed >> 16);
    }
    FerryError err;
    assert_int_equal(ferry_qmp_client_send_raw(c, junk, sizeof(junk), &err), 0);
    /* A control byte forces the parser back into a known state (qmp-spec), whatever the junk
     * left open; then a request with an id must be answered. */
    send_str(c, "\x01{\"execute\": \"query-version\", \"id\": \"after-junk\"}");
    int errors = 0;
    for (;;) {
        json_t *msg = recv_msg(c);
        if (json_object_get(msg, "error")) {
            errors++;
            json_decref(msg);
            continue;
        }
        json_t *id = json_object_get(msg, "id");
        if (json_is_string(id) && !strcmp(json_string_value(id), "after-junk")) {
            json_decref(msg);
            break;
        }
        json_decref(msg);
    }
    assert_true(errors >= 1);
    /* A half-sent request abandoned with a control byte. */
    send_str(c, "{\"execute\": \"x-counter-add\", \"argu");
    send_str(c, "\x1b");
    expect_error(c, "GenericError", "JSON parse error, stray '\x1b'");
    send_str(c, "{\"execute\": \"query-version\", \"id\": 5}");
    json_t *msg = recv_msg(c);
    assert_int_equal(json_integer_value(json_object_get(msg, "id")), 5);
    json_decref(msg);
    assert_int_equal(atomic_load(&fx->fake.total), 0);
    ferry_qmp_client_close(c);
}

static void wait_clients(Fixture *fx, unsigned want)
{
    for (int i = 0; i < 500 && ferry_qmp_server_clients(fx->srv) != want; i++)
        usleep(10000);
    assert_int_equal(ferry_qmp_server_clients(fx->srv), want);
}

static void test_eof_mid_object(void **state)
{
    Fixture *fx = *state;
    FerryQmpClient *c = connect_neg(fx);
    send_str(c, "{\"execute\": \"x-counter-add\", \"arguments\": {\"n\": 1");
    ferry_qmp_client_close(c);
    wait_clients(fx, 0);
    /* The half request died with its connection; the next client starts clean. */
    c = connect_neg(fx);
    assert_int_equal(counter_add_via(c, 7), 7);
    /* A client that half-closes after its request still gets the answer. */
    FerryQmpClient *d = connect_neg(fx);
    send_str(d, "{\"execute\": \"query-version\", \"id\": 77}");
    shutdown(ferry_qmp_client_fd(d), SHUT_WR);
    json_t *msg = recv_msg(d);
    assert_int_equal(json_integer_value(json_object_get(msg, "id")), 77);
    json_decref(msg);
    ferry_qmp_client_close(d);
    ferry_qmp_client_close(c);
}

/* ---- events ------------------------------------------------------------------------------ */

typedef struct EmitArgs {
    FerryQmpServer *srv;
    int first, count;
} EmitArgs;

static void *emit_thread(void *opaque)
{
    EmitArgs *a = opaque;
    for (int i = a->first; i < a->first + a->count; i++) {
        json_t *data = json_pack("{s:i}", "pass", i);
        FerryError err;
        int rc;
        while ((rc = ferry_qmp_emit(a->srv, "MIGRATION_PASS", data, &err)) == -ENOBUFS)
            usleep(1000);
        assert_int_equal(rc, 0);
        json_decref(data);
    }
    return NULL;
}

static void test_events_in_order(void **state)
{
    Fixture *fx = *state;
    FerryQmpClient *c = connect_neg(fx);
    FerryQmpClient *other = connect_neg(fx); /* a second concurrent client sees them too */
    struct timespec t0;
    clock_gettime(CLOCK_REALTIME, &t0);
    EmitArgs a = {fx->srv, 1, 2000};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, emit_thread, &a), 0);
    double last = 0;
    for (int i = 1; i <= 2000; i++) {
        json_t *ev;
        FerryError err;
        if (ferry_qmp_client_wait_event(c, NULL, TIMEOUT, &ev, &err) < 0)
            fail_msg("event %d: %s", i, err.msg);
        assert_string_equal(json_string_value(json_object_get(ev, "event")), "MIGRATION_PASS");
        assert_int_equal(json_integer_value(json_object_get(json_object_get(ev, "data"), "pass")),
                         i);
        json_t *ts = json_object_get(ev, "timestamp");
        json_int_t s = json_integer_value(json_object_get(ts, "seconds"));
        json_int_t us = json_integer_value(json_object_get(ts, "microseconds"));
        assert_true(us >= 0 && us < 1000000);
        assert_true(s >= t0.tv_sec && s <= t0.tv_sec + 60);
        double t = (double)s + (double)us / 1e6;
        assert_true(t >= last);
        last = t;
        json_decref(ev);
    }
    pthread_join(th, NULL);
    json_t *ev;
    FerryError err;
    assert_int_equal(ferry_qmp_client_wait_event(other, NULL, TIMEOUT, &ev, &err), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(ev, "data"), "pass")), 1);
    json_decref(ev);
    ferry_qmp_client_close(other);

    /* An event emitted by a handler precedes the handler's response, and execute() keeps it. */
    json_t *ret;
    assert_int_equal(ferry_qmp_client_execute(c, "stop", NULL, &ret, NULL, TIMEOUT, &err), 0);
    json_decref(ret);
    assert_int_equal(ferry_qmp_client_wait_event(c, "STOP", 0, &ev, &err), 0);
    assert_null(json_object_get(ev, "data"));
    json_decref(ev);
    /* Nothing else is pending. */
    assert_int_equal(ferry_qmp_client_wait_event(c, NULL, 100, &ev, &err), -ETIMEDOUT);
    ferry_qmp_client_close(c);
}

static void test_emit_checks_data(void **state)
{
    Fixture *fx = *state;
    FerryError err;
    assert_int_equal(ferry_qmp_emit(fx->srv, "NO_SUCH_EVENT", NULL, &err), -ENOENT);
    json_t *bad = json_pack("{s:s}", "pass", "one");
    assert_int_equal(ferry_qmp_emit(fx->srv, "MIGRATION_PASS", bad, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "Invalid parameter type for 'pass', expected: integer"));
    json_decref(bad);
    bad = json_pack("{s:s}", "status", "flying");
    assert_int_equal(ferry_qmp_emit(fx->srv, "MIGRATION", bad, &err), -EINVAL);
    json_decref(bad);
    assert_int_equal(ferry_qmp_emit(fx->srv, "DEVICE_DELETED", NULL, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "Parameter 'path' is missing"));
    json_t *ok = json_pack("{s:s, s:s}", "device", "cpu1", "path", "/machine/peripheral/cpu1");
    FerryQmpClient *c = connect_neg(fx);
    assert_int_equal(ferry_qmp_emit(fx->srv, "DEVICE_DELETED", ok, &err), 0);
    json_decref(ok);
    json_t *ev;
    assert_int_equal(ferry_qmp_client_wait_event(c, "DEVICE_DELETED", TIMEOUT, &ev, &err), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(ev, "data"), "device")),
                        "cpu1");
    json_decref(ev);
    ferry_qmp_client_close(c);
}

static void test_client_that_never_reads_is_dropped(void **state)
{
    Fixture *fx = *state;
    FerryQmpClient *slow = connect_neg(fx);
    FerryQmpClient *fast = connect_neg(fx);
    /* ~40 MiB of events: far beyond what the socket buffers and the 8 MiB per-client cap hold.
     * The slow client is disconnected instead of the server growing without bound. */
    char pad[1000];
    memset(pad, 'p', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    json_t *data = json_pack("{s:s, s:s}", "device", pad, "path", "/x");
    FerryError err;
    for (int i = 0; i < 40000 && ferry_qmp_server_clients(fx->srv) == 2; i++) {
        int rc;
        while ((rc = ferry_qmp_emit(fx->srv, "DEVICE_DELETED", data, &err)) == -ENOBUFS)
            usleep(1000);
        assert_int_equal(rc, 0);
        /* The other client keeps up. */
        json_t *ev;
        assert_int_equal(ferry_qmp_client_wait_event(fast, "DEVICE_DELETED", TIMEOUT, &ev, &err),
                         0);
        json_decref(ev);
    }
    json_decref(data);
    wait_clients(fx, 1);
    assert_int_equal(counter_add_via(fast, 1), 1);
    ferry_qmp_client_close(slow);
    ferry_qmp_client_close(fast);
}

/* ---- socket, clients, shutdown ----------------------------------------------------------- */

static void test_socket_mode(void **state)
{
    (void)state;
    /* Whatever the umask, the socket is private to its owner. */
    mode_t old = umask(0);
    Fixture *fx = fixture_new(0);
    umask(old);
    struct stat st;
    assert_int_equal(lstat(fx->path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    char path[128];
    strcpy(path, fx->path);
    fixture_free(fx);
    /* Destroy removes it. */
    assert_int_equal(lstat(path, &st), -1);
    assert_int_equal(errno, ENOENT);
}

static void test_refuses_non_socket_path(void **state)
{
    (void)state;
    char dir[] = "/tmp/ferry-qmp-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/not-a-socket", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    FerryQmpCommands *cmds = ferry_qmp_commands_create();
    FerryError err;
    assert_null(ferry_qmp_server_create(path, cmds, NULL, &err));
    assert_int_equal(err.code, -EEXIST);
    assert_int_equal(access(path, F_OK), 0); /* untouched */
    unlink(path);
    rmdir(dir);
    ferry_qmp_commands_destroy(cmds);
}

typedef struct LaterConnect {
    Fixture *fx;
    FerryQmpClient *client;
    atomic_int done;
} LaterConnect;

static void *connect_later(void *p)
{
    LaterConnect *x = p;
    FerryError e;
    x->client = ferry_qmp_client_connect(x->fx->path, TIMEOUT, &e);
    atomic_store(&x->done, 1);
    return NULL;
}

static void test_clients_in_turn(void **state)
{
    (void)state;
    Fixture *fx = fixture_new(1); /* one client at a time, like a QEMU monitor */
    FerryQmpClient *a = connect_neg(fx);
    assert_int_equal(counter_add_via(a, 1), 1);
    /* The second connects (the backlog takes it) but is greeted only when the first leaves. */
    FerryError err;
    pthread_t th;
    LaterConnect ctx = {.fx = fx};
    assert_int_equal(pthread_create(&th, NULL, connect_later, &ctx), 0);
    usleep(200000);
    assert_int_equal(atomic_load(&ctx.done), 0);
    assert_int_equal(counter_add_via(a, 1), 2); /* the first is unaffected */
    ferry_qmp_client_close(a);
    pthread_join(th, NULL);
    FerryQmpClient *b = ctx.client;
    assert_non_null(b);
    assert_int_equal(ferry_qmp_client_negotiate(b, TIMEOUT, &err), 0);
    assert_int_equal(counter_add_via(b, 1), 3);
    ferry_qmp_client_close(b);
    /* And several more, one after the other, each with its own negotiation. */
    for (int i = 0; i < 5; i++) {
        FerryQmpClient *c = connect_raw(fx);
        send_str(c, "{\"execute\": \"x-counter-add\", \"arguments\": {\"n\": 1}}");
        expect_error(c, "CommandNotFound", "Expecting capabilities negotiation");
        ferry_qmp_client_close(c);
    }
    fixture_free(fx);
}

static void test_shutdown_with_client_connected(void **state)
{
    (void)state;
    Fixture *fx = fixture_new(0);
    FerryQmpClient *c = connect_neg(fx);
    FerryQmpClient *raw = connect_raw(fx); /* one still negotiating */
    send_str(raw, "{\"execute\": ");       /* and one mid-request */
    wait_clients(fx, 2);
    char path[128];
    strcpy(path, fx->path);
    fixture_free(fx);
    json_t *msg;
    FerryError err;
    assert_int_equal(ferry_qmp_client_recv(c, TIMEOUT, &msg, &err), -ECONNRESET);
    assert_int_equal(ferry_qmp_client_recv(raw, TIMEOUT, &msg, &err), -ECONNRESET);
    assert_int_not_equal(access(path, F_OK), 0);
    ferry_qmp_client_close(c);
    ferry_qmp_client_close(raw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_greeting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_negotiation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_id_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_and_unimplemented_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_argument_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_and_batched_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_garbage_and_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eof_mid_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emit_checks_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_that_never_reads_is_dropped, setup, teardown),
        cmocka_unit_test(test_socket_mode),
        cmocka_unit_test(test_refuses_non_socket_path),
        cmocka_unit_test(test_clients_in_turn),
        cmocka_unit_test(test_shutdown_with_client_connected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
