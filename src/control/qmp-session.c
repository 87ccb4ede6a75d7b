/* One QMP connection's protocol state: greeting, capabilities negotiation, request checks in
 * QEMU's order and wording, dispatch to the registry, and responses with the request's id. */
#include "qmp-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct FerryQmpSession {
    FerryQmpCommands *cmds;
    FerryQmpWriteFn write;
    void *opaque;
    FerryQmpSplitter splitter;
    bool negotiated;
    int major, minor, micro;
    const char *package;
};

FerryQmpSession *ferry_qmp_session_create(FerryQmpCommands *cmds, const FerryQmpConfig *cfg,
                                          FerryQmpWriteFn write, void *opaque)
{
    FerryQmpSession *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->cmds = cmds;
    s->write = write;
    s->opaque = opaque;
    ferry_qmp_splitter_init(&s->splitter, cfg ? cfg->max_message : 0);
    s->major = 7;
    s->minor = 2;
    s->micro = 0;
    if (cfg && (cfg->version_major || cfg->version_minor || cfg->version_micro)) {
        s->major = cfg->version_major;
        s->minor = cfg->version_minor;
        s->micro = cfg->version_micro;
    }
    s->package = cfg && cfg->package ? cfg->package : "ferry";
    return s;
}

void ferry_qmp_session_destroy(FerryQmpSession *s)
{
    if (!s)
        return;
    ferry_qmp_splitter_release(&s->splitter);
    free(s);
}

bool ferry_qmp_session_negotiated(const FerryQmpSession *s)
{
    return s->negotiated;
}

/* Takes ownership of `msg`. */
static void send_msg(FerryQmpSession *s, json_t *msg)
{
    size_t len;
    char *line = msg ? ferry_qmp_format(msg, &len) : NULL;
    json_decref(msg);
    if (!line) {
        static const char oom[] =
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Out of memory\"}}\r\n";
        s->write(s->opaque, oom, sizeof(oom) - 1);
        return;
    }
    s->write(s->opaque, line, len);
    free(line);
}

/* `id` borrowed, may be NULL. */
static void send_error(FerryQmpSession *s, json_t *id, FerryQmpErrorClass cls, const char *desc)
{
    json_t *msg = json_pack("{s:{s:s, s:s}}", "error", "class", ferry_qmp_error_class_name(cls),
                            "desc", desc);
    if (msg && id)
        json_object_set(msg, "id", id);
    send_msg(s, msg);
}

static json_t *version_info(FerryQmpSession *s)
{
    return json_pack("{s:{s:i, s:i, s:i}, s:s}", "qemu", "micro", s->micro, "minor", s->minor,
                     "major", s->major, "package", s->package);
}

void ferry_qmp_session_greet(FerryQmpSession *s)
{
    /* No capability is offered: out-of-band execution needs a separate I/O thread per
     * monitor, which Ferry does not have (docs/qmp.md). */
    send_msg(s, json_pack("{s:{s:o, s:[]}}", "QMP", "version", version_info(s), "capabilities"));
}

/* Mirrors QEMU's qmp_dispatch_check_obj(): members checked in input order. Returns the command
 * name (borrowed from req) or NULL with err filled. */
static const char *check_request(json_t *req, FerryQmpError *err)
{
    const char *exec_key = NULL, *name = NULL, *key;
    json_t *v;
    json_object_foreach(req, key, v)
    {
        if (!strcmp(key, "execute")) {
            if (!json_is_string(v)) {
                ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC,
                                    "QMP input member '%s' must be a string", key);
                return NULL;
            }
            exec_key = key;
            name = json_string_value(v);
        } else if (!strcmp(key, "arguments")) {
            if (!json_is_object(v)) {
                ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC,
                                    "QMP input member 'arguments' must be an object");
                return NULL;
            }
        } else if (strcmp(key, "id")) {
            /* Includes "exec-oob": without the oob capability QEMU treats it as unknown. */
            ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC, "QMP input member '%s' is unexpected",
                                key);
            return NULL;
        }
    }
    if (!exec_key) {
        ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC, "QMP input lacks member 'execute'");
        return NULL;
    }
    return name;
}

