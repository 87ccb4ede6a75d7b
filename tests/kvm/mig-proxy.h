/* A TCP proxy for migration fault tests: forwards connections to a target port and, on the
 * first (main) connection, can cut the link after N bytes from the source, flip one byte, or
 * cut the return direction; `cut_now` cuts every connection whenever the test says. Each
 * connection is served by its own thread. */
#ifndef FERRY_TESTS_MIG_PROXY_H
#define FERRY_TESTS_MIG_PROXY_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct MigProxy {
    int listen_fd, port, target_port;
    int64_t cut_after;   /* source->destination bytes on the main connection, <0: never */
    int64_t flip_at;     /* flip this byte of the main connection, <0: never */
    bool cut_return;     /* close as soon as the destination sends its acknowledgement */
    atomic_bool cut_now; /* set at any time: every connection is cut (within one poll period) */
    atomic_int conns;
    atomic_bool stop;
    atomic_llong forwarded;
    pthread_t thread;
} MigProxy;

typedef struct MigProxyConn {
    MigProxy *p;
    int a, b;
    bool main;
} MigProxyConn;

static void *mig_proxy_conn(void *arg)
{
    MigProxyConn *c = arg;
    MigProxy *p = c->p;
    static __thread char buf[1 << 16];
    int64_t sent = 0;
    bool cut_return_armed = false;
    while (!atomic_load(&p->stop) && !atomic_load(&p->cut_now)) {
        struct pollfd f[2] = {{.fd = c->a, .events = POLLIN}, {.fd = c->b, .events = POLLIN}};
        if (poll(f, 2, 20) <= 0)
            continue;
        if (f[0].revents) {
            ssize_t n = read(c->a, buf, sizeof(buf));
            if (n <= 0)
                break;
            if (c->main && p->cut_after >= 0 && sent + n > p->cut_after) {
                ssize_t part = (ssize_t)(p->cut_after - sent);
                if (part > 0 && send(c->b, buf, (size_t)part, MSG_NOSIGNAL) < 0)
                    break;
                break; /* cut */
            }
            if (c->main && p->flip_at >= 0 && p->flip_at >= sent && p->flip_at < sent + n)
                buf[p->flip_at - sent] ^= 0x20;
            if (send(c->b, buf, (size_t)n, MSG_NOSIGNAL) != n)
                break;
            sent += n;
            atomic_fetch_add(&p->forwarded, n);
        }
        if (f[1].revents) {
            ssize_t n = read(c->b, buf, sizeof(buf));
            if (n <= 0)
                break;
            /* The first return bytes are the handshake answer; the second ones the ack. */
            if (c->main && p->cut_return) {
                if (cut_return_armed)
                    break;
                cut_return_armed = true;
            }
            if (send(c->a, buf, (size_t)n, MSG_NOSIGNAL) != n)
                break;
        }
    }
    close(c->a);
    close(c->b);
    free(c);
    return NULL;
}

static void *mig_proxy_main(void *arg)
{
    MigProxy *p = arg;
    while (!atomic_load(&p->stop)) {
        struct pollfd f = {.fd = p->listen_fd, .events = POLLIN};
        if (poll(&f, 1, 100) <= 0)
            continue;
        int a = accept(p->listen_fd, NULL, NULL);
        if (a < 0)
            continue;
        int b = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(p->target_port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(b, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            close(a);
            close(b);
            continue;
        }
        MigProxyConn *c = calloc(1, sizeof(*c));
        c->p = p;
        c->a = a;
        c->b = b;
        c->main = atomic_fetch_add(&p->conns, 1) == 0;
        pthread_t t;
        pthread_create(&t, NULL, mig_proxy_conn, c);
        pthread_detach(t);
    }
    return NULL;
}

static inline void mig_proxy_start(MigProxy *p, int target_port)
{
    p->target_port = target_port;
    p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(p->listen_fd, (struct sockaddr *)&sa, sizeof(sa));
    listen(p->listen_fd, 16);
    socklen_t len = sizeof(sa);
    getsockname(p->listen_fd, (struct sockaddr *)&sa, &len);
    p->port = ntohs(sa.sin_port);
    pthread_create(&p->thread, NULL, mig_proxy_main, p);
}

static inline void mig_proxy_stop(MigProxy *p)
{
    atomic_store(&p->stop, true);
    pthread_join(p->thread, NULL);
    close(p->listen_fd);
    usleep(150000); /* connection threads notice `stop` within one poll period */
}

#endif
