/* QMP client: blocking calls with timeouts over a unix socket, reusing the server's splitter
 * to cut the reply stream into messages; events are queued while waiting for a response. */
#include "ferry/control/qmp-client.h"

#include "qmp-int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CLIENT_MAX_MESSAGE (16u * 1024u * 1024u)

struct FerryQmpClient {
    int fd;
    FerryQmpSplitter splitter;
    json_t *greeting;
    json_t *inbox;  /* messages read from the socket, not yet returned */
    json_t *events; /* events set aside while waiting for something else */
    json_int_t next_id;
    char proto_err[160];
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long deadline_of(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

static int remaining(long long deadline)
{
    if (deadline < 0)
        return -1;
    long long left = deadline - now_ms();
    return left < 0 ? 0 : (int)left;
}

static void on_message(void *opaque, const char *text, size_t len, const char *error)
{
    FerryQmpClient *c = opaque;
    json_error_t jerr;
    json_t *msg = text ? json_loadb(text, len, 0, &jerr) : NULL;
    if (!msg) {
        snprintf(c->proto_err, sizeof(c->proto_err), "bad message from the server: %s",
                 text ? jerr.text : error);
        return;
    }
    json_array_append_new(c->inbox, msg);
}

int ferry_qmp_client_recv(FerryQmpClient *c, int timeout_ms, json_t **msg, FerryError *err)
{
    long long deadline = deadline_of(timeout_ms);
    *msg = NULL;
    while (json_array_size(c->inbox) == 0) {
        if (c->proto_err[0])
            return ferry_error_set(err, -EPROTO, "QMP: %s", c->proto_err);
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int rc = poll(&p, 1, remaining(deadline));
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            return ferry_error_set(err, -errno, "QMP: poll: %s", strerror(errno));
        if (rc == 0)
            return ferry_error_set(err, -ETIMEDOUT, "QMP: no message within %d ms", timeout_ms);
        char buf[16384];
        ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return ferry_error_set(err, -errno, "QMP: recv: %s", strerror(errno));
        if (n == 0)
            return ferry_error_set(err, -ECONNRESET, "QMP: the server closed the connection");
        ferry_qmp_splitter_feed(&c->splitter, (unsigned char *)buf, (size_t)n, on_message, c);
    }
    *msg = json_incref(json_array_get(c->inbox, 0));
    json_array_remove(c->inbox, 0);
    return 0;
}

int ferry_qmp_client_send_raw(FerryQmpClient *c, const void *data, size_t len, FerryError *err)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return ferry_error_set(err, -errno, "QMP: send: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

FerryQmpClient *ferry_qmp_client_connect(const char *path, int timeout_ms, FerryError *err)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) {
        ferry_error_set(err, -ENAMETOOLONG, "QMP socket path '%s' is too long", path);
        return NULL;
    }
    strcpy(addr.sun_path, path);
    FerryQmpClient *c = calloc(1, sizeof(*c));
    if (!c) {
        ferry_error_set(err, -ENOMEM, "QMP client: out of memory");
        return NULL;
    }
    c->next_id = 1;
    ferry_qmp_splitter_init(&c->splitter, CLIENT_MAX_MESSAGE);
    c->inbox = json_array();
    c->events = json_array();
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (!c->inbox || !c->events || c->fd < 0) {
        ferry_error_set(err, -ENOMEM, "QMP client: cannot allocate");
        goto err_close;
    }
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        ferry_error_set(err, -errno, "QMP: connect to '%s': %s", path, strerror(errno));
        goto err_close;
    }
    if (ferry_qmp_client_recv(c, timeout_ms, &c->greeting, err) < 0) {
        ferry_error_prefix(err, "QMP greeting from '%s': ", path);
        goto err_close;
    }
    if (!json_is_object(json_object_get(c->greeting, "QMP"))) {
        ferry_error_set(err, -EPROTO, "QMP: '%s' did not greet with a QMP object", path);
        goto err_close;
    }
    return c;

err_close:
    ferry_qmp_client_close(c);
    return NULL;
}

void ferry_qmp_client_close(FerryQmpClient *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    ferry_qmp_splitter_release(&c->splitter);
    json_decref(c->greeting);
    json_decref(c->inbox);
    json_decref(c->events);
    free(c);
}