static int run_capabilities(FerryQmpSession *s, json_t *args, FerryQmpError *err)
{
    if (s->negotiated)
        return ferry_qmp_error_set(err, FERRY_QMP_ERROR_COMMAND_NOT_FOUND,
                                   "Capabilities negotiation is already complete, command "
                                   "ignored");
    json_t *enable = json_object_get(args, "enable");
    if (enable && json_array_size(enable) > 0) {
        /* Every element passed the enum check, and no capability is offered. */
        char list[256] = "";
        size_t i, off = 0;
        json_t *e;
        json_array_foreach(enable, i, e)
        {
            int n = snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "",
                             json_string_value(e));
            if (n < 0 || (size_t)n >= sizeof(list) - off)
                break;
            off += (size_t)n;
        }
        return ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC, "Capability %s not available",
                                   list);
    }
    s->negotiated = true;
    return 0;
}

static int run_builtin(FerryQmpSession *s, const char *name, json_t *args, json_t **ret,
                       FerryQmpError *err)
{
    if (!strcmp(name, "qmp_capabilities"))
        return run_capabilities(s, args, err);
    if (!strcmp(name, "query-version"))
        *ret = version_info(s);
    else if (!strcmp(name, "query-commands"))
        *ret = ferry_qmp_commands_list(s->cmds);
    if (!*ret)
        return ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC, "Out of memory");
    return 0;
}

static void handle_request(FerryQmpSession *s, json_t *req)
{
    FerryQmpError err = {.cls = FERRY_QMP_ERROR_GENERIC};
    json_t *id = NULL, *ret = NULL, *args;
    FerryQmpCommandInfo cmd;
    const char *name;
    int rc;

    if (!json_is_object(req)) {
        send_error(s, NULL, FERRY_QMP_ERROR_GENERIC, "QMP input must be a JSON object");
        return;
    }
    id = json_object_get(req, "id");
    name = check_request(req, &err);
    if (!name)
        goto err_send;
    if (!s->negotiated && strcmp(name, "qmp_capabilities")) {
        ferry_qmp_error_set(&err, FERRY_QMP_ERROR_COMMAND_NOT_FOUND,
                            "Expecting capabilities negotiation with 'qmp_capabilities'");
        goto err_send;
    }
    if (ferry_qmp_commands_lookup(s->cmds, name, &cmd) < 0) {
        ferry_qmp_error_set(&err, FERRY_QMP_ERROR_COMMAND_NOT_FOUND,
                            "The command %s has not been found", name);
        goto err_send;
    }
    args = json_object_get(req, "arguments");
    if (ferry_qmp_args_check(cmd.spec, args, &err) < 0)
        goto err_send;
    args = args ? json_incref(args) : json_object();
    if (!args) {
        ferry_qmp_error_set(&err, FERRY_QMP_ERROR_GENERIC, "Out of memory");
        goto err_send;
    }
    err.desc[0] = '\0';
    if (cmd.builtin)
        rc = run_builtin(s, name, args, &ret, &err);
    else
        rc = cmd.fn(cmd.ctx, args, &ret, &err);
    json_decref(args);
    if (rc < 0) {
        json_decref(ret);
        if (!err.desc[0])
            ferry_qmp_error_set(&err, FERRY_QMP_ERROR_GENERIC, "%s failed: %s", name,
                                strerror(-rc));
        goto err_send;
    }
    if (!ret)
        ret = json_object();
    json_t *msg = json_object();
    if (msg) {
        json_object_set_new(msg, "return", ret);
        if (id)
            json_object_set(msg, "id", id);
    } else {
        json_decref(ret);
    }
    send_msg(s, msg);
    return;

err_send:
    send_error(s, id, err.cls, err.desc);
}

static void on_value(void *opaque, const char *text, size_t len, const char *error)
{
    FerryQmpSession *s = opaque;
    if (!text) {
        send_error(s, NULL, FERRY_QMP_ERROR_GENERIC, error);
        return;
    }
    json_error_t jerr;
    /* Duplicate keys are refused, as QEMU's parser does ("duplicate key"). */
    json_t *req = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!req) {
        char desc[FERRY_ERROR_MSG_MAX];
        snprintf(desc, sizeof(desc), "JSON parse error, %s", jerr.text);
        send_error(s, NULL, FERRY_QMP_ERROR_GENERIC, desc);
        return;
    }
    handle_request(s, req);
    json_decref(req);
}

void ferry_qmp_session_feed(FerryQmpSession *s, const void *data, size_t len)
{
    ferry_qmp_splitter_feed(&s->splitter, data, len, on_value, s);
}
