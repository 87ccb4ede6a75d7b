/* Minimal QMP client: connect to a unix socket, negotiate, run commands and wait for events.
 * Used by the tests and by `ferry migrate --qmp SOCKET`; speaks to Ferry and to QEMU alike. */
#ifndef FERRY_CONTROL_QMP_CLIENT_H
#define FERRY_CONTROL_QMP_CLIENT_H

#include "ferry/control/qmp.h"
#include "ferry/error.h"

#include <jansson.h>
#include <stddef.h>

typedef struct FerryQmpClient FerryQmpClient;

/* Connect to `path` and read the greeting (within timeout_ms; <0 waits forever). The session
 * is still in negotiation mode. Caller frees with ferry_qmp_client_close. */
FerryQmpClient *ferry_qmp_client_connect(const char *path, int timeout_ms, FerryError *err);

/* Close the connection and free queued events. NULL is ignored. */
void ferry_qmp_client_close(FerryQmpClient *c);

/* The greeting object {"QMP": {...}}. Borrowed; lives as long as the client. */
json_t *ferry_qmp_client_greeting(FerryQmpClient *c);

/* Send qmp_capabilities and wait for its return. */
int ferry_qmp_client_negotiate(FerryQmpClient *c, int timeout_ms, FerryError *err);

/* Run `command` with `args` (borrowed; NULL for none) under a fresh numeric id, queue events
 * that arrive meanwhile, skip responses with other ids, and wait for the matching response.
 * Success: 0 and, if `ret` is not NULL, *ret = the "return" value (caller frees).
 * QMP error: -EREMOTEIO, `qerr` (may be NULL) gets class and desc, `err` gets "Class: desc".
 * Otherwise a negative errno: -ETIMEDOUT, -ECONNRESET (server closed), -EPROTO (bad data). */
int ferry_qmp_client_execute(FerryQmpClient *c, const char *command, json_t *args, json_t **ret,
                             FerryQmpError *qerr, int timeout_ms, FerryError *err);

/* Wait for an event named `name` (NULL: any event), taking it from the queue first. Events of
 * other names stay queued in order. *event = the whole event object (caller frees). */
int ferry_qmp_client_wait_event(FerryQmpClient *c, const char *name, int timeout_ms, json_t **event,
                                FerryError *err);

/* Raw access for protocol tests (bypasses the event queue). send_raw writes bytes as they are;
 * recv returns the next message from the socket, whatever it is (caller frees). */
int ferry_qmp_client_send_raw(FerryQmpClient *c, const void *data, size_t len, FerryError *err);
int ferry_qmp_client_recv(FerryQmpClient *c, int timeout_ms, json_t **msg, FerryError *err);

/* The socket, e.g. to shutdown(2) one direction in a test. Borrowed. */
int ferry_qmp_client_fd(FerryQmpClient *c);

#endif
