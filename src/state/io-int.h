/* FerryIO internals shared by the codec's hot paths (inline fast reads/writes).
 * Only src/state and src/stream include this; everyone else uses ferry/state/io.h. */
#ifndef FERRY_STATE_IO_INT_H
#define FERRY_STATE_IO_INT_H

#include "ferry/state/io.h"

#include <string.h>

enum { IO_MEM, IO_FD };

struct FerryIO {
    bool writer;
    int kind;
    int fd;
    bool own_fd;
    bool eof;        /* fd reader: read() returned 0 */
    bool not_socket; /* fd writer: send() said ENOTSOCK, use write() */
    uint8_t *buf;    /* writer: pending bytes (mem: all bytes); fd reader: window storage */
    size_t cap;
    const uint8_t *win; /* reader window */
    size_t pos;         /* reader: next byte in win; writer: bytes in buf */
    size_t end;         /* reader: valid bytes in win */
    uint64_t base;      /* stream offset of win[0] (reader) or buf[0] (writer) */
    uint64_t limit;     /* reader: absolute offset reads may not cross */
    FerryChecksumFn ck;
    void *ck_ctx;
    size_t ck_pos; /* bytes of win/buf already given to the checksum hook */
};

int ferry_io__read_slow(FerryIO *io, void *dst, size_t len, FerryError *err);
int ferry_io__write_slow(FerryIO *io, const void *src, size_t len, FerryError *err);
/* Writers: make `len` bytes writable at buf + pos. 0 when they are, 1 when this writer cannot
 * (fd writer, len larger than its buffer), negative errno on failure. */
int ferry_io__reserve(FerryIO *io, size_t len, FerryError *err);

static inline int ferry_io__read(FerryIO *io, void *dst, size_t len, FerryError *err)
{
    if (__builtin_expect(io->end - io->pos >= len && io->base + io->pos + len <= io->limit, 1)) {
        memcpy(dst, io->win + io->pos, len);
        io->pos += len;
        return 0;
    }
    return ferry_io__read_slow(io, dst, len, err);
}

static inline int ferry_io__write(FerryIO *io, const void *src, size_t len, FerryError *err)
{
    if (__builtin_expect(io->cap - io->pos >= len, 1)) {
        memcpy(io->buf + io->pos, src, len);
        io->pos += len;
        return 0;
    }
    return ferry_io__write_slow(io, src, len, err);
}

#endif
