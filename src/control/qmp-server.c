/* QMP server: a unix socket served by one thread with poll(). Commands of all clients run on
 * that thread one at a time; events are queued from any thread and woken through an eventfd. */
#include "qmp-int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Stop reading a client's requests while this much output waits for it (backpressure, like
 * QEMU's monitor suspending input); drop a client that lets far more pile up (events it never
 * reads), rather than growing without bound. */
#define CLIENT_OUT_PAUSE (256u * 1024u)
#define CLIENT_OUT_MAX   (8u * 1024u * 1024u)
#define READ_CHUNK       (64u * 1024u)
#define EVENT_QUEUE_MAX  4096u

typedef struct Client {
    FerryQmpServer *srv;
    int fd;
    FerryQmpSession *session;
    char *out;
    size_t out_len, out_off, out_cap;
    bool eof;  /* the client closed its side: answer what it sent, then close */
    bool dead; /* close at the end of this poll round */
} Client;

typedef struct EventItem {
    struct EventItem *next;
    size_t len;
    char line[];
} EventItem;

struct FerryQmpServer {
    char *path;
    int listen_fd;
    int wake_fd;
    FerryQmpCommands *cmds;
    FerryQmpConfig cfg;
    unsigned max_clients;
    pthread_t thread;
    bool started;

    pthread_mutex_t lock; /* guards everything below */
    bool stop;
    EventItem *ev_head, *ev_tail;
    size_t nevents;
    unsigned nclients;

    /* Server thread only. */
    Client **clients;
    unsigned nclient_slots;
};

/* ---- Client output ---- */

static void client_flush(Client *c)
{
    while (!c->dead && c->out_off < c->out_len) {
        ssize_t n =
            send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                c->dead = true;
            break;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
}

static void client_append(Client *c, const char *data, size_t len)
{
    if (c->dead)
        return;
    if (c->out_len - c->out_off + len > CLIENT_OUT_MAX) {
        c->dead = true;
        return;
    }
    if (c->out_off > 0 && c->out_len + len > c->out_cap) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + len)
            cap *= 2;
        char *n = realloc(c->out, cap);
        if (!n) {
            c->dead = true;
            return;
        }
        c->out = n;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    client_flush(c);
}

/* Deliver queued events to every client in command mode (others never see them, as in QEMU). */
static void drain_events(FerryQmpServer *srv)
{
    pthread_mutex_lock(&srv->lock);
    EventItem *ev = srv->ev_head;
    srv->ev_head = srv->ev_tail = NULL;
    srv->nevents = 0;
    pthread_mutex_unlock(&srv->lock);
    while (ev) {
        EventItem *next = ev->next;
        for (unsigned i = 0; i < srv->nclient_slots; i++) {
            Client *c = srv->clients[i];
            if (c && ferry_qmp_session_negotiated(c->session))
                client_append(c, ev->line, ev->len);
        }
        free(ev);
        ev = next;
    }
}

/* Session output. Events queued so far go first, so an event a handler emitted precedes the
 * handler's response, as QEMU orders them. */
static void client_write(void *opaque, const char *data, size_t len)
{
    Client *c = opaque;
    drain_events(c->srv);
    client_append(c, data, len);
}

static void client_free(Client *c)
{
    ferry_qmp_session_destroy(c->session);
    close(c->fd);
    free(c->out);
    free(c);
}

static void set_nclients(FerryQmpServer *srv, int delta)
{
    pthread_mutex_lock(&srv->lock);
    srv->nclients = (unsigned)((int)srv->nclients + delta);
    pthread_mutex_unlock(&srv->lock);
}

static void accept_client(FerryQmpServer *srv)
{
    int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return; /* EAGAIN, or the peer already left: nothing to serve */
    unsigned slot = 0;
    while (slot < srv->nclient_slots && srv->clients[slot])
        slot++;
    Client *c = calloc(1, sizeof(*c));
    if (slot == srv->nclient_slots || !c)
        goto err_close_fd;
    c->srv = srv;
    c->fd = fd;
    c->session = ferry_qmp_session_create(srv->cmds, &srv->cfg, client_write, c);
    if (!c->session)
        goto err_free_client;
    srv->clients[slot] = c;
    set_nclients(srv, +1);
    ferry_qmp_session_greet(c->session);
    return;

err_free_client:
    free(c);
err_close_fd:
    close(fd);
}

static void client_read(Client *c)
{
    char buf[READ_CHUNK];
    ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            c->dead = true;
        return;
    }
    if (n == 0) {
        c->eof = true; /* a partial request dies with the session */
        return;
    }
    ferry_qmp_session_feed(c->session, buf, (size_t)n);
}

