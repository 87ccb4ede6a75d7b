/* QMP-compatible control server: command registry with typed argument specs, per-connection
 * protocol sessions (byte stream in, JSON lines out), and a unix-socket server with events.
 *
 * Layers register the commands they implement on a FerryQmpCommands registry; the standard
 * Ferry command set (DESIGN §6) is pre-declared with QEMU's argument shapes, so an implementing
 * layer supplies only a handler (ferry_qmp_commands_implement). docs/qmp.md describes the wire
 * behaviour, threading model and limits. */
#ifndef FERRY_CONTROL_QMP_H
#define FERRY_CONTROL_QMP_H

#include "ferry/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* ---- Errors sent to clients ------------------------------------------------------------- */

/* QEMU's QapiErrorClass values (qapi/error.json), in QEMU's order. MigrationExpected was dropped
 * by QEMU long ago; it is kept for old clients that still match on it. */
typedef enum FerryQmpErrorClass {
    FERRY_QMP_ERROR_GENERIC = 0,       /* "GenericError" */
    FERRY_QMP_ERROR_COMMAND_NOT_FOUND, /* "CommandNotFound" */
    FERRY_QMP_ERROR_DEVICE_NOT_ACTIVE, /* "DeviceNotActive" */
    FERRY_QMP_ERROR_DEVICE_NOT_FOUND,  /* "DeviceNotFound" */
    FERRY_QMP_ERROR_KVM_MISSING_CAP,   /* "KVMMissingCap" */
    FERRY_QMP_ERROR_MIGRATION_EXPECTED /* "MigrationExpected" */
} FerryQmpErrorClass;

/* A QMP error as a handler reports it: a value type on the caller's stack, like FerryError. */
typedef struct FerryQmpError {
    FerryQmpErrorClass cls;
    char desc[FERRY_ERROR_MSG_MAX];
} FerryQmpError;

/* The wire name of `cls` ("GenericError", ...). Borrowed static string. */
const char *ferry_qmp_error_class_name(FerryQmpErrorClass cls);

/* Record an error; returns -EINVAL so a handler can write `return ferry_qmp_error_set(...)`.
 * `err` may be NULL. */
