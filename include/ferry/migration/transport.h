/* Migration transports: URIs tcp:HOST:PORT, unix:PATH, fd:N and file:PATH, parsed once, then
 * connected (source) or listened on and accepted (destination) as plain file descriptors. */
#ifndef FERRY_MIGRATION_TRANSPORT_H
#define FERRY_MIGRATION_TRANSPORT_H

#include "ferry/error.h"

#include <stdbool.h>

typedef enum FerryUriKind {
    FERRY_URI_TCP,
    FERRY_URI_UNIX,
    FERRY_URI_FD,
    FERRY_URI_FILE,
} FerryUriKind;

typedef struct FerryUri {
    FerryUriKind kind;
    char host[256];  /* tcp: name or address; "[v6]" brackets removed */
    char port[16];   /* tcp */
    char path[1024]; /* unix, file */
    int fd;          /* fd */
} FerryUri;

/* Parse `uri`; errors quote it and list the accepted forms. */
int ferry_uri_parse(const char *uri, FerryUri *out, FerryError *err);
/* Whether this transport can carry more than one channel (tcp, unix). */
bool ferry_uri_multichannel(const FerryUri *u);

/* Source side: one connected, blocking, close-on-exec fd per call (tcp gets TCP_NODELAY and
 * large buffers). fd:N returns N itself (borrowed: the caller must not close it twice);
 * file: creates/truncates the file. Caller closes. */
int ferry_uri_connect(const FerryUri *u, FerryError *err);

/* Destination side: a listening socket for tcp/unix (a stale unix socket is replaced); for fd:
 * and file: no listener is needed and -1 is returned with no error. */
int ferry_uri_listen(const FerryUri *u, FerryError *err);
/* Accept one connection within `timeout_ms` (<0: forever). Caller closes. */
int ferry_uri_accept(int listen_fd, int timeout_ms, FerryError *err);
/* The port a tcp listener got (for "tcp:127.0.0.1:0"), or 0. */
int ferry_uri_listen_port(int listen_fd);

#endif