static void *server_main(void *opaque)
{
    FerryQmpServer *srv = opaque;
    size_t npfd = 2 + srv->nclient_slots;
    struct pollfd *pfd = calloc(npfd, sizeof(*pfd));
    Client **polled = calloc(npfd, sizeof(*polled));
    if (!pfd || !polled)
        goto out_free;

    for (;;) {
        size_t n = 0;
        pfd[n++] = (struct pollfd){.fd = srv->wake_fd, .events = POLLIN};
        size_t listen_idx = SIZE_MAX;
        unsigned live = 0;
        for (unsigned i = 0; i < srv->nclient_slots; i++)
            live += srv->clients[i] != NULL;
        if (live < srv->max_clients) {
            listen_idx = n;
            pfd[n++] = (struct pollfd){.fd = srv->listen_fd, .events = POLLIN};
        }
        size_t first_client = n;
        for (unsigned i = 0; i < srv->nclient_slots; i++) {
            Client *c = srv->clients[i];
            if (!c)
                continue;
            short ev = 0;
            size_t pending = c->out_len - c->out_off;
            if (pending < CLIENT_OUT_PAUSE && !c->eof)
                ev |= POLLIN;
            if (pending)
                ev |= POLLOUT;
            polled[n] = c;
            pfd[n++] = (struct pollfd){.fd = c->fd, .events = ev};
        }

        if (poll(pfd, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfd[0].revents) {
            uint64_t v;
            (void)!read(srv->wake_fd, &v, sizeof(v));
            pthread_mutex_lock(&srv->lock);
            bool stop = srv->stop;
            pthread_mutex_unlock(&srv->lock);
            if (stop)
                break;
        }
        drain_events(srv);
        for (size_t i = first_client; i < n; i++) {
            Client *c = polled[i];
            if (pfd[i].revents & POLLOUT)
                client_flush(c);
            if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
                client_read(c);
        }
        for (unsigned i = 0; i < srv->nclient_slots; i++) {
            Client *c = srv->clients[i];
            if (c && c->eof && c->out_len == c->out_off)
                c->dead = true;
            if (c && c->dead) {
                client_free(c);
                srv->clients[i] = NULL;
                set_nclients(srv, -1);
            }
        }
        if (listen_idx != SIZE_MAX && (pfd[listen_idx].revents & POLLIN))
            accept_client(srv);
    }

out_free:
    free(pfd);
    free(polled);
    /* Shutdown: hand each client what the socket takes now, then close. */
    drain_events(srv);
    for (unsigned i = 0; i < srv->nclient_slots; i++) {
        Client *c = srv->clients[i];
        if (!c)
            continue;
        client_flush(c);
        client_free(c);
        srv->clients[i] = NULL;
        set_nclients(srv, -1);
    }
    return NULL;
}

/* ---- Public API ---- */

static int listen_unix(const char *path, FerryError *err)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path))
        return ferry_error_set(err, -ENAMETOOLONG, "QMP socket path '%s' is longer than %zu bytes",
                               path, sizeof(addr.sun_path) - 1);
    strcpy(addr.sun_path, path);

    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return ferry_error_set(err, -EEXIST, "QMP socket path '%s' exists and is not a socket",
                                   path);
        unlink(path); /* a stale socket from an earlier run, as QEMU replaces it */
    }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return ferry_error_set(err, -errno, "QMP socket: %s", strerror(errno));
    /* Linux creates the socket file with the socket inode's mode minus the umask, so this makes
     * it 0600 whatever the umask, without touching the process-wide umask (other threads). */
    if (fchmod(fd, 0600) < 0) {
        ferry_error_set(err, -errno, "QMP socket: fchmod: %s", strerror(errno));
        goto err_close_fd;
    }
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        ferry_error_set(err, -errno, "QMP socket '%s': bind: %s", path, strerror(errno));
        goto err_close_fd;
    }
    /* Nobody can connect before listen(); make sure the file really is private by then. */
    if (stat(path, &st) < 0 || (st.st_mode & 0077)) {
        if (chmod(path, 0600) < 0) {
            ferry_error_set(err, -errno, "QMP socket '%s': chmod: %s", path, strerror(errno));
            goto err_unlink;
        }
    }
    if (listen(fd, 16) < 0) {
        ferry_error_set(err, -errno, "QMP socket '%s': listen: %s", path, strerror(errno));
        goto err_unlink;
    }
    return fd;

err_unlink:
    unlink(path);
err_close_fd:
    close(fd);
    return err ? err->code : -EIO;
}

