/* Buffered byte streams over memory, fds and files, with offsets and a lazy checksum hook.
 * Readers keep a window of bytes; the hook sees each byte once, in order, when the window moves. */
#include "io-int.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FD_BUF_SIZE (256u * 1024u)

static FerryIO *io_alloc(bool writer, int kind)
{
    FerryIO *io = calloc(1, sizeof(*io));
    if (!io)
        return NULL;
    io->writer = writer;
    io->kind = kind;
    io->fd = -1;
    io->limit = UINT64_MAX;
    return io;
}

FerryIO *ferry_io_mem_writer(void)
{
    return io_alloc(true, IO_MEM);
}

FerryIO *ferry_io_mem_reader(const void *data, size_t len)
{
    FerryIO *io = io_alloc(false, IO_MEM);
    if (!io)
        return NULL;
    io->win = data;
    io->end = len;
    io->eof = true;
    return io;
}

static FerryIO *fd_io(int fd, bool own_fd, bool writer)
{
    FerryIO *io = io_alloc(writer, IO_FD);
    if (!io)
        return NULL;
    io->buf = malloc(FD_BUF_SIZE);
    if (!io->buf) {
        free(io);
        return NULL;
    }
    io->cap = FD_BUF_SIZE;
    io->win = io->buf;
    io->fd = fd;
    io->own_fd = own_fd;
    return io;
}

FerryIO *ferry_io_fd_reader(int fd, bool own_fd)
{
    return fd_io(fd, own_fd, false);
}

FerryIO *ferry_io_fd_writer(int fd, bool own_fd)
{
    return fd_io(fd, own_fd, true);
}

static FerryIO *file_io(const char *path, bool writer, FerryError *err)
{
    int fd = writer ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)
                    : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ferry_error_set(err, -errno, "%s: cannot open for %s: %s", path,
                        writer ? "writing" : "reading", strerror(errno));
        return NULL;
    }
    FerryIO *io = fd_io(fd, true, writer);
    if (!io) {
        close(fd);
        ferry_error_set(err, -ENOMEM, "%s: out of memory", path);
    }
    return io;
}

FerryIO *ferry_io_file_reader(const char *path, FerryError *err)
{
    return file_io(path, false, err);
}

FerryIO *ferry_io_file_writer(const char *path, FerryError *err)
{
    return file_io(path, true, err);
}

void ferry_io_checksum_sync(FerryIO *io)
{
    const uint8_t *data = io->writer ? io->buf : io->win;
    if (io->ck && io->pos > io->ck_pos)
        io->ck(io->ck_ctx, data + io->ck_pos, io->pos - io->ck_pos);
    io->ck_pos = io->pos;
}

void ferry_io_set_checksum(FerryIO *io, FerryChecksumFn fn, void *ctx)
{
    ferry_io_checksum_sync(io);
    io->ck = fn;
    io->ck_ctx = ctx;
}

void ferry_io_destroy(FerryIO *io)
{
    if (!io)
        return;
    if (io->writer && io->kind == IO_FD)
        ferry_io_flush(io, NULL);
    if (io->own_fd && io->fd >= 0)
        close(io->fd);
    free(io->buf);
    free(io);
}

bool ferry_io_is_writer(const FerryIO *io)
{
    return io->writer;
}

uint64_t ferry_io_offset(const FerryIO *io)
{
    return io->base + io->pos;
}

/* ---- writing ---------------------------------------------------------------------------- */

/* write() to a pipe or file with SIGPIPE blocked on this thread; a SIGPIPE raised by this write
 * is consumed, so a reader that went away is the error EPIPE and nothing else. */
static ssize_t write_nosigpipe(int fd, const void *p, size_t len)
{
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigset_t pending;
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE);
    ssize_t n = write(fd, p, len);
    int saved = errno;
    if (n < 0 && saved == EPIPE && !was_pending) {
        static const struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return n;
}

