/* Command registry, argument checking and the standard Ferry command set (DESIGN §6).
 * Specs follow QEMU 7.2's QAPI schema so that existing QMP clients work unchanged. */
#include "qmp-int.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- Errors ---- */

static const char *const error_class_names[] = {
    [FERRY_QMP_ERROR_GENERIC] = "GenericError",
    [FERRY_QMP_ERROR_COMMAND_NOT_FOUND] = "CommandNotFound",
    [FERRY_QMP_ERROR_DEVICE_NOT_ACTIVE] = "DeviceNotActive",
    [FERRY_QMP_ERROR_DEVICE_NOT_FOUND] = "DeviceNotFound",
    [FERRY_QMP_ERROR_KVM_MISSING_CAP] = "KVMMissingCap",
    [FERRY_QMP_ERROR_MIGRATION_EXPECTED] = "MigrationExpected",
};

const char *ferry_qmp_error_class_name(FerryQmpErrorClass cls)
{
    if ((unsigned)cls >= sizeof(error_class_names) / sizeof(error_class_names[0]))
        return "GenericError";
    return error_class_names[cls];
}

int ferry_qmp_error_set(FerryQmpError *err, FerryQmpErrorClass cls, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->cls = cls;
        vsnprintf(err->desc, sizeof(err->desc), fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

int ferry_qmp_error_from(FerryQmpError *err, const FerryError *ferr)
{
    ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC, "%s", ferr->msg);
    return ferr->code < 0 ? ferr->code : -EINVAL;
}

/* ---- Output helpers ---- */

char *ferry_qmp_format(json_t *msg, size_t *len)
{
    /* QMP output is ASCII (qmp-spec), one message per line, ending in CRLF. */
    char *text = json_dumps(msg, JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
    if (!text)
        return NULL;
    size_t n = strlen(text);
    char *line = realloc(text, n + 3);
    if (!line) {
        free(text);
        return NULL;
    }
    memcpy(line + n, "\r\n", 3);
    *len = n + 2;
    return line;
}

json_t *ferry_qmp_timestamp(void)
{
    struct timespec ts;
    json_int_t s = -1, us = -1;
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0) {
        s = (json_int_t)ts.tv_sec;
        us = (json_int_t)(ts.tv_nsec / 1000);
    }
    return json_pack("{s:I, s:I}", "seconds", s, "microseconds", us);
}

/* ---- Argument checking ---- */

static const char *type_name(FerryQmpType t)
{
    switch (t) {
    case FERRY_QMP_T_STR:
        return "string";
    case FERRY_QMP_T_BOOL:
        return "boolean";
    case FERRY_QMP_T_INT:
    case FERRY_QMP_T_UINT64:
    case FERRY_QMP_T_UINT8:
        return "integer";
    case FERRY_QMP_T_NUMBER:
        return "number";
    case FERRY_QMP_T_OBJECT:
        return "object";
    case FERRY_QMP_T_ARRAY:
        return "array";
    case FERRY_QMP_T_ANY:
        break;
    }
    return "any";
}

static int type_error(FerryQmpError *err, const char *path, FerryQmpType t)
{
    return ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC,
                               "Invalid parameter type for '%s', expected: %s", path, type_name(t));
}