json_t *ferry_qmp_client_greeting(FerryQmpClient *c)
{
    return c->greeting;
}

int ferry_qmp_client_fd(FerryQmpClient *c)
{
    return c->fd;
}

int ferry_qmp_client_execute(FerryQmpClient *c, const char *command, json_t *args, json_t **ret,
                             FerryQmpError *qerr, int timeout_ms, FerryError *err)
{
    long long deadline = deadline_of(timeout_ms);
    json_int_t id = c->next_id++;
    if (ret)
        *ret = NULL;
    json_t *req = json_pack("{s:s, s:I}", "execute", command, "id", id);
    if (req && args)
        json_object_set(req, "arguments", args);
    size_t len;
    char *line = req ? ferry_qmp_format(req, &len) : NULL;
    json_decref(req);
    if (!line)
        return ferry_error_set(err, -ENOMEM, "QMP %s: out of memory", command);
    int rc = ferry_qmp_client_send_raw(c, line, len, err);
    free(line);
    if (rc < 0)
        return rc;

    for (;;) {
        json_t *msg;
        rc = ferry_qmp_client_recv(c, remaining(deadline), &msg, err);
        if (rc < 0)
            return ferry_error_prefix(err, "QMP %s: ", command);
        if (json_object_get(msg, "event")) {
            json_array_append_new(c->events, msg);
            continue;
        }
        json_t *rid = json_object_get(msg, "id");
        if (!json_is_integer(rid) || json_integer_value(rid) != id) {
            json_decref(msg); /* a response to someone else's request: drop (qmp-spec) */
            continue;
        }
        json_t *error = json_object_get(msg, "error");
        if (error) {
            const char *cls = json_string_value(json_object_get(error, "class"));
            const char *desc = json_string_value(json_object_get(error, "desc"));
            cls = cls ? cls : "GenericError";
            desc = desc ? desc : "";
            if (qerr) {
                qerr->cls = FERRY_QMP_ERROR_GENERIC;
                for (int k = 0; k <= FERRY_QMP_ERROR_MIGRATION_EXPECTED; k++)
                    if (!strcmp(cls, ferry_qmp_error_class_name((FerryQmpErrorClass)k)))
                        qerr->cls = (FerryQmpErrorClass)k;
                snprintf(qerr->desc, sizeof(qerr->desc), "%s", desc);
            }
            ferry_error_set(err, -EREMOTEIO, "QMP %s: %s: %s", command, cls, desc);
            json_decref(msg);
            return -EREMOTEIO;
        }
        json_t *value = json_object_get(msg, "return");
        if (!value) {
            json_decref(msg);
            return ferry_error_set(err, -EPROTO, "QMP %s: response without 'return'", command);
        }
        if (ret)
            *ret = json_incref(value);
        json_decref(msg);
        return 0;
    }
}

int ferry_qmp_client_negotiate(FerryQmpClient *c, int timeout_ms, FerryError *err)
{
    return ferry_qmp_client_execute(c, "qmp_capabilities", NULL, NULL, NULL, timeout_ms, err);
}

static bool event_matches(json_t *ev, const char *name)
{
    const char *n = json_string_value(json_object_get(ev, "event"));
    return n && (!name || !strcmp(n, name));
}

int ferry_qmp_client_wait_event(FerryQmpClient *c, const char *name, int timeout_ms, json_t **event,
                                FerryError *err)
{
    long long deadline = deadline_of(timeout_ms);
    *event = NULL;
    for (size_t i = 0; i < json_array_size(c->events); i++) {
        json_t *ev = json_array_get(c->events, i);
        if (event_matches(ev, name)) {
            *event = json_incref(ev);
            json_array_remove(c->events, i);
            return 0;
        }
    }
    for (;;) {
        json_t *msg;
        int rc = ferry_qmp_client_recv(c, remaining(deadline), &msg, err);
        if (rc < 0)
            return ferry_error_prefix(err, "QMP waiting for event %s: ", name ? name : "(any)");
        if (!json_object_get(msg, "event")) {
            json_decref(msg);
            continue;
        }
        if (event_matches(msg, name)) {
            *event = msg;
            return 0;
        }
        json_array_append_new(c->events, msg);
    }
}