static int fd_write_all(FerryIO *io, const uint8_t *p, size_t len, FerryError *err)
{
    while (len) {
        /* send() with MSG_NOSIGNAL on sockets: a peer that went away must be an error value,
         * never a SIGPIPE that kills the process hosting the library (a migrating VM). */
        ssize_t n =
            io->not_socket ? write_nosigpipe(io->fd, p, len) : send(io->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) {
            io->not_socket = true;
            continue;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return ferry_error_set(err, -errno, "write failed at offset 0x%llx: %s",
                                   (unsigned long long)io->base, strerror(errno));
        }
        p += n;
        len -= (size_t)n;
        io->base += (uint64_t)n;
    }
    return 0;
}

int ferry_io_flush(FerryIO *io, FerryError *err)
{
    if (!io->writer || io->kind != IO_FD || io->pos == 0)
        return 0;
    ferry_io_checksum_sync(io);
    size_t n = io->pos;
    io->pos = io->ck_pos = 0;
    return fd_write_all(io, io->buf, n, err);
}

static int mem_grow(FerryIO *io, size_t len, FerryError *err)
{
    size_t need = io->pos + len;
    if (need < io->pos)
        return ferry_error_set(err, -EOVERFLOW, "memory stream overflow");
    size_t cap = io->cap ? io->cap : 4096;
    while (cap < need)
        cap *= 2;
    uint8_t *nb = realloc(io->buf, cap);
    if (!nb)
        return ferry_error_set(err, -ENOMEM, "out of memory growing a %zu-byte buffer", cap);
    io->buf = nb;
    io->cap = cap;
    return 0;
}

int ferry_io__reserve(FerryIO *io, size_t len, FerryError *err)
{
    if (io->cap - io->pos >= len)
        return 0;
    if (io->kind == IO_MEM)
        return mem_grow(io, len, err);
    int rc = ferry_io_flush(io, err);
    if (rc)
        return rc;
    return io->cap >= len ? 0 : 1;
}

int ferry_io__write_slow(FerryIO *io, const void *src, size_t len, FerryError *err)
{
    if (io->kind == IO_MEM) {
        int rc = mem_grow(io, len, err);
        if (rc)
            return rc;
        memcpy(io->buf + io->pos, src, len);
        io->pos += len;
        return 0;
    }
    int rc = ferry_io_flush(io, err);
    if (rc)
        return rc;
    if (len >= io->cap) {
        /* Large writes bypass the buffer; the hook sees them directly. */
        if (io->ck)
            io->ck(io->ck_ctx, src, len);
        return fd_write_all(io, src, len, err);
    }
    memcpy(io->buf, src, len);
    io->pos = len;
    return 0;
}

int ferry_io_write(FerryIO *io, const void *data, size_t len, FerryError *err)
{
    return ferry_io__write(io, data, len, err);
}

const uint8_t *ferry_io_mem_data(const FerryIO *io, size_t *len)
{
    *len = io->pos;
    return io->buf;
}

void ferry_io_mem_reset(FerryIO *io)
{
    ferry_io_checksum_sync(io);
    io->base += io->pos;
    io->pos = io->ck_pos = 0;
}

/* ---- reading ---------------------------------------------------------------------------- */

/* Make at least `want` bytes available in the window if the fd has them (fd readers only).
 * Returns bytes available (may be fewer at EOF) or a negative errno. */
static ssize_t fill(FerryIO *io, size_t want, FerryError *err)
{
    if (io->kind == IO_MEM || io->end - io->pos >= want)
        return (ssize_t)(io->end - io->pos);
    ferry_io_checksum_sync(io);
    size_t keep = io->end - io->pos;
    memmove(io->buf, io->buf + io->pos, keep);
    io->base += io->pos;
    io->pos = io->ck_pos = 0;
    io->end = keep;
    while (io->end < want && io->end < io->cap && !io->eof) {
        ssize_t n = read(io->fd, io->buf + io->end, io->cap - io->end);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return ferry_error_set(err, -errno, "read failed at offset 0x%llx: %s",
                                   (unsigned long long)(io->base + io->end), strerror(errno));
        }
        if (n == 0)
            io->eof = true;
        io->end += (size_t)n;
    }
    return (ssize_t)io->end;
}