static int check_value(const char *path, FerryQmpType t, const char *const *values, json_t *v,
                       FerryQmpType elem, FerryQmpError *err)
{
    switch (t) {
    case FERRY_QMP_T_ANY:
        return 0;
    case FERRY_QMP_T_STR:
        if (!json_is_string(v))
            return type_error(err, path, t);
        if (values) {
            for (const char *const *p = values; *p; p++)
                if (!strcmp(*p, json_string_value(v)))
                    return 0;
            return ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC,
                                       "Parameter '%s' does not accept value '%s'", path,
                                       json_string_value(v));
        }
        return 0;
    case FERRY_QMP_T_BOOL:
        return json_is_boolean(v) ? 0 : type_error(err, path, t);
    case FERRY_QMP_T_INT:
        return json_is_integer(v) ? 0 : type_error(err, path, t);
    case FERRY_QMP_T_UINT64:
    case FERRY_QMP_T_UINT8:
        /* QEMU's unsigned visitor words type and range errors alike, naming uint64; the
         * narrower types then check their range. QEMU wraps negative values into uint64
         * (for backward compatibility); Ferry refuses them. */
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC,
                                       "Parameter '%s' expects uint64", path);
        if (t == FERRY_QMP_T_UINT8 && json_integer_value(v) > UINT8_MAX)
            return ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC,
                                       "Parameter '%s' expects uint8_t", path);
        return 0;
    case FERRY_QMP_T_NUMBER:
        return json_is_number(v) ? 0 : type_error(err, path, t);
    case FERRY_QMP_T_OBJECT:
        return json_is_object(v) ? 0 : type_error(err, path, t);
    case FERRY_QMP_T_ARRAY: {
        if (!json_is_array(v))
            return type_error(err, path, t);
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            char epath[256];
            snprintf(epath, sizeof(epath), "%s[%zu]", path, i);
            int rc = check_value(epath, elem, values, e, FERRY_QMP_T_ANY, err);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    }
    return 0;
}

int ferry_qmp_args_check(const FerryQmpCommandSpec *spec, json_t *args, FerryQmpError *err)
{
    if (args && !json_is_object(args))
        return ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC,
                                   "QMP input member 'arguments' must be an object");
    /* Declared members first, in table order, as QEMU's generated visitors do. */
    for (const FerryQmpArg *a = spec->args; a && a->name; a++) {
        json_t *v = args ? json_object_get(args, a->name) : NULL;
        if (!v) {
            if (a->optional)
                continue;
            return ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC, "Parameter '%s' is missing",
                                       a->name);
        }
        int rc = check_value(a->name, a->type, a->values, v, a->elem, err);
        if (rc < 0)
            return rc;
    }
    if (!args || spec->extra_args)
        return 0;
    const char *key;
    json_t *v;
    json_object_foreach(args, key, v)
    {
        bool known = false;
        for (const FerryQmpArg *a = spec->args; a && a->name && !known; a++)
            known = !strcmp(a->name, key);
        if (!known)
            return ferry_qmp_error_set(err, FERRY_QMP_ERROR_GENERIC, "Parameter '%s' is unexpected",
                                       key);
    }
    return 0;
}

/* ---- Standard command set ---- */

static const char *const qmp_capability_values[] = {"oob", NULL};

static const FerryQmpArg qmp_capabilities_args[] = {
    {.name = "enable",
     .type = FERRY_QMP_T_ARRAY,
     .optional = true,
     .elem = FERRY_QMP_T_STR,
     .values = qmp_capability_values},
    FERRY_QMP_ARG_END,
};

/* Handled by the session itself (they need the session or registry state). */
static const FerryQmpCommandSpec builtin_commands[] = {
    {.name = "qmp_capabilities", .args = qmp_capabilities_args},
    {.name = "query-version"},
    {.name = "query-commands"},
    {.name = NULL},
};

static const FerryQmpArg device_add_args[] = {
    FERRY_QMP_ARG("driver", FERRY_QMP_T_STR),
    FERRY_QMP_ARG_OPT("bus", FERRY_QMP_T_STR),
    FERRY_QMP_ARG_OPT("id", FERRY_QMP_T_STR),
    FERRY_QMP_ARG_END,
};

static const FerryQmpArg device_del_args[] = {
    FERRY_QMP_ARG("id", FERRY_QMP_T_STR),
    FERRY_QMP_ARG_END,
};

