/* Migration transports: URI parsing and the sockets/files behind tcp:, unix:, fd: and file:.
 * Everything ends up as a blocking fd so the engine reads and writes one way for all of them. */
#include "ferry/migration/transport.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define URI_FORMS "tcp:HOST:PORT, unix:PATH, fd:N or file:PATH"
#define SOCK_BUF  (4 << 20) /* large socket buffers keep loopback at memcpy speed */

int ferry_uri_parse(const char *uri, FerryUri *out, FerryError *err)
{
    memset(out, 0, sizeof(*out));
    out->fd = -1;
    if (!strncmp(uri, "tcp:", 4)) {
        const char *hp = uri + 4, *colon;
        out->kind = FERRY_URI_TCP;
        if (hp[0] == '[') {
            const char *close = strchr(hp, ']');
            if (!close || close[1] != ':')
                return ferry_error_set(err, -EINVAL, "migration URI '%s': bad [IPv6]:PORT", uri);
            if ((size_t)(close - hp - 1) >= sizeof(out->host))
                return ferry_error_set(err, -EINVAL, "migration URI '%s': host too long", uri);
            memcpy(out->host, hp + 1, (size_t)(close - hp - 1));
            colon = close + 1;
        } else {
            colon = strrchr(hp, ':');
            if (!colon)
                return ferry_error_set(err, -EINVAL, "migration URI '%s': expected tcp:HOST:PORT",
                                       uri);
            if ((size_t)(colon - hp) >= sizeof(out->host))
                return ferry_error_set(err, -EINVAL, "migration URI '%s': host too long", uri);
            memcpy(out->host, hp, (size_t)(colon - hp));
        }
        const char *port = colon + 1;
        char *end;
        long p = strtol(port, &end, 10);
        if (!*port || *end || p < 0 || p > 65535)
            return ferry_error_set(err, -EINVAL, "migration URI '%s': port '%s' is not 0..65535",
                                   uri, port);
        snprintf(out->port, sizeof(out->port), "%ld", p);
        if (!out->host[0])
            strcpy(out->host, "0.0.0.0");
        return 0;
    }
    if (!strncmp(uri, "unix:", 5) || !strncmp(uri, "file:", 5)) {
        out->kind = uri[0] == 'u' ? FERRY_URI_UNIX : FERRY_URI_FILE;
        const char *p = uri + 5;
        size_t max = out->kind == FERRY_URI_UNIX ? sizeof(((struct sockaddr_un *)0)->sun_path)
                                                 : sizeof(out->path);
        if (!*p || strlen(p) >= max)
            return ferry_error_set(err, -EINVAL,
                                   "migration URI '%s': path empty or longer than "
                                   "%zu bytes",
                                   uri, max - 1);
        strcpy(out->path, p);
        return 0;
    }
    if (!strncmp(uri, "fd:", 3)) {
        char *end;
        long n = strtol(uri + 3, &end, 10);
        if (!uri[3] || *end || n < 0 || n > 1 << 20)
            return ferry_error_set(err, -EINVAL, "migration URI '%s': fd:N needs a number", uri);
        out->kind = FERRY_URI_FD;
        out->fd = (int)n;
        if (fcntl(out->fd, F_GETFD) < 0)
            return ferry_error_set(err, -EBADF, "migration URI '%s': fd %d is not open", uri,
                                   out->fd);
        return 0;
    }
    return ferry_error_set(err, -EINVAL,
                           "migration URI '%s': unknown transport (use " URI_FORMS ")", uri);
}

bool ferry_uri_multichannel(const FerryUri *u)
{
    return u->kind == FERRY_URI_TCP || u->kind == FERRY_URI_UNIX;
}

static void tune_socket(int fd, bool tcp)
{
    int one = 1, buf = SOCK_BUF;
    if (tcp) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        /* A link that goes down silently (cable, netns, firewall) must fail the migration in
         * seconds, not after TCP's ~15 minutes of retransmissions: unacknowledged data times
         * out after 10 s, and an idle reader (the destination) probes with keepalives. */
        int user_timeout = 10000, idle = 5, intvl = 1, cnt = 5;
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    }
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
}