FerryQmpServer *ferry_qmp_server_create(const char *path, FerryQmpCommands *cmds,
                                        const FerryQmpConfig *cfg, FerryError *err)
{
    FerryQmpServer *srv = calloc(1, sizeof(*srv));
    if (!srv) {
        ferry_error_set(err, -ENOMEM, "QMP server: out of memory");
        return NULL;
    }
    if (cfg)
        srv->cfg = *cfg;
    srv->cmds = cmds;
    srv->max_clients = srv->cfg.max_clients ? srv->cfg.max_clients : FERRY_QMP_DEFAULT_MAX_CLIENTS;
    srv->nclient_slots = srv->max_clients;
    srv->listen_fd = srv->wake_fd = -1;
    pthread_mutex_init(&srv->lock, NULL);
    srv->path = strdup(path);
    srv->clients = calloc(srv->nclient_slots, sizeof(*srv->clients));
    if (!srv->path || !srv->clients) {
        ferry_error_set(err, -ENOMEM, "QMP server: out of memory");
        goto err_free;
    }
    srv->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (srv->wake_fd < 0) {
        ferry_error_set(err, -errno, "QMP server: eventfd: %s", strerror(errno));
        goto err_free;
    }
    srv->listen_fd = listen_unix(path, err);
    if (srv->listen_fd < 0)
        goto err_close_wake;
    return srv;

err_close_wake:
    close(srv->wake_fd);
err_free:
    pthread_mutex_destroy(&srv->lock);
    free(srv->clients);
    free(srv->path);
    free(srv);
    return NULL;
}

static void wake(FerryQmpServer *srv)
{
    uint64_t one = 1;
    (void)!write(srv->wake_fd, &one, sizeof(one));
}

int ferry_qmp_server_start(FerryQmpServer *srv, FerryError *err)
{
    if (srv->started)
        return ferry_error_set(err, -EALREADY, "QMP server '%s' already started", srv->path);
    int rc = pthread_create(&srv->thread, NULL, server_main, srv);
    if (rc)
        return ferry_error_set(err, -rc, "QMP server: thread: %s", strerror(rc));
    srv->started = true;
    return 0;
}

void ferry_qmp_server_destroy(FerryQmpServer *srv)
{
    if (!srv)
        return;
    if (srv->started) {
        pthread_mutex_lock(&srv->lock);
        srv->stop = true;
        pthread_mutex_unlock(&srv->lock);
        wake(srv);
        pthread_join(srv->thread, NULL);
    }
    close(srv->listen_fd);
    unlink(srv->path);
    close(srv->wake_fd);
    for (EventItem *ev = srv->ev_head, *next; ev; ev = next) {
        next = ev->next;
        free(ev);
    }
    pthread_mutex_destroy(&srv->lock);
    free(srv->clients);
    free(srv->path);
    free(srv);
}

const char *ferry_qmp_server_path(const FerryQmpServer *srv)
{
    return srv->path;
}

unsigned ferry_qmp_server_clients(FerryQmpServer *srv)
{
    pthread_mutex_lock(&srv->lock);
    unsigned n = srv->nclients;
    pthread_mutex_unlock(&srv->lock);
    return n;
}

int ferry_qmp_emit(FerryQmpServer *srv, const char *event, json_t *data, FerryError *err)
{
    const FerryQmpCommandSpec *spec = ferry_qmp_commands_event_spec(srv->cmds, event);
    if (!spec)
        return ferry_error_set(err, -ENOENT, "QMP event '%s' is not declared", event);
    if (data && !json_is_object(data))
        return ferry_error_set(err, -EINVAL, "QMP event '%s': data must be an object", event);
    FerryQmpError qerr;
    if (ferry_qmp_args_check(spec, data, &qerr) < 0)
        return ferry_error_set(err, -EINVAL, "QMP event '%s': %s", event, qerr.desc);

    /* Timestamp now, in the emitting thread: it says when the event happened. */
    json_t *msg = json_pack("{s:o, s:s}", "timestamp", ferry_qmp_timestamp(), "event", event);
    if (msg && data)
        json_object_set(msg, "data", data);
    size_t len = 0;
    char *line = msg ? ferry_qmp_format(msg, &len) : NULL;
    json_decref(msg);
    EventItem *ev = line ? malloc(sizeof(*ev) + len) : NULL;
    if (!ev) {
        free(line);
        return ferry_error_set(err, -ENOMEM, "QMP event '%s': out of memory", event);
    }
    ev->next = NULL;
    ev->len = len;
    memcpy(ev->line, line, len);
    free(line);

    pthread_mutex_lock(&srv->lock);
    if (srv->nevents >= EVENT_QUEUE_MAX) {
        pthread_mutex_unlock(&srv->lock);
        free(ev);
        return ferry_error_set(err, -ENOBUFS, "QMP event '%s' dropped: %u events queued", event,
                               EVENT_QUEUE_MAX);
    }
    if (srv->ev_tail)
        srv->ev_tail->next = ev;
    else
        srv->ev_head = ev;
    srv->ev_tail = ev;
    srv->nevents++;
    pthread_mutex_unlock(&srv->lock);
    wake(srv);
    return 0;
}