static const FerryQmpArg migrate_args[] = {
    FERRY_QMP_ARG("uri", FERRY_QMP_T_STR),         FERRY_QMP_ARG_OPT("blk", FERRY_QMP_T_BOOL),
    FERRY_QMP_ARG_OPT("inc", FERRY_QMP_T_BOOL),    FERRY_QMP_ARG_OPT("detach", FERRY_QMP_T_BOOL),
    FERRY_QMP_ARG_OPT("resume", FERRY_QMP_T_BOOL), FERRY_QMP_ARG_END,
};

static const FerryQmpArg migrate_incoming_args[] = {
    FERRY_QMP_ARG("uri", FERRY_QMP_T_STR),
    FERRY_QMP_ARG_END,
};

/* The subset of QEMU's MigrateSetParameters that Ferry honours; other QEMU parameters are
 * refused as unexpected rather than silently ignored. */
static const char *const converge_values[] = {"switchover", "throttle", NULL};
static const FerryQmpArg migrate_set_parameters_args[] = {
    FERRY_QMP_ARG_OPT("downtime-limit", FERRY_QMP_T_UINT64), /* milliseconds */
    FERRY_QMP_ARG_OPT("max-bandwidth", FERRY_QMP_T_UINT64),  /* bytes per second */
    FERRY_QMP_ARG_OPT("multifd-channels", FERRY_QMP_T_UINT8),
    /* Ferry's non-convergence policy (docs/migration.md); QEMU has no such parameter. */
    {.name = "x-ferry-converge",
     .type = FERRY_QMP_T_STR,
     .optional = true,
     .values = converge_values},
    FERRY_QMP_ARG_OPT("x-ferry-max-passes", FERRY_QMP_T_UINT64), /* 2..255, checked on set */
    /* Ferry test hook (S14): none|optional|mandatory, docs/migration.md */
    FERRY_QMP_ARG_OPT("x-ferry-test-subsection", FERRY_QMP_T_STR),
    /* Ferry test hook (S13): destination loads as a build without subsections */
    FERRY_QMP_ARG_OPT("x-ferry-test-no-subsections", FERRY_QMP_T_BOOL),
    FERRY_QMP_ARG_END,
};

const FerryQmpCommandSpec ferry_qmp_std_commands[] = {
    {.name = "query-status"},
    {.name = "stop"},
    {.name = "cont"},
    {.name = "system_reset"},
    {.name = "quit"},
    {.name = "device_add", .args = device_add_args, .extra_args = true},
    {.name = "device_del", .args = device_del_args},
    {.name = "query-hotpluggable-cpus"},
    {.name = "query-memory-devices"},
    {.name = "migrate", .args = migrate_args},
    {.name = "migrate-incoming", .args = migrate_incoming_args},
    {.name = "query-migrate"},
    {.name = "migrate_cancel"},
    {.name = "migrate-set-parameters", .args = migrate_set_parameters_args},
    {.name = "query-migrate-parameters"},
    {.name = NULL},
};

/* QEMU's ShutdownCause and MigrationStatus enums (qapi/run-state.json, qapi/migration.json). */
static const char *const shutdown_cause_values[] = {
    "none",        "host-error",      "host-qmp-quit",  "host-qmp-system-reset",
    "host-signal", "host-ui",         "guest-shutdown", "guest-reset",
    "guest-panic", "subsystem-reset", "snapshot-load",  NULL,
};

static const char *const migration_status_values[] = {
    "none",
    "setup",
    "cancelling",
    "cancelled",
    "active",
    "postcopy-active",
    "postcopy-paused",
    "postcopy-recover",
    "completed",
    "failed",
    "colo",
    "pre-switchover",
    "device",
    "wait-unplug",
    NULL,
};

static const FerryQmpArg device_deleted_data[] = {
    FERRY_QMP_ARG_OPT("device", FERRY_QMP_T_STR),
    FERRY_QMP_ARG("path", FERRY_QMP_T_STR),
    FERRY_QMP_ARG_END,
};

static const FerryQmpArg shutdown_data[] = {
    FERRY_QMP_ARG("guest", FERRY_QMP_T_BOOL),
    {.name = "reason", .type = FERRY_QMP_T_STR, .values = shutdown_cause_values},
    FERRY_QMP_ARG_END,
};