static int unix_addr(const FerryUri *u, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    strcpy(sa->sun_path, u->path); /* length checked by the parser */
    return 0;
}

int ferry_uri_connect(const FerryUri *u, FerryError *err)
{
    switch (u->kind) {
    case FERRY_URI_FD:
        return u->fd;
    case FERRY_URI_FILE: {
        int fd = open(u->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
            return ferry_error_set(err, -errno, "file:%s: %s", u->path, strerror(errno));
        return fd;
    }
    case FERRY_URI_UNIX: {
        struct sockaddr_un sa;
        unix_addr(u, &sa);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return ferry_error_set(err, -errno, "unix socket: %s", strerror(errno));
        tune_socket(fd, false);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            int e = errno;
            close(fd);
            return ferry_error_set(err, -e, "connect to unix:%s: %s", u->path, strerror(e));
        }
        return fd;
    }
    case FERRY_URI_TCP: {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
        int g = getaddrinfo(u->host, u->port, &hints, &res);
        if (g)
            return ferry_error_set(err, -EHOSTUNREACH, "tcp:%s:%s: %s", u->host, u->port,
                                   gai_strerror(g));
        int fd = -1, e = ECONNREFUSED;
        for (ai = res; ai; ai = ai->ai_next) {
            fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
            if (fd < 0) {
                e = errno;
                continue;
            }
            tune_socket(fd, true);
            if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
                break;
            e = errno;
            close(fd);
            fd = -1;
        }
        freeaddrinfo(res);
        if (fd < 0)
            return ferry_error_set(err, -e, "connect to tcp:%s:%s: %s", u->host, u->port,
                                   strerror(e));
        return fd;
    }
    }
    return ferry_error_set(err, -EINVAL, "bad URI kind");
}

int ferry_uri_listen(const FerryUri *u, FerryError *err)
{
    ferry_error_clear(err);
    if (u->kind == FERRY_URI_FD || u->kind == FERRY_URI_FILE)
        return -1;
    if (u->kind == FERRY_URI_UNIX) {
        struct sockaddr_un sa;
        struct stat st;
        unix_addr(u, &sa);
        if (lstat(u->path, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(u->path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return ferry_error_set(err, -errno, "unix socket: %s", strerror(errno));
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
            int e = errno;
            close(fd);
            return ferry_error_set(err, -e, "listen on unix:%s: %s", u->path, strerror(e));
        }
        return fd;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;
    int g = getaddrinfo(u->host, u->port, &hints, &res);
    if (g)
        return ferry_error_set(err, -EADDRNOTAVAIL, "tcp:%s:%s: %s", u->host, u->port,
                               gai_strerror(g));
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    int one = 1, e = 0;
    if (fd < 0)
        e = errno;
    else {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 16) < 0) {
            e = errno;
            close(fd);
        }
    }
    freeaddrinfo(res);
    if (e)
        return ferry_error_set(err, -e, "listen on tcp:%s:%s: %s", u->host, u->port, strerror(e));
    return fd;
}

int ferry_uri_accept(int listen_fd, int timeout_ms, FerryError *err)
{
    struct pollfd p = {.fd = listen_fd, .events = POLLIN};
    for (;;) {
        int n = poll(&p, 1, timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return ferry_error_set(err, -errno, "accept: poll: %s", strerror(errno));
        if (n == 0)
            return ferry_error_set(err, -ETIMEDOUT, "no migration connection within %d ms",
                                   timeout_ms);
        break;
    }
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return ferry_error_set(err, -errno, "accept: %s", strerror(errno));
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &len);
    tune_socket(fd, ss.ss_family != AF_UNIX);
    return fd;
}

int ferry_uri_listen_port(int listen_fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(listen_fd, (struct sockaddr *)&ss, &len) < 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}
