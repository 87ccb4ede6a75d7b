/* libFuzzer harness for the QMP input path: splitter, JSON parsing, request checks, argument
 * checks and dispatch, fed straight into a session (no socket). Every answer must be one
 * well-formed JSON object line, and the session must never crash or leak. */
#include "ferry/control/qmp.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const FerryQmpArg echo_args[] = {
    FERRY_QMP_ARG("s", FERRY_QMP_T_STR),
    FERRY_QMP_ARG_OPT("n", FERRY_QMP_T_UINT8),
    {.name = "l", .type = FERRY_QMP_T_ARRAY, .optional = true, .elem = FERRY_QMP_T_NUMBER},
    FERRY_QMP_ARG_END,
};
static const FerryQmpCommandSpec echo_spec = {.name = "x-echo", .args = echo_args};

static int do_echo(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    (void)ctx;
    (void)err;
    *ret = json_deep_copy(args);
    return 0;
}

static int do_fail(void *ctx, json_t *args, json_t **ret, FerryQmpError *err)
{
    (void)ctx;
    (void)ret;
    return ferry_qmp_error_set(err, FERRY_QMP_ERROR_DEVICE_NOT_FOUND, "Device '%s' not found",
                               json_string_value(json_object_get(args, "id")));
}

/* Each write is exactly one message line: check it. */
static void check_write(void *opaque, const char *data, size_t len)
{
    (void)opaque;
    if (len < 4 || data[len - 2] != '\r' || data[len - 1] != '\n')
        abort();
    json_error_t jerr;
    json_t *msg = json_loadb(data, len - 2, 0, &jerr);
    if (!json_is_object(msg))
        abort();
    if (!json_object_get(msg, "return") && !json_object_get(msg, "QMP")) {
        json_t *e = json_object_get(msg, "error");
        if (!json_is_string(json_object_get(e, "class")) ||
            !json_is_string(json_object_get(e, "desc")))
            abort();
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)data[i] >= 0x80) /* QMP output is ASCII */
            abort();
    json_decref(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FerryQmpCommands *cmds;
    if (!cmds) {
        cmds = ferry_qmp_commands_create();
        ferry_qmp_commands_add(cmds, &echo_spec, do_echo, NULL, NULL);
        ferry_qmp_commands_implement(cmds, "device_add", do_echo, NULL, NULL);
        ferry_qmp_commands_implement(cmds, "device_del", do_fail, NULL, NULL);
        ferry_qmp_commands_implement(cmds, "migrate-set-parameters", do_echo, NULL, NULL);
    }
    if (size < 1)
        return 0;
    /* First byte: bit 0 negotiates first (reach the commands), bits 1-7 the chunk size, so
     * splits across feeds are explored; a small message limit makes overflow reachable. */
    uint8_t ctl = data[0];
    data++;
    size--;
    FerryQmpConfig cfg = {.max_message = 4096};
    FerryQmpSession *s = ferry_qmp_session_create(cmds, &cfg, check_write, NULL);
    ferry_qmp_session_greet(s);
    if (ctl & 1) {
        static const char neg[] = "{\"execute\": \"qmp_capabilities\"}";
        ferry_qmp_session_feed(s, neg, sizeof(neg) - 1);
    }
    size_t chunk = (ctl >> 1) ? (ctl >> 1) : size;
    for (size_t off = 0; off < size; off += chunk)
        ferry_qmp_session_feed(s, data + off, size - off < chunk ? size - off : chunk);
    ferry_qmp_session_destroy(s);
    return 0;
}