static const FerryQmpArg migration_data[] = {
    {.name = "status", .type = FERRY_QMP_T_STR, .values = migration_status_values},
    FERRY_QMP_ARG_END,
};

static const FerryQmpArg migration_pass_data[] = {
    FERRY_QMP_ARG("pass", FERRY_QMP_T_INT),
    FERRY_QMP_ARG_END,
};

const FerryQmpCommandSpec ferry_qmp_std_events[] = {
    {.name = "DEVICE_DELETED", .args = device_deleted_data},
    {.name = "RESET", .args = shutdown_data},
    {.name = "STOP"},
    {.name = "RESUME"},
    {.name = "SHUTDOWN", .args = shutdown_data},
    {.name = "MIGRATION", .args = migration_data},
    {.name = "MIGRATION_PASS", .args = migration_pass_data},
    {.name = NULL},
};

/* ---- Registry ---- */

typedef struct CommandEntry {
    const FerryQmpCommandSpec *spec;
    FerryQmpHandler fn; /* NULL: declared, not implemented (CommandNotFound) */
    void *ctx;
    bool builtin;
} CommandEntry;

struct FerryQmpCommands {
    pthread_mutex_t lock;
    CommandEntry *cmds;
    size_t ncmds, capcmds;
    const FerryQmpCommandSpec **events;
    size_t nevents, capevents;
};

static CommandEntry *find_command(FerryQmpCommands *r, const char *name)
{
    for (size_t i = 0; i < r->ncmds; i++)
        if (!strcmp(r->cmds[i].spec->name, name))
            return &r->cmds[i];
    return NULL;
}

static const FerryQmpCommandSpec *find_event(FerryQmpCommands *r, const char *name)
{
    for (size_t i = 0; i < r->nevents; i++)
        if (!strcmp(r->events[i]->name, name))
            return r->events[i];
    return NULL;
}