static int check_limit(FerryIO *io, uint64_t len, FerryError *err)
{
    uint64_t off = io->base + io->pos;
    if (off + len > io->limit)
        return ferry_error_set(err, -EBADMSG, "frame ended %llu bytes early at offset 0x%llx",
                               (unsigned long long)(off + len - io->limit),
                               (unsigned long long)io->limit);
    return 0;
}

static int short_stream(FerryIO *io, uint64_t missing, FerryError *err)
{
    uint64_t end = io->base + io->end;
    return ferry_error_set(err, -ENODATA, "stream ended %llu bytes early at offset 0x%llx",
                           (unsigned long long)missing, (unsigned long long)end);
}

int ferry_io__read_slow(FerryIO *io, void *dst, size_t len, FerryError *err)
{
    int rc = check_limit(io, len, err);
    if (rc)
        return rc;
    uint8_t *out = dst;
    while (len) {
        size_t avail = io->end - io->pos;
        if (avail == 0) {
            ssize_t n = fill(io, len < io->cap ? len : io->cap, err);
            if (n < 0)
                return (int)n;
            avail = io->end - io->pos;
            if (avail == 0)
                return short_stream(io, len, err);
        }
        size_t take = avail < len ? avail : len;
        memcpy(out, io->win + io->pos, take);
        io->pos += take;
        out += take;
        len -= take;
    }
    return 0;
}

int ferry_io_read(FerryIO *io, void *data, size_t len, FerryError *err)
{
    return ferry_io__read(io, data, len, err);
}

int ferry_io_skip(FerryIO *io, uint64_t len, FerryError *err)
{
    int rc = check_limit(io, len, err);
    if (rc)
        return rc;
    while (len) {
        size_t avail = io->end - io->pos;
        if (avail == 0) {
            ssize_t n = fill(io, 1, err);
            if (n < 0)
                return (int)n;
            avail = io->end - io->pos;
            if (avail == 0)
                return short_stream(io, len, err);
        }
        size_t take = avail < len ? avail : (size_t)len;
        io->pos += take;
        len -= take;
    }
    return 0;
}

int ferry_io_peek(FerryIO *io, const uint8_t **data, size_t len, FerryError *err)
{
    if (len > io->cap && io->kind == IO_FD)
        len = io->cap;
    ssize_t n = fill(io, len, err);
    if (n < 0)
        return (int)n;
    *data = io->win + io->pos;
    size_t avail = io->end - io->pos;
    return (int)(avail < len ? avail : len);
}

bool ferry_io_at_eof(FerryIO *io)
{
    if (io->pos < io->end)
        return false;
    ssize_t n = fill(io, 1, NULL);
    return n <= 0;
}

uint64_t ferry_io_set_limit(FerryIO *io, uint64_t end)
{
    uint64_t old = io->limit;
    io->limit = end;
    return old;
}

/* ---- little-endian helpers (Ferry streams are little-endian by definition) ---------------- */

int ferry_io_write_u8(FerryIO *io, uint8_t v, FerryError *err)
{
    return ferry_io__write(io, &v, 1, err);
}

int ferry_io_write_u32(FerryIO *io, uint32_t v, FerryError *err)
{
    v = htole32(v);
    return ferry_io__write(io, &v, 4, err);
}

int ferry_io_write_u64(FerryIO *io, uint64_t v, FerryError *err)
{
    v = htole64(v);
    return ferry_io__write(io, &v, 8, err);
}

int ferry_io_read_u8(FerryIO *io, uint8_t *v, FerryError *err)
{
    return ferry_io__read(io, v, 1, err);
}

int ferry_io_read_u32(FerryIO *io, uint32_t *v, FerryError *err)
{
    int rc = ferry_io__read(io, v, 4, err);
    *v = le32toh(*v);
    return rc;
}

int ferry_io_read_u64(FerryIO *io, uint64_t *v, FerryError *err)
{
    int rc = ferry_io__read(io, v, 8, err);
    *v = le64toh(*v);
    return rc;
}