int ferry_qmp_error_set(FerryQmpError *err, FerryQmpErrorClass cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Turn a layer's FerryError into a GenericError with the same message; returns ferr->code
 * (or -EINVAL when the code is unset). */
int ferry_qmp_error_from(FerryQmpError *err, const FerryError *ferr);

/* ---- Argument specs ---------------------------------------------------------------------- */

/* Argument types. The wire checks follow QEMU's input visitor: an integer type rejects
 * reals and out-of-range values; NUMBER accepts integers too. */
typedef enum FerryQmpType {
    FERRY_QMP_T_ANY = 0, /* any JSON value, unchecked */
    FERRY_QMP_T_STR,     /* string; restricted to `values` when given (a QAPI enum) */
    FERRY_QMP_T_BOOL,
    FERRY_QMP_T_INT,    /* int64 */
    FERRY_QMP_T_UINT64, /* 0..INT64_MAX (jansson's integer range) */
    FERRY_QMP_T_UINT8,
    FERRY_QMP_T_NUMBER, /* real or integer */
    FERRY_QMP_T_OBJECT, /* any object, members unchecked */
    FERRY_QMP_T_ARRAY,  /* elements checked against `elem` (and `values`) */
} FerryQmpType;

/* One member of a command's arguments or of an event's data. */
typedef struct FerryQmpArg {
    const char *name; /* NULL ends a table */
    FerryQmpType type;
    bool optional;
    FerryQmpType elem;         /* FERRY_QMP_T_ARRAY: type of every element */
    const char *const *values; /* FERRY_QMP_T_STR (or array of it): NULL-terminated enum */
} FerryQmpArg;

/* clang-format off */
#define FERRY_QMP_ARG(n, t)     { .name = (n), .type = (t) }
#define FERRY_QMP_ARG_OPT(n, t) { .name = (n), .type = (t), .optional = true }
#define FERRY_QMP_ARG_END       { .name = NULL }
/* clang-format on */

/* A command (or event) declaration. Tables and strings are borrowed and must outlive every
 * registry they are added to (static tables in practice). */
typedef struct FerryQmpCommandSpec {
    const char *name;
    const FerryQmpArg *args; /* NULL or terminated by FERRY_QMP_ARG_END */
    /* Unknown members are passed to the handler instead of being refused: device_add's free-form
     * device properties. Declared members are still type-checked. */
    bool extra_args;
} FerryQmpCommandSpec;

/* Check `args` (an object; NULL means {}) against `spec` in QEMU's order: declared members in
 * table order (missing, then type), then unexpected members. Returns 0, or -EINVAL with a
 * QEMU-worded GenericError ("Parameter 'id' is missing", "Invalid parameter type for 'id',
 * expected: string", "Parameter 'foo' is unexpected"). */
int ferry_qmp_args_check(const FerryQmpCommandSpec *spec, json_t *args, FerryQmpError *err);

/* ---- Command registry -------------------------------------------------------------------- */

/* A command handler, called on the server thread (docs/qmp.md "Threading").
 * `args` is borrowed, already checked against the command's spec, and always an object.
 * On success return 0 and optionally store a new reference in *ret (the server takes
 * ownership; leaving it NULL answers {}). On failure return a negative errno and fill `err`.
 * A handler may call ferry_qmp_emit(); events it emits are sent before its response. */
typedef int (*FerryQmpHandler)(void *ctx, json_t *args, json_t **ret, FerryQmpError *err);

typedef struct FerryQmpCommands FerryQmpCommands;

/* A registry holding the built-in commands (qmp_capabilities, query-version, query-commands),
 * the standard Ferry command set declared but not implemented, and the standard events.
 * Thread-safe. Caller frees with ferry_qmp_commands_destroy. */
FerryQmpCommands *ferry_qmp_commands_create(void);
void ferry_qmp_commands_destroy(FerryQmpCommands *cmds);

/* Supply the handler of a declared command (standard set or previously declared). -ENOENT if
 * `name` is not declared, -EEXIST if it already has a handler or is built in. `ctx` borrowed. */
int ferry_qmp_commands_implement(FerryQmpCommands *cmds, const char *name, FerryQmpHandler fn,
                                 void *ctx, FerryError *err);

/* Declare a new command and (if fn is not NULL) implement it. -EEXIST if the name is taken. */
int ferry_qmp_commands_add(FerryQmpCommands *cmds, const FerryQmpCommandSpec *spec,
                           FerryQmpHandler fn, void *ctx, FerryError *err);

/* Declare an event and the shape of its data (-EEXIST if declared). */
int ferry_qmp_commands_add_event(FerryQmpCommands *cmds, const FerryQmpCommandSpec *spec,
                                 FerryError *err);

/* Declared spec of a command or event; NULL when unknown. Borrowed. */
const FerryQmpCommandSpec *ferry_qmp_commands_spec(FerryQmpCommands *cmds, const char *name);
const FerryQmpCommandSpec *ferry_qmp_commands_event_spec(FerryQmpCommands *cmds, const char *name);

/* Whether a command can be executed (built in, or declared and implemented). */
bool ferry_qmp_commands_available(FerryQmpCommands *cmds, const char *name);

/* The standard Ferry command set and events (DESIGN §6), with QEMU 7.2's argument shapes.
 * NULL-name-terminated arrays; borrowed static storage. */
extern const FerryQmpCommandSpec ferry_qmp_std_commands[];
extern const FerryQmpCommandSpec ferry_qmp_std_events[];

/* ---- Sessions: one client connection's protocol state, without any socket --------------- */

#define FERRY_QMP_DEFAULT_MAX_MESSAGE (1u << 20) /* bytes of one incoming JSON value */
#define FERRY_QMP_DEFAULT_MAX_CLIENTS 4u
#define FERRY_QMP_MAX_NESTING         1024 /* QEMU's MAX_NESTING */

/* Zero-initialise and set what you need; zero fields take the defaults. */
typedef struct FerryQmpConfig {
    size_t max_message;   /* 0: FERRY_QMP_DEFAULT_MAX_MESSAGE */
    unsigned max_clients; /* 0: FERRY_QMP_DEFAULT_MAX_CLIENTS (server only) */
    /* Version reported in the greeting and by query-version. Clients (libvirt) gate features
     * on the QEMU version, so the default is the QEMU release whose QMP shapes Ferry follows:
     * 7.2.0. The package string is where Ferry names itself: the owner passes
     * "ferry-" FERRY_VERSION (the library has no build-time version of its own). */
    int version_major, version_minor, version_micro; /* all 0: 7.2.0 */
    const char *package;                             /* NULL: "ferry" */
} FerryQmpConfig;

/* Receives the session's output: whole messages, each one JSON object + "\r\n". */
typedef void (*FerryQmpWriteFn)(void *opaque, const char *data, size_t len);

typedef struct FerryQmpSession FerryQmpSession;

/* A session in capabilities-negotiation mode. `cmds` and `cfg` (may be NULL) are borrowed;
 * cfg->package must outlive the session. Caller frees with ferry_qmp_session_destroy. */
FerryQmpSession *ferry_qmp_session_create(FerryQmpCommands *cmds, const FerryQmpConfig *cfg,
                                          FerryQmpWriteFn write, void *opaque);
void ferry_qmp_session_destroy(FerryQmpSession *s);

/* Write the greeting {"QMP": {"version": ..., "capabilities": []}}. */
void ferry_qmp_session_greet(FerryQmpSession *s);

/* Consume bytes from the client: complete JSON values are dispatched in order and answered
 * through the write callback; a partial value waits for more bytes. Never fails: every bad
 * input is answered with a QMP error. */
void ferry_qmp_session_feed(FerryQmpSession *s, const void *data, size_t len);

/* True once qmp_capabilities succeeded (events are delivered only then). */
bool ferry_qmp_session_negotiated(const FerryQmpSession *s);

/* ---- Server ------------------------------------------------------------------------------ */

typedef struct FerryQmpServer FerryQmpServer;

/* Listen on the unix socket `path`, created with mode 0600 whatever the umask (a stale socket
 * at `path` is replaced; any other file is an error). Commands come from `cmds` (borrowed; it
 * must outlive the server). `cfg` (may be NULL) is copied, but cfg->package is borrowed and
 * must outlive the server. Serves nothing until ferry_qmp_server_start. Caller frees with
 * ferry_qmp_server_destroy. */
FerryQmpServer *ferry_qmp_server_create(const char *path, FerryQmpCommands *cmds,
                                        const FerryQmpConfig *cfg, FerryError *err);

/* Start the server thread: it accepts up to cfg->max_clients concurrent clients (more wait in
 * the listen backlog), runs their commands one at a time, and delivers events. */
int ferry_qmp_server_start(FerryQmpServer *srv, FerryError *err);

/* Stop the thread (pending output is flushed as far as the sockets take it without blocking),
 * close every client, remove the socket file, free. Must not be called from a handler. */
void ferry_qmp_server_destroy(FerryQmpServer *srv);

/* Socket path (borrowed). */
const char *ferry_qmp_server_path(const FerryQmpServer *srv);

/* Emit an event to every client in command mode, from any thread (not after destroy). `data` is
 * borrowed (may be NULL: no "data" member) and serialised before return; the timestamp is taken now
 * (wall clock, seconds + microseconds, as QEMU). A declared event's data is checked against its
 * spec: -EINVAL on mismatch, -ENOENT for an undeclared event, -ENOBUFS when the queue is full (the
 * server thread is stuck). Events are delivered in emission order. */
int ferry_qmp_emit(FerryQmpServer *srv, const char *event, json_t *data, FerryError *err);

/* Number of connected clients (for tests and status). */
unsigned ferry_qmp_server_clients(FerryQmpServer *srv);

#endif