static int push_command(FerryQmpCommands *r, const FerryQmpCommandSpec *spec, FerryQmpHandler fn,
                        void *ctx, bool builtin)
{
    if (r->ncmds == r->capcmds) {
        size_t cap = r->capcmds ? r->capcmds * 2 : 32;
        CommandEntry *n = realloc(r->cmds, cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        r->cmds = n;
        r->capcmds = cap;
    }
    r->cmds[r->ncmds++] = (CommandEntry){spec, fn, ctx, builtin};
    return 0;
}

static int push_event(FerryQmpCommands *r, const FerryQmpCommandSpec *spec)
{
    if (r->nevents == r->capevents) {
        size_t cap = r->capevents ? r->capevents * 2 : 16;
        const FerryQmpCommandSpec **n = realloc(r->events, cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        r->events = n;
        r->capevents = cap;
    }
    r->events[r->nevents++] = spec;
    return 0;
}

FerryQmpCommands *ferry_qmp_commands_create(void)
{
    FerryQmpCommands *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    pthread_mutex_init(&r->lock, NULL);
    for (const FerryQmpCommandSpec *s = builtin_commands; s->name; s++)
        if (push_command(r, s, NULL, NULL, true) < 0)
            goto err_destroy;
    for (const FerryQmpCommandSpec *s = ferry_qmp_std_commands; s->name; s++)
        if (push_command(r, s, NULL, NULL, false) < 0)
            goto err_destroy;
    for (const FerryQmpCommandSpec *s = ferry_qmp_std_events; s->name; s++)
        if (push_event(r, s) < 0)
            goto err_destroy;
    return r;

err_destroy:
    ferry_qmp_commands_destroy(r);
    return NULL;
}

void ferry_qmp_commands_destroy(FerryQmpCommands *r)
{
    if (!r)
        return;
    pthread_mutex_destroy(&r->lock);
    free(r->cmds);
    free(r->events);
    free(r);
}

int ferry_qmp_commands_implement(FerryQmpCommands *r, const char *name, FerryQmpHandler fn,
                                 void *ctx, FerryError *err)
{
    int rc = 0;
    pthread_mutex_lock(&r->lock);
    CommandEntry *e = find_command(r, name);
    if (!e)
        rc = ferry_error_set(err, -ENOENT, "QMP command '%s' is not declared", name);
    else if (e->builtin || e->fn)
        rc = ferry_error_set(err, -EEXIST, "QMP command '%s' already has a handler", name);
    else if (!fn)
        rc = ferry_error_set(err, -EINVAL, "QMP command '%s': NULL handler", name);
    else {
        e->fn = fn;
        e->ctx = ctx;
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

int ferry_qmp_commands_add(FerryQmpCommands *r, const FerryQmpCommandSpec *spec, FerryQmpHandler fn,
                           void *ctx, FerryError *err)
{
    int rc;
    if (!spec || !spec->name || !spec->name[0])
        return ferry_error_set(err, -EINVAL, "QMP command spec without a name");
    pthread_mutex_lock(&r->lock);
    if (find_command(r, spec->name))
        rc = ferry_error_set(err, -EEXIST, "QMP command '%s' is already declared", spec->name);
    else if ((rc = push_command(r, spec, fn, ctx, false)) < 0)
        ferry_error_set(err, rc, "QMP command '%s': out of memory", spec->name);
    pthread_mutex_unlock(&r->lock);
    return rc;
}

int ferry_qmp_commands_add_event(FerryQmpCommands *r, const FerryQmpCommandSpec *spec,
                                 FerryError *err)
{
    int rc;
    if (!spec || !spec->name || !spec->name[0])
        return ferry_error_set(err, -EINVAL, "QMP event spec without a name");
    pthread_mutex_lock(&r->lock);
    if (find_event(r, spec->name))
        rc = ferry_error_set(err, -EEXIST, "QMP event '%s' is already declared", spec->name);
    else if ((rc = push_event(r, spec)) < 0)
        ferry_error_set(err, rc, "QMP event '%s': out of memory", spec->name);
    pthread_mutex_unlock(&r->lock);
    return rc;
}

const FerryQmpCommandSpec *ferry_qmp_commands_spec(FerryQmpCommands *r, const char *name)
{
    pthread_mutex_lock(&r->lock);
    CommandEntry *e = find_command(r, name);
    const FerryQmpCommandSpec *s = e ? e->spec : NULL;
    pthread_mutex_unlock(&r->lock);
    return s;
}

const FerryQmpCommandSpec *ferry_qmp_commands_event_spec(FerryQmpCommands *r, const char *name)
{
    pthread_mutex_lock(&r->lock);
    const FerryQmpCommandSpec *s = find_event(r, name);
    pthread_mutex_unlock(&r->lock);
    return s;
}

bool ferry_qmp_commands_available(FerryQmpCommands *r, const char *name)
{
    pthread_mutex_lock(&r->lock);
    CommandEntry *e = find_command(r, name);
    bool ok = e && (e->builtin || e->fn);
    pthread_mutex_unlock(&r->lock);
    return ok;
}

int ferry_qmp_commands_lookup(FerryQmpCommands *r, const char *name, FerryQmpCommandInfo *info)
{
    pthread_mutex_lock(&r->lock);
    CommandEntry *e = find_command(r, name);
    int rc = -ENOENT;
    if (e && (e->builtin || e->fn)) {
        *info = (FerryQmpCommandInfo){e->spec, e->fn, e->ctx, e->builtin};
        rc = 0;
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

json_t *ferry_qmp_commands_list(FerryQmpCommands *r)
{
    json_t *list = json_array();
    if (!list)
        return NULL;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->ncmds; i++)
        if (r->cmds[i].builtin || r->cmds[i].fn)
            json_array_append_new(list, json_pack("{s:s}", "name", r->cmds[i].spec->name));
    pthread_mutex_unlock(&r->lock);
    return list;
}
